import { Errors, ServiceBroker, type ServiceSchema } from "moleculer";
import { InputValidator } from "../../lib/infra/validator";
import { partialUpdate } from "../../lib/domain/validation";

/** A broker with MedSync's validator and one service whose actions echo what passed. */
const broker = new ServiceBroker({ logger: false, validator: new InputValidator() as never });
const fields = {
	name: { type: "string", max: 100 },
	timezone: { type: "string", max: 64, optional: true },
	gender: { type: "enum", values: ["male", "female"], optional: true },
	phone: { type: "string", max: 32, optional: true, nullable: true },
	page: { type: "number", integer: true, min: 1, max: 10, optional: true, default: 1, convert: true },
	slots: {
		type: "array",
		optional: true,
		max: 5,
		items: { type: "object", props: { day: { type: "string", max: 10 }, note: { type: "string", max: 10, optional: true } } }
	},
	extra: { type: "object", optional: true }
};
broker.createService({
	name: "echo",
	actions: {
		create: { params: { $$strict: true, ...fields }, handler: ctx => ctx.params },
		update: { params: partialUpdate(fields), handler: ctx => ctx.params }
	}
} as ServiceSchema);

beforeAll(() => broker.start());
afterAll(() => broker.stop());

/** The fields a call was refused for, or [] when it passed. */
async function refused(action: string, params: unknown): Promise<{ field: string; type: string }[]> {
	try {
		await broker.call(action, params);
		return [];
	} catch (err) {
		// Anything but a validation error is the test's failure, not a refusal.
		if (!(err instanceof Errors.ValidationError)) throw err;
		return (err.data as { field: string; type: string }[]).map(({ field, type }) => ({ field, type }));
	}
}

describe("the broker's validator", () => {
	test("refuses a NUL or another control character in any string, nested ones too, naming the field", async () => {
		expect(await refused("echo.create", { name: "Ada\u0000" })).toEqual([{ field: "name", type: "controlCharacter" }]);
		expect(await refused("echo.create", { name: "Ada", slots: [{ day: "mon\u001b" }] })).toEqual([{ field: "slots[0].day", type: "controlCharacter" }]);
		expect(await refused("echo.create", { name: "Ada", extra: { a: ["\u007f"] } })).toEqual([{ field: "extra.a[0]", type: "controlCharacter" }]);
	});

	test("lets tabs and line breaks through, and refuses a lone surrogate", async () => {
		expect(await refused("echo.create", { name: "line one\nline two\tend\r" })).toEqual([]);
		expect(await refused("echo.create", { name: "broken \ud800" })).toEqual([{ field: "name", type: "malformedText" }]);
	});

	test("refuses null for an optional field unless its rule says nullable, on create and on partial update", async () => {
		expect(await refused("echo.create", { name: "Ada", timezone: null })).toEqual([{ field: "timezone", type: "notNullable" }]);
		expect(await refused("echo.create", { name: "Ada", phone: null })).toEqual([]);
		expect(await refused("echo.update", { timezone: null, phone: null })).toEqual([{ field: "timezone", type: "notNullable" }]);
		expect(await refused("echo.update", { name: null })).toEqual([{ field: "name", type: "notNullable" }]);
		expect(await refused("echo.create", { name: "Ada", slots: [{ day: "mon", note: null }] })).toEqual([{ field: "slots[0].note", type: "notNullable" }]);
	});

	test("a null for a field with a default takes the default", async () => {
		expect(await broker.call("echo.create", { name: "Ada", page: null })).toMatchObject({ page: 1 });
	});

	test("refuses prototype keys and control characters in keys, where no strict rule would have", async () => {
		const proto = JSON.parse('{"name": "Ada", "extra": {"__proto__": {"admin": true}}}');
		expect(await refused("echo.create", proto)).toEqual([{ field: "extra.__proto__", type: "forbiddenKey" }]);
		expect(await refused("echo.create", { name: "Ada", extra: { "a\u0000": 1 } })).toEqual([{ field: "extra.a\u0000", type: "forbiddenKey" }]);
	});

	test("an enum's message names the field and the values it allows, not the value given", async () => {
		try {
			await broker.call("echo.create", { name: "x", gender: "secret-value" });
			throw new Error("accepted");
		} catch (err) {
			if (!(err instanceof Errors.ValidationError)) throw err;
			const [problem] = err.data as { message: string }[];
			expect(problem.message).toBe("The 'gender' field must be one of: male, female.");
		}
	});

	test("reports the validator's own problems together with these", async () => {
		const problems = await refused("echo.create", { name: 5, timezone: "x\u0000" });
		expect(problems).toEqual(expect.arrayContaining([{ field: "name", type: "string" }, { field: "timezone", type: "controlCharacter" }]));
	});
});
