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

interface UniqueViolation {
	name: string;
	parent?: { constraint?: string };
}

/** The constraint a Sequelize unique violation names, or undefined for any other error. */
export function violatedUniqueConstraint(err: unknown): string | undefined {
	const e = err as UniqueViolation;
	return e?.name === "SequelizeUniqueConstraintError" ? e.parent?.constraint : undefined;
}
