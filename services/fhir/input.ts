import { badRequest, unprocessable } from "./outcome";

/** Checks on a resource a client sends, before any of it is mapped. */

/** The body as a resource of `type`: an object naming that resourceType (400 otherwise). */
export function resourceOf<T>(body: unknown, type: string): T {
	if (typeof body !== "object" || body === null || Array.isArray(body)) throw badRequest(`The body must be a ${type} resource (application/fhir+json)`);
	const resourceType = (body as { resourceType?: unknown }).resourceType;
	if (resourceType !== type) throw badRequest(`The body is a ${typeof resourceType === "string" ? resourceType : "resource of no type"}, not a ${type}`, "resourceType");
	return body as T;
}

/**
 * MedSync stores only some elements of a resource: one it would drop must not
 * look stored, so it is refused (422), each named.
 */
export function onlyElements(resource: object, type: string, stored: readonly string[]): void {
	const dropped = Object.keys(resource).filter(key => key !== "resourceType" && !stored.includes(key));
	if (dropped.length) {
		throw unprocessable(dropped.map(key => ({ field: `${type}.${key}`, message: `MedSync does not store ${type}.${key}; leave it out.` })));
	}
}

/** An element that must be an array when present (FHIR JSON's rule for repeating elements); its items. */
export function arrayAt<T>(resource: Record<string, unknown>, type: string, key: string): T[] {
	const value = resource[key];
	if (value === undefined) return [];
	if (!Array.isArray(value)) throw badRequest(`${type}.${key} must be an array`, `${type}.${key}`);
	for (const item of value) if (typeof item !== "object" || item === null) throw badRequest(`${type}.${key} must hold objects`, `${type}.${key}`);
	return value as T[];
}

/** A string element, when present. */
export function stringAt(resource: Record<string, unknown>, type: string, key: string): string | undefined {
	const value = resource[key];
	if (value === undefined) return undefined;
	if (typeof value !== "string") throw badRequest(`${type}.${key} must be a string`, `${type}.${key}`);
	return value;
}

/** The id of a Reference to one of `types` (`Type/id`), or a 422 at `field`. */
export function referencedId(reference: unknown, types: string[], field: string): string {
	const text = typeof reference === "object" && reference !== null ? (reference as { reference?: unknown }).reference : undefined;
	const match = typeof text === "string" ? /^(?:.*\/)?([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(text) : null;
	if (!match || !types.includes(match[1])) throw unprocessable([{ field, message: `${field} must refer to a ${types.join(" or ")} as '${types[0]}/<id>'.` }]);
	return match[2];
}

/** A datatype's elements that must be strings, and those that must be arrays of strings (HumanName's given, Address's line), at `path`. */
export function stringElements(value: object, path: string, strings: readonly string[], stringArrays: readonly string[] = []): void {
	const v = value as Record<string, unknown>;
	for (const key of strings) if (v[key] !== undefined && typeof v[key] !== "string") throw badRequest(`${path}.${key} must be a string`, `${path}.${key}`);
	for (const key of stringArrays) {
		const list = v[key];
		if (list !== undefined && !(Array.isArray(list) && list.every(item => typeof item === "string"))) throw badRequest(`${path}.${key} must be an array of strings`, `${path}.${key}`);
	}
}
