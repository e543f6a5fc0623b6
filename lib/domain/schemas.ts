import { type Static, type TSchema, Type } from "@sinclair/typebox";

/**
 * Building blocks for the schemas of what actions answer (`responses` on an
 * action, read by lib/infra/openapi.ts). A schema is the one source of its
 * entity: the TypeScript type is its `Static`, the OpenAPI document shows the
 * schema itself.
 */

export const Uuid = Type.String({ format: "uuid" });

/** A calendar date, `YYYY-MM-DD`. */
export const DateOnly = Type.String({ format: "date" });

/** An instant in ISO 8601, as `Date.toISOString()` writes it. */
export const Instant = Type.String({ format: "date-time" });

/** A record's version: raised by each change, sent as the ETag, named by If-Match. */
export const Version = Type.Integer({ minimum: 1, description: "Raised by each change; sent as the ETag, and what If-Match names." });

/** One of `values`, as a plain JSON Schema enum (TypeBox's own is a union of constants). */
export function StringEnum<const T extends readonly string[]>(values: T, options: { description?: string } = {}) {
	return Type.Unsafe<T[number]>({ type: "string", enum: [...values], ...options });
}

/**
 * `schema` or null, as JSON Schema 2020-12 (OpenAPI 3.1) writes it: a second
 * type, `null`, and for an enum null among its values too, since `enum` is
 * checked apart from `type`. A schema without one type becomes `anyOf`.
 */
export function Nullable<T extends TSchema>(schema: T) {
	const { type, enum: values, ...rest } = schema as unknown as { type?: unknown; enum?: unknown[] } & Record<string, unknown>;
	if (typeof type !== "string") return Type.Unsafe<Static<T> | null>({ anyOf: [schema, { type: "null" }] });
	return Type.Unsafe<Static<T> | null>({ ...rest, type: [type, "null"], ...(values && { enum: [...values, null] }) });
}

/** A page of a list, as `toPage` (lib/domain/paging.ts) answers it. */
export function PageOf<T extends TSchema>(rows: T, extra: Record<string, TSchema> = {}) {
	return Type.Object({
		rows: Type.Array(rows),
		total: Type.Integer({ minimum: 0, description: "Rows in the whole list." }),
		page: Type.Integer({ minimum: 1 }),
		pageSize: Type.Integer({ minimum: 1 }),
		totalPages: Type.Integer({ minimum: 0 }),
		...extra
	});
}
