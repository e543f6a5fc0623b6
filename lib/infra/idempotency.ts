import crypto from "node:crypto";

/** Keys in a stable order, so that one body always reads the same, however a client ordered its fields. */
function canonical(value: unknown): unknown {
	if (Array.isArray(value)) return value.map(canonical);
	if (value && typeof value === "object" && !(value instanceof Date)) {
		return Object.fromEntries(
			Object.keys(value)
				.sort()
				.map(key => [key, canonical((value as Record<string, unknown>)[key])])
		);
	}
	return value;
}

/**
 * What a request asked for, as a digest stored beside the Idempotency-Key that
 * carried it: a repeat with the same key and the same fingerprint gets the
 * first answer; the same key with another fingerprint is refused (422).
 */
export function requestFingerprint(request: unknown): string {
	return crypto.createHash("sha256").update(JSON.stringify(canonical(request) ?? null)).digest("hex");
}
