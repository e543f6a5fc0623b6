import { type Static, Type } from "@sinclair/typebox";
import type { Statement } from "../../lib/infra/database";
import { DateOnly, Instant, Nullable, StringEnum, Uuid, Version } from "../../lib/domain/schemas";
import { WEEKDAYS } from "../../lib/domain/zoned-time";
import { type PageRequest, limitOffset } from "../../lib/domain/paging";
import type { EarlierCreate, IdempotentRequest } from "../../lib/infra/idempotent-create";
import { escapeLike } from "../../lib/infra/sql";

/** Every SQL statement of the doctors service, and the mapper from its rows to the API's doctor. A deleted doctor keeps its row, with `deleted_at` set. */

const WallClock = Type.String({ pattern: "^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$", examples: ["08:00"] });

export const DoctorSchema = Type.Object(
	{
		id: Uuid,
		name: Type.String(),
		email: Type.String({ format: "email" }),
		specialization: Type.String(),
		address: Type.String(),
		joiningDate: DateOnly,
		phone: Nullable(Type.String()),
		timezone: Type.String({ description: "An IANA zone: availability and slots are on this wall clock.", examples: ["Europe/London"] }),
		consultationFee: Type.Integer({ description: "Minor units, charged when an appointment is fulfilled." }),
		slotMinutes: Type.Integer(),
		availability: Type.Array(Type.Object({ day: StringEnum(WEEKDAYS), start: WallClock, end: WallClock }), { description: "Weekly windows on the doctor's wall clock." }),
		createdAt: Instant,
		updatedAt: Instant,
		version: Version
	},
	{
		$id: "Doctor",
		examples: [
			{
				id: "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
				name: "Dr Elizabeth Blackwell",
				email: "e.blackwell@clinic.example",
				specialization: "General practice",
				address: "1 Harley Street, London",
				joiningDate: "2020-01-06",
				phone: null,
				timezone: "Europe/London",
				consultationFee: 7500,
				slotMinutes: 30,
				availability: [{ day: "monday", start: "08:00", end: "18:00" }],
				createdAt: "2026-11-29T09:00:00.000Z",
				updatedAt: "2026-11-29T09:00:00.000Z",
				version: 1
			}
		]
	}
);

export type Doctor = Static<typeof DoctorSchema>;

/** What a client writes: any of the fields, on create the required ones (the params say which). */
export type DoctorInput = Partial<Omit<Doctor, "id" | "createdAt" | "updatedAt" | "version">>;

/** A doctor as stored: the API's names, the bigint fee as its text, the timestamps as pg reads them. */
export type DoctorRow = Omit<Doctor, "consultationFee" | "createdAt" | "updatedAt"> & { consultationFee: string; createdAt: Date; updatedAt: Date };

/** The date comes back as `YYYY-MM-DD` whatever the session's DateStyle (pg would make it a local midnight). */
const COLUMNS = `id, name, email, specialization, address, to_char(joining_date, 'YYYY-MM-DD') AS "joiningDate", phone, timezone,
	consultation_fee AS "consultationFee", slot_minutes AS "slotMinutes", availability, created_at AS "createdAt", updated_at AS "updatedAt", version`;

/** The If-Match guard of a write, on parameter $n: no list (no If-Match) lets any version through. */
const versionIn = (n: number) => `($${n}::int[] IS NULL OR version = ANY($${n}::int[]))`;

export function toDoctor(row: DoctorRow): Doctor {
	return { ...row, consultationFee: Number(row.consultationFee), createdAt: row.createdAt.toISOString(), updatedAt: row.updatedAt.toISOString() };
}

/**
 * Each writable field's column and type. An update writes a value and compares
 * it with the stored one: PostgreSQL would take the parameter as varchar in one
 * place and as text in the other, so it is cast to one type in both.
 */
const WRITABLE: Record<keyof DoctorInput, [column: string, type: string]> = {
	name: ["name", "varchar"],
	email: ["email", "varchar"],
	specialization: ["specialization", "varchar"],
	address: ["address", "text"],
	joiningDate: ["joining_date", "date"],
	phone: ["phone", "varchar"],
	timezone: ["timezone", "varchar"],
	consultationFee: ["consultation_fee", "bigint"],
	slotMinutes: ["slot_minutes", "integer"],
	availability: ["availability", "jsonb"]
};

/** The columns `input` gives, each with its type and its value as pg takes it (it would send an array as a PostgreSQL array, not JSON). */
function givenColumns(input: DoctorInput): { column: string; type: string; value: unknown }[] {
	return (Object.keys(WRITABLE) as (keyof DoctorInput)[])
		.filter(field => input[field] !== undefined)
		.map(field => {
			const [column, type] = WRITABLE[field];
			return { column, type, value: field === "availability" ? JSON.stringify(input.availability) : input[field] };
		});
}

