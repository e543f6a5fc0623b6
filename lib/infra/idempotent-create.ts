import type { Context } from "moleculer";
import { IdempotencyKeyReusedError } from "./errors";
import { type RequestMeta, created, withVersion } from "./http";
import { requestFingerprint } from "./idempotency";

/**
 * Idempotency-Key on a create (POST /doctors, POST /appointments), with the
 * ledger's semantics (services/billing/ledger.ts): the created row keeps the
 * key, its caller, the request's fingerprint and the answer it got; a retry
 * with the key and the same request gets that answer again, and no second
 * record; the key with another request is 422.
 */

/** The caller of a call that came over the service bus, with no user: such calls share one scope of keys. */
const SERVICE_CALLER = "00000000-0000-0000-0000-000000000000";

/** A create's retry key, scoped to its caller, and the fingerprint of what it asked for. */
export interface IdempotentRequest {
	user: string;
	key: string;
	fingerprint: string;
}

/** What a create under a key left on its row: the request's fingerprint and the answer it got. */
export interface EarlierCreate<T> {
	fingerprint: string;
	answer: T;
}

/** The request's key, scoped to its caller, or undefined when it has none. */
export function idempotentRequest(ctx: Context<unknown, RequestMeta>): IdempotentRequest | undefined {
	const key = ctx.meta.idempotencyKey;
	if (!key) return undefined;
	return { user: ctx.meta.user?.id ?? SERVICE_CALLER, key, fingerprint: requestFingerprint(ctx.params) };
}

/**
 * The name of the transaction lock a create under this key holds while it
 * looks for an earlier one and writes: retries racing each other queue on it,
 * and each after the first finds the first one's record.
 */
export function idempotencyLock(resource: string, request: IdempotentRequest): string {
	return `${resource}-idempotency:${request.user}:${request.key}`;
}

/** The first attempt's answer again, as it was given (201, its Location and ETag); 422 if the key came with another request. */
export function replayCreated<T extends { id: string; version: number }>(
	ctx: Context<unknown, RequestMeta>,
	request: IdempotentRequest,
	earlier: EarlierCreate<T>,
	location: (answer: T) => string
): T {
	if (earlier.fingerprint !== request.fingerprint) throw new IdempotencyKeyReusedError();
	return created(ctx, location(earlier.answer), withVersion(ctx, earlier.answer));
}
