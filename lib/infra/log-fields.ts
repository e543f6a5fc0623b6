export interface LoggedError {
	type: string;
	message: string;
	code?: string | number;
	stack?: string;
	cause?: LoggedError;
}

const MAX_CAUSES = 5;

/**
 * An error as a log line's `error` field (not `err`, which pino would reshape):
 * what it is, its message, code and stack, and its causes. Not the rest of what a driver or a validator hangs on it: pg's
 * `detail` repeats the row's values, and a validation error's `data` the client's
 * fields, which would put patient data in the logs. Give it as the first argument
 * (`logger.error(errorFields(err), "what failed")`): the JSON logger drops any
 * argument after the message.
 */
export function errorFields(err: unknown): { error: LoggedError } {
	return { error: loggedError(err, MAX_CAUSES) };
}

function loggedError(err: unknown, depth: number): LoggedError {
	if (!(err instanceof Error)) return { type: typeof err, message: String(err) };
	const code = (err as { code?: unknown }).code;
	return {
		type: err.name,
		message: err.message,
		...((typeof code === "string" || typeof code === "number") && { code }),
		...(err.stack && { stack: err.stack }),
		...(err.cause !== undefined && depth > 0 && { cause: loggedError(err.cause, depth - 1) })
	};
}

/**
 * A log line that a flood could repeat (a database down under load, anyone
 * knocking on a port) at most once per `intervalMs`: `write` runs for the
 * first occurrence in each interval, told how many went unlogged before it.
 */
export function throttledLog(intervalMs: number): (write: (unlogged: number) => void) => void {
	let last = -Infinity;
	let unlogged = 0;
	return write => {
		if (Date.now() - last < intervalMs) {
			unlogged++;
			return;
		}
		write(unlogged);
		last = Date.now();
		unlogged = 0;
	};
}
