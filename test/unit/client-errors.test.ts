import { Errors } from "moleculer";
import { toClientError } from "../../lib/infra/client-errors";
import { DatabaseUnavailableError, NotFoundError } from "../../lib/infra/errors";

describe("errors as the client sees them", () => {
	test("body-parser failures become 400 and 413 with their own types", () => {
		const syntax = Object.assign(new SyntaxError("Unexpected token"), { status: 400, type: "entity.parse.failed" });
		expect(toClientError(syntax)).toMatchObject({ code: 400, type: "INVALID_JSON", name: "BadRequestError" });
		const large = Object.assign(new Error("request entity too large"), { status: 413, code: 413, type: "entity.too.large" });
		expect(toClientError(large)).toMatchObject({ code: 413, type: "PAYLOAD_TOO_LARGE" });
	});

	test("a validation error's message names each field", () => {
		const err = new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", [
			{ field: "email", message: "The 'email' field must be a valid e-mail." },
			{ field: "name", message: "The 'name' field is required." }
		]);
		const client = toClientError(err);
		expect(client.code).toBe(422);
		expect(client.message).toBe("The 'email' field must be a valid e-mail. The 'name' field is required.");
		expect(client.data).toHaveLength(2);
	});

	test("client errors keep name, message, type and data", () => {
		expect(toClientError(new NotFoundError("Patient", "x"))).toMatchObject({
			name: "NotFoundError",
			message: "Patient not found",
			code: 404,
			type: "NOT_FOUND",
			data: { id: "x" }
		});
	});

	test("an unavailable or timed-out service is 503", () => {
		expect(toClientError(new Errors.ServiceNotAvailableError({ action: "patients.get" }))).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE" });
		expect(toClientError(new Errors.RequestTimeoutError({ action: "patients.get" }))).toMatchObject({ code: 503 });
		// The node serving the call left mid-request.
		expect(toClientError(new Errors.RequestRejectedError({ action: "patients.get", nodeID: "node-1" }))).toMatchObject({ code: 503, type: "SERVICE_UNAVAILABLE", data: null });
	});

	test("a service that cannot reach its database is 503, here and as the error arrives over NATS", () => {
		const lost = new DatabaseUnavailableError(Object.assign(new Error("connect ECONNREFUSED 10.0.0.5:5432"), { code: "ECONNREFUSED" }));
		// Moleculer's transit carries name, message, code, type, retryable and data; never the cause.
		const serialised = { name: lost.name, message: lost.message, code: lost.code, type: lost.type, retryable: lost.retryable, data: lost.data };
		for (const err of [lost, serialised]) {
			const client = toClientError(err);
			expect(client).toMatchObject({ code: 503, name: "ServiceUnavailableError", type: "SERVICE_UNAVAILABLE", data: null });
			expect(JSON.stringify(client)).not.toMatch(/ECONNREFUSED|10\.0\.0\.5/);
		}
	});

	test("anything unexpected is a 500 that reveals nothing", () => {
		const leaky = new Error('relation "patients" violates constraint at 10.0.0.5 password=hunter2');
		const client = toClientError(leaky);
		expect(client).toMatchObject({ code: 500, name: "InternalServerError", message: "Internal server error", type: "INTERNAL_ERROR" });
		expect(client.data).toBeNull();
	});

	test("a validation error names the field, never the node or the action that refused it", () => {
		const err = new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", [
			{ field: "name", message: "The 'name' field is required.", type: "required", nodeID: "node-1", action: "patients.create" }
		]);
		const client = toClientError(err);
		expect(client.data).toEqual([{ field: "name", message: "The 'name' field is required.", type: "required" }]);
		expect(JSON.stringify(client)).not.toMatch(/node-1|patients\.create/);
	});

	test("a path no routed action serves is a plain 404", () => {
		const client = toClientError(new Errors.ServiceNotFoundError({ action: "patients.secret", nodeID: "node-1" }));
		expect(client).toMatchObject({ code: 404, name: "NotFoundError", type: "NOT_FOUND", data: null });
		expect(client.message).not.toContain("patients.secret");
	});

	test("every error has a type and data, even one thrown without", () => {
		const client = toClientError(new Errors.MoleculerClientError("Bad thing", 400));
		expect(client).toMatchObject({ code: 400, type: "BAD_REQUEST", data: null });
	});
});
