import type { Context } from "moleculer";
import type { CallerIdentity } from "../domain/roles";

/** The caller the gateway authenticated, with its token's issue and expiry times (epoch s). */
export type AuthenticatedUser = CallerIdentity & { issuedAt: number; expiresAt: number };

/**
 * A request's meta, as the gateway fills it and moleculer-web reads it back:
 * who calls (`user`, null for a public action) and from where, the client's
 * retry key, and what the action asks of the HTTP answer.
 */
export interface RequestMeta {
	user?: AuthenticatedUser | null;
	ip?: string;
	idempotencyKey?: string;
	$statusCode?: number;
	$location?: string;
}

/** Answers 201 Created, saying where the new resource lives; returns `body`. */
export function created<T>(ctx: Context<unknown, RequestMeta>, location: string, body: T): T {
	ctx.meta.$statusCode = 201;
	ctx.meta.$location = location;
	return body;
}

/** Answers 204 No Content. */
export function noContent(ctx: Context<unknown, RequestMeta>): void {
	ctx.meta.$statusCode = 204;
}
