import type { ActionSchema, Context, Middleware } from "moleculer";
import { DatabaseUnavailableError } from "./errors";
import { errorFields, throttledLog } from "./log-fields";

/**
 * What a PostgreSQL error means, the one place that reads pg's errors: their
 * shapes, and the SQLSTATE codes behind them.
 */

interface DriverError {
	name?: unknown;
	message?: unknown;
	code?: unknown;
	constraint?: string;
	cause?: unknown;
}

/** Socket errors of a server that refuses, resets or cannot be reached (a stopped container's name no longer resolves). */
const UNREACHABLE_SOCKET_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

/**
 * SQLSTATEs of a server that is going or not there yet: 57P01 admin_shutdown,
 * 57P02 crash_shutdown, 57P03 cannot_connect_now (starting, stopping, recovering),
 * and 53300 too_many_connections, a refused connection like the others.
 * Class 08 (connection exception) is matched whole.
 */
const UNAVAILABLE_SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300"]);

/**
 * pg's and its pool's own errors, without a code, for a connection that broke
 * or never came, or no pooled connection free in time. Not a refused password
 * (28P01): a wrong password is a fault to fix, not an outage to wait out.
 */
const LOST_CONNECTION_MESSAGES = new Set([
	"Connection terminated unexpectedly",
	"Connection terminated",
	"Connection terminated due to connection timeout",
	"timeout expired",
	"timeout exceeded when trying to connect",
	"Client has encountered a connection error and is not queryable",
	"Client was closed and is not queryable"
]);

const MAX_DEPTH = 4;

/**
 * True when `err` says the database cannot be reached now (refused, lost, shutting
 * down, starting, or no pooled connection free in time), so that the same request
 * may succeed on a retry. Looks through error causes.
 */
export function isDatabaseUnavailable(err: unknown, depth = MAX_DEPTH): boolean {
	if (!err || typeof err !== "object" || depth < 0) return false;
	const e = err as DriverError;
	if (typeof e.code === "string" && (UNREACHABLE_SOCKET_CODES.has(e.code) || UNAVAILABLE_SQLSTATES.has(e.code) || /^08[0-9A-Z]{3}$/.test(e.code))) return true;
	if (typeof e.message === "string" && LOST_CONNECTION_MESSAGES.has(e.message)) return true;
	return e.cause !== err && isDatabaseUnavailable(e.cause, depth - 1);
}

/** The constraint a violation of this SQLSTATE names, or undefined for any other error. */
function violated(sqlState: string, err: unknown): string | undefined {
	const e = err as DriverError | undefined;
	return e?.code === sqlState ? e.constraint : undefined;
}

/** The unique constraint a row violates (23505), or undefined for any other error. */
export const violatedUniqueConstraint = (err: unknown) => violated("23505", err);

/** The exclusion constraint a conflicting row violates (23P01), or undefined for any other error. */
export const violatedExclusionConstraint = (err: unknown) => violated("23P01", err);

/** True for a SQLSTATE of PostgreSQL refusing the data itself: class 22 (data exception) or 23 (integrity constraint violation). */
export function isDataRefusal(sqlState: unknown): boolean {
	return typeof sqlState === "string" && /^2[23][0-9A-Z]{3}$/.test(sqlState);
}

/** True when CREATE DATABASE failed because the database exists (42P04), or another node's create won the race (23505). */
export function isDuplicateDatabase(err: unknown): boolean {
	const code = (err as DriverError | undefined)?.code;
	return code === "42P04" || code === "23505";
}

/** While the database stays away, one warning per this long: under load, a line per request would flood the log. */
const WARN_EVERY_MS = 10_000;

/**
 * Turns an action's "database unreachable" failure, however the action met it
 * (the ORM, this.db, a pg client of its own), into a retryable 503
 * (DatabaseUnavailableError), which the gateway answers as SERVICE_UNAVAILABLE
 * with Retry-After. It wraps every local action of every service, so it runs
 * where the database is used, before an error is serialised for another node:
 * a gateway across NATS receives the 503 itself.
 */
export function DatabaseUnavailableMiddleware(): Middleware {
	const warn = throttledLog(WARN_EVERY_MS);
	const localAction = (next: (ctx: Context) => Promise<unknown>, action: ActionSchema) => (ctx: Context) =>
		next(ctx).catch((err: unknown) => {
			if (err instanceof DatabaseUnavailableError || !isDatabaseUnavailable(err)) throw err;
			warn(unlogged =>
				action.service?.logger.warn({ ...errorFields(err), action: action.name, alsoFailedSinceLastWarning: unlogged }, "The database is unreachable; answering 503")
			);
			throw new DatabaseUnavailableError(err);
		});
	return { name: "DatabaseUnavailable", localAction } as unknown as Middleware;
}
