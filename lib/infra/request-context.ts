import { AsyncLocalStorage } from "node:async_hooks";
import type { Context, Middleware } from "moleculer";

/** The request a piece of work belongs to, for every log line written while doing it. */
export const requestContext = new AsyncLocalStorage<{ requestId?: string }>();

/**
 * Runs each local action and event handler inside its context's request id.
 * The gateway sets the id (X-Request-ID, or a new one); Moleculer carries it to
 * every call and event, across nodes; the logger reads it from here.
 */
function withRequestId(next: (ctx: Context) => Promise<unknown>) {
	return (ctx: Context) => requestContext.run({ requestId: ctx.requestID ?? undefined }, () => next(ctx));
}

export const RequestContextMiddleware: Middleware = {
	name: "RequestContext",
	localAction: withRequestId,
	localEvent: withRequestId
} as unknown as Middleware;
