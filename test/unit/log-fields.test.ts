import { errorFields, throttledLog } from "../../lib/infra/log-fields";

describe("log fields", () => {
	test("an error's type, message, code, stack and causes, never what a driver attaches", () => {
		const cause = Object.assign(new Error("duplicate key"), { code: "23505", detail: "Key (email)=(ada@example.org) already exists." });
		const { error } = errorFields(new TypeError("saving failed", { cause }));
		expect(error).toMatchObject({ type: "TypeError", message: "saving failed", stack: expect.stringContaining("log-fields.test.ts"), cause: { type: "Error", message: "duplicate key", code: "23505" } });
		expect(JSON.stringify(error)).not.toContain("ada@example.org");
		expect(errorFields("plain text").error).toEqual({ type: "string", message: "plain text" });
	});

	test("a flood is logged once per interval, with the count it left out", () => {
		const lines: number[] = [];
		const log = throttledLog(60_000);
		for (let i = 0; i < 5; i++) log(unlogged => lines.push(unlogged));
		expect(lines).toEqual([0]);
		const now = Date.now();
		jest.spyOn(Date, "now").mockReturnValue(now + 60_000);
		log(unlogged => lines.push(unlogged));
		expect(lines).toEqual([0, 4]);
		jest.restoreAllMocks();
	});
});
