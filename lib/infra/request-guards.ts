import type { IncomingMessage, ServerResponse } from "node:http";
import { Errors } from "moleculer";
import typeis from "type-is";
import { PROTOTYPE_KEYS } from "./validator";

type Next = (err?: unknown) => void;
type GuardedRequest = IncomingMessage & { body?: unknown };

/** `application/json`, or a JSON-based type such as `application/fhir+json`: what the JSON body parser reads. */
export const JSON_MEDIA_TYPES = ["application/json", "application/*+json"];

/**
 * The gateway's one content-type rule: a request that carries a body carries
 * JSON. The JSON parser leaves any other body unread, which the action would
 * then take as an empty request: a silent no-op for the client.
 */
export function requireJsonBody(req: IncomingMessage, _res: ServerResponse, next: Next): void {
	// type-is, the body parser's own matcher: the two cannot disagree on what is JSON. (Its hasBody counts
	// `Content-Length: 0`, which a bodiless POST carries; an empty body has no type to check.)
	const carriesBytes = req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0;
	if (carriesBytes && !typeis.is(req.headers["content-type"] ?? "", JSON_MEDIA_TYPES)) {
		next(
			new Errors.MoleculerClientError("The request body must be JSON, sent as Content-Type: application/json.", 415, "UNSUPPORTED_MEDIA_TYPE", {
				contentType: req.headers["content-type"] ?? null
			})
		);
		return;
	}
	next();
}

/**
 * moleculer-web merges the body's fields into one params object by
 * assignment, where `__proto__` sets the object's prototype instead of a
 * field: the validator would never see it, nor refuse it as it refuses any
 * other unknown field. So such keys are refused here, before the merge.
 */
export function refusePrototypeKeys(req: GuardedRequest, _res: ServerResponse, next: Next): void {
	// The query parser drops these keys silently; refused here, a query answers as a body does. `a[b]=1` is field a.
	const query = new URL(req.url ?? "/", "http://localhost").searchParams;
	const queryKeys = [...query.keys()].map(key => key.split("[")[0]);
	const bodyKeys = typeof req.body === "object" && req.body !== null && !Array.isArray(req.body) ? Object.keys(req.body) : [];
	const forbidden = [...new Set([...queryKeys, ...bodyKeys])].filter(key => PROTOTYPE_KEYS.has(key));
	if (forbidden.length) {
		const data = forbidden.map(field => ({ field, type: "forbiddenKey", message: `The field name '${field}' is not allowed.` }));
		next(new Errors.ValidationError(data.map(d => d.message).join(" "), "VALIDATION_ERROR", data));
		return;
	}
	next();
}
