import { status } from "@grpc/grpc-js";
import { Errors } from "moleculer";
import { ConflictError, NotFoundError, StateConflictError } from "../../lib/infra/errors";
import { toGrpcError } from "../../lib/infra/grpc-status";

describe("gRPC statuses for action errors", () => {
	test("client mistakes keep their meaning", () => {
		expect(toGrpcError(new NotFoundError("Billing account", "x"))).toMatchObject({ code: status.NOT_FOUND, details: "Billing account not found" });
		expect(toGrpcError(new ConflictError("Already open"))).toMatchObject({ code: status.ALREADY_EXISTS, details: "Already open" });
		expect(toGrpcError(new StateConflictError("The account is CLOSED"))).toMatchObject({ code: status.FAILED_PRECONDITION, details: "The account is CLOSED" });
		const invalid = new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", [
			{ field: "patientId", message: "The 'patientId' field must be a valid UUID." }
		]);
		expect(toGrpcError(invalid)).toMatchObject({ code: status.INVALID_ARGUMENT, details: "The 'patientId' field must be a valid UUID." });
	});

	test("a database out of reach or a missing peer is UNAVAILABLE, worth a retry", () => {
		// The service's database (this.db) hands pg's own errors on.
		expect(toGrpcError(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" })).code).toBe(status.UNAVAILABLE);
		expect(toGrpcError(new Error("Connection terminated unexpectedly")).code).toBe(status.UNAVAILABLE);
		expect(toGrpcError(new Errors.ServiceNotAvailableError({ action: "billing.openAccount" })).code).toBe(status.UNAVAILABLE);
		expect(toGrpcError(new Errors.RequestTimeoutError({ action: "billing.openAccount" })).code).toBe(status.UNAVAILABLE);
		expect(toGrpcError(new Errors.MoleculerRetryableError("down", 503)).code).toBe(status.UNAVAILABLE);
	});

	test("anything else is INTERNAL with no details, never UNKNOWN", () => {
		for (const err of [new Error("relation x does not exist at 10.0.0.1"), new TypeError("boom"), undefined, "text"]) {
			const mapped = toGrpcError(err);
			expect(mapped.code).toBe(status.INTERNAL);
			expect(mapped.details).toBe("Internal error");
		}
	});
});
