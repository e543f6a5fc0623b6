import { Errors } from "moleculer";

/** 404: the named record does not exist (or is deleted, or the id is malformed). */
export class NotFoundError extends Errors.MoleculerClientError {
	constructor(entity: string, id: unknown) {
		super(`${entity} not found`, 404, "NOT_FOUND", { id });
		this.name = "NotFoundError";
	}
}

/** 409: the request clashes with the current state, e.g. a unique value already taken. */
export class ConflictError extends Errors.MoleculerClientError {
	constructor(message: string, data?: unknown) {
		super(message, 409, "CONFLICT", data);
		this.name = "ConflictError";
	}
}

/**
 * 409 for a request the record's state refuses (a closed account), as opposed
 * to a value already taken: over gRPC the two are FAILED_PRECONDITION and
 * ALREADY_EXISTS, though HTTP has one status for both.
 */
export class StateConflictError extends ConflictError {
	readonly stateConflict = true;
}

/** 401: no credentials, or ones that do not hold (bad password, invalid or revoked token). */
export class UnauthorizedError extends Errors.MoleculerClientError {
	constructor(message: string) {
		super(message, 401, "UNAUTHORIZED");
		this.name = "UnauthorizedError";
	}
}

/** 403: the caller is known, but its role may not do this. */
export class ForbiddenError extends Errors.MoleculerClientError {
	constructor(message: string) {
		super(message, 403, "FORBIDDEN");
		this.name = "ForbiddenError";
	}
}

/** 429, with the seconds to wait in `data.retryAfter` (the gateway sends it as Retry-After). */
export class TooManyRequestsError extends Errors.MoleculerClientError {
	constructor(message: string, retryAfterSeconds: number) {
		super(message, 429, "TOO_MANY_REQUESTS", { retryAfter: retryAfterSeconds });
		this.name = "TooManyRequestsError";
	}
}

/**
 * 503: the service cannot reach its database now; the same request may succeed
 * shortly (the gateway sends Retry-After). The driver's error stays the cause,
 * for the service's log; it never travels to another node or a client.
 */
export class DatabaseUnavailableError extends Errors.MoleculerRetryableError {
	constructor(cause: unknown) {
		super("The database is unreachable", 503, "DATABASE_UNAVAILABLE");
		this.name = "DatabaseUnavailableError";
		this.cause = cause;
	}
}

/** 422 for rules that span fields (a range, "one of these"), shaped like the validator's own errors. */
export function invalidFields(problems: { field: string; message: string }[]): Errors.ValidationError {
	return new Errors.ValidationError(
		problems.map(p => p.message).join(" "),
		"VALIDATION_ERROR",
		problems.map(p => ({ ...p, type: "rule" }))
	);
}

/** 412: the request's If-Match names a version the record no longer has (or never had); nothing was written. */
export class PreconditionFailedError extends Errors.MoleculerClientError {
	constructor(entity: string, currentVersion: number) {
		super(`${entity} has changed: it is at version ${currentVersion}; read it again and retry with If-Match: W/"${currentVersion}"`, 412, "PRECONDITION_FAILED", {
			currentVersion
		});
		this.name = "PreconditionFailedError";
	}
}

/** 422: an Idempotency-Key already used for a request with another body. */
export class IdempotencyKeyReusedError extends Errors.MoleculerClientError {
	constructor() {
		super("This Idempotency-Key was used for a different request", 422, "IDEMPOTENCY_KEY_REUSED", { field: "Idempotency-Key" });
		this.name = "IdempotencyKeyReusedError";
	}
}