/** A new doctor from the fields given, and the retry key it came with; the columns left out take the migration's defaults. */
export function insertDoctor(id: string, input: DoctorInput, request?: IdempotentRequest): Statement {
	const given = givenColumns(input);
	return {
		text: `INSERT INTO doctors (id, idempotency_user, idempotency_key, request_fingerprint, ${given.map(g => g.column).join(", ")}, created_at, updated_at)
			VALUES ($1, $2, $3, $4, ${given.map((_, i) => `$${i + 5}`).join(", ")}, now(), now()) RETURNING ${COLUMNS}`,
		values: [id, request?.user ?? null, request?.key ?? null, request?.fingerprint ?? null, ...given.map(g => g.value)]
	};
}

/** What an earlier create under the caller's key left (`EarlierCreate<Doctor>`), deleted since or not. */
export function doctorCreatedByKey(request: IdempotentRequest): Statement {
	return {
		text: `SELECT request_fingerprint AS fingerprint, idempotency_answer AS answer FROM doctors WHERE idempotency_user = $1 AND idempotency_key = $2`,
		values: [request.user, request.key]
	};
}

export type EarlierDoctor = EarlierCreate<Doctor>;

/** Keeps a keyed create's answer on its row, for its retries. */
export function rememberAnswer(id: string, answer: Doctor): Statement {
	return { text: "UPDATE doctors SET idempotency_answer = $2 WHERE id = $1", values: [id, JSON.stringify(answer)] };
}

/** Takes a transaction lock. */
export function lockKey(key: string): Statement {
	return { text: "SELECT pg_advisory_xact_lock(hashtext($1))", values: [key] };
}

export function doctorById(id: string): Statement {
	return { text: `SELECT ${COLUMNS} FROM doctors WHERE id = $1 AND deleted_at IS NULL`, values: [id] };
}

/**
 * Writes the fields given to a live doctor at one of the versions `ifMatch`
 * allows (any, when undefined): no row if there is none, and `changes` must
 * give at least one. `updated_at` and `version` move only when one of them
 * differs from what is stored: a change that changes nothing is not a change.
 */
export function updateDoctor(id: string, changes: DoctorInput, ifMatch?: number[]): Statement {
	const given = givenColumns(changes);
	const assignments = given.map(({ column, type }, i) => `${column} = $${i + 3}::${type}`);
	const differs = given.map(({ column, type }, i) => `${column} IS DISTINCT FROM $${i + 3}::${type}`).join(" OR ");
	return {
		text: `UPDATE doctors SET ${assignments.join(", ")}, updated_at = CASE WHEN ${differs} THEN now() ELSE updated_at END,
			version = CASE WHEN ${differs} THEN version + 1 ELSE version END
			WHERE id = $1 AND deleted_at IS NULL AND ${versionIn(2)} RETURNING ${COLUMNS}`,
		values: [id, ifMatch ?? null, ...given.map(g => g.value)]
	};
}

/** The soft delete of a live doctor at one of the versions `ifMatch` allows: the row stays, out of every read. Returns `{ id }` if it deleted. */
export function deleteDoctor(id: string, ifMatch?: number[]): Statement {
	return {
		text: `UPDATE doctors SET deleted_at = now(), updated_at = now(), version = version + 1
			WHERE id = $1 AND deleted_at IS NULL AND ${versionIn(2)} RETURNING id`,
		values: [id, ifMatch ?? null]
	};
}

export interface DoctorFilter extends PageRequest {
	specialization?: string;
	/** A prefix of the name, in any case. */
	search?: string;
}

/** A page of live doctors by name, and the count of all that match: two statements, the same filter. */
export function doctorPage(filter: DoctorFilter): { count: Statement; rows: Statement } {
	const values: unknown[] = [];
	const conditions = ["deleted_at IS NULL"];
	if (filter.specialization) conditions.push(`specialization = $${values.push(filter.specialization)}`);
	if (filter.search) conditions.push(`lower(name) LIKE $${values.push(`${escapeLike(filter.search.toLowerCase())}%`)}`);
	const where = `WHERE ${conditions.join(" AND ")}`;
	const { limit, offset } = limitOffset(filter);
	return {
		count: { text: `SELECT count(*)::int AS total FROM doctors ${where}`, values },
		rows: {
			text: `SELECT ${COLUMNS} FROM doctors ${where} ORDER BY lower(name), id LIMIT $${values.length + 1} OFFSET $${values.length + 2}`,
			values: [...values, limit, offset]
		}
	};
}
