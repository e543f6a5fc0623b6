import type { Context } from "moleculer";
import type { CallerIdentity } from "../domain/roles";
import { PreconditionFailedError } from "./errors";

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
	/** The client's retry key (Idempotency-Key): a repeat gets the first attempt's answer. */
	idempotencyKey?: string;
	/** The versions an If-Match header allows a change to; unset when there is none (or `*`). */
	ifMatch?: number[];
	$statusCode?: number;
	$location?: string;
	$responseHeaders?: Record<string, string>;
}

/** Answers 201 Created, saying where the new resource lives; returns `body`. */
export function created<T>(ctx: Context<unknown, RequestMeta>, location: string, body: T): T {
	ctx.meta.$statusCode = 201;
	ctx.meta.$location = location;
	return body;
}

/** Answers 301 Moved Permanently, pointing at where the resource now lives; returns `body`. */
export function movedPermanently<T>(ctx: Context<unknown, RequestMeta>, location: string, body: T): T {
	ctx.meta.$statusCode = 301;
	ctx.meta.$location = location;
	return body;
}

/** Answers 204 No Content. */
export function noContent(ctx: Context<unknown, RequestMeta>): void {
	ctx.meta.$statusCode = 204;
}

/** A record's version as an HTTP entity tag: weak (the representation may vary, the record does not), as FHIR writes them. */
export function entityTag(version: number): string {
	return `W/"${version}"`;
}

/** Sends the record's version as its ETag, for a later If-Match; returns `body`. */
export function withVersion<T extends { version: number }>(ctx: Context<unknown, RequestMeta>, body: T): T {
	ctx.meta.$responseHeaders = { ...ctx.meta.$responseHeaders, ETag: entityTag(body.version) };
	return body;
}

const ENTITY_TAG = /^\s*(?:W\/)?"([^"]*)"\s*$/;
const MAX_IDEMPOTENCY_KEY = 255;

/**
 * The conditions a request's headers set, as RequestMeta carries them to the
 * action, or the header that is malformed (a 400 names it). If-Match takes
 * `*` or a list of entity tags; a tag that is no version of ours matches
 * nothing, so a change guarded by it is refused (412), never applied.
 */
export function requestConditions(headers: Record<string, string | string[] | undefined>): { meta: Pick<RequestMeta, "idempotencyKey" | "ifMatch"> } | { malformed: string } {
	const meta: Pick<RequestMeta, "idempotencyKey" | "ifMatch"> = {};
	const key = headers["idempotency-key"];
	if (key !== undefined) {
		if (typeof key !== "string" || !/^[\x21-\x7e]{1,255}$/.test(key)) return { malformed: "Idempotency-Key" };
		meta.idempotencyKey = key.slice(0, MAX_IDEMPOTENCY_KEY);
	}
	const ifMatch = headers["if-match"];
	if (ifMatch !== undefined) {
		const value = Array.isArray(ifMatch) ? ifMatch.join(",") : ifMatch;
		if (value.trim() !== "*") {
			const tags = value.split(",").map(tag => ENTITY_TAG.exec(tag)?.[1]);
			if (tags.some(tag => tag === undefined)) return { malformed: "If-Match" };
			meta.ifMatch = tags.filter(tag => /^\d{1,9}$/.test(tag!)).map(Number);
		}
	}
	return { meta };
}

/**
 * 412 unless the request's If-Match, when it has one, names `version`: checked
 * before a change (a stale precondition outranks the change's own refusals), and
 * after a guarded write wrote nothing, to tell a stale version from a missing row.
 */
export function checkIfMatch(meta: Pick<RequestMeta, "ifMatch">, entity: string, version: number): void {
	if (meta.ifMatch && !meta.ifMatch.includes(version)) throw new PreconditionFailedError(entity, version);
}
