/**
 * What a PostgreSQL error means, the one place that reads pg's and Sequelize's
 * errors: both drivers' shapes, and the SQLSTATE codes behind them.
 */

interface DriverError {
	name?: unknown;
	code?: unknown;
	constraint?: string;
	/** Sequelize keeps the driver's error as `parent` (and `original`). */
	parent?: DriverError;
}

/** The constraint a unique violation names (as Sequelize wraps it, or straight from pg), or undefined for any other error. */
export function violatedUniqueConstraint(err: unknown): string | undefined {
	const e = err as DriverError | undefined;
	if (e?.name === "SequelizeUniqueConstraintError") return e.parent?.constraint;
	return e?.code === "23505" ? e.constraint : undefined;
}

/** The exclusion constraint a conflicting row violates (23P01, as Sequelize wraps it), or undefined for any other error. */
export function violatedExclusionConstraint(err: unknown): string | undefined {
	const cause = (err as DriverError | undefined)?.parent;
	return cause?.code === "23P01" ? cause.constraint : undefined;
}

/** True for a SQLSTATE of PostgreSQL refusing the data itself: class 22 (data exception) or 23 (integrity constraint violation). */
export function isDataRefusal(sqlState: unknown): boolean {
	return typeof sqlState === "string" && /^2[23][0-9A-Z]{3}$/.test(sqlState);
}

/** True when CREATE DATABASE failed because the database exists (42P04), or another node's create won the race (23505). */
export function isDuplicateDatabase(err: unknown): boolean {
	const code = (err as DriverError | undefined)?.code;
	return code === "42P04" || code === "23505";
}
