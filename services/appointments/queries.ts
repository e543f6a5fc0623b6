import { type Static, Type } from "@sinclair/typebox";
import type { Statement } from "../../lib/infra/database";
import { Instant, Nullable, StringEnum, Uuid, Version } from "../../lib/domain/schemas";
import type { EarlierCreate, IdempotentRequest } from "../../lib/infra/idempotent-create";
import { onFirstDelivery } from "../../lib/domain/patient-events";
import { type PageRequest, limitOffset } from "../../lib/domain/paging";
import type { Interval } from "../../lib/domain/scheduling";
import { formatZoned } from "../../lib/domain/zoned-time";

/** Every SQL statement of the appointments service, and the mapper from its rows to the API's appointment. */

export const APPOINTMENT_STATUSES = ["booked", "arrived", "fulfilled", "cancelled", "noshow"] as const;
export type Status = (typeof APPOINTMENT_STATUSES)[number];

/** The original API's computed fields, in the doctor's wall-clock time. */
const wallClock = (description: string) => Type.String({ description: `${description}, on the doctor's wall clock (the original API's field).` });

export const AppointmentSchema = Type.Object(
	{
		id: Uuid,
		patientId: Uuid,
		doctorId: Uuid,
		start: Type.String({ format: "date-time", description: "ISO 8601 with the doctor's offset." }),
		end: Type.String({ format: "date-time", description: "ISO 8601 with the doctor's offset." }),
		durationMinutes: Type.Integer(),
		timezone: Type.String({ description: "The doctor's IANA zone." }),
		consultationFee: Type.Integer({ description: "Minor units, as the doctor's fee stood at booking." }),
		status: StringEnum(APPOINTMENT_STATUSES),
		reason: Nullable(Type.String()),
		cancellationReason: Nullable(Type.String()),
		createdAt: Instant,
		updatedAt: Instant,
		version: Version,
		date: wallClock("The day, YYYY-MM-DD"),
		startTime: wallClock("The start, HH:MM:SS"),
		endTime: wallClock("The end, HH:MM:SS"),
		startDateTime: wallClock("The start, YYYY-MM-DDTHH:MM:SS"),
		endDateTime: wallClock("The end, YYYY-MM-DDTHH:MM:SS")
	},
	{
		$id: "Appointment",
		examples: [
			{
				id: "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d",
				patientId: "8d5e9c4e-2f4b-4c43-9d59-3a3f1a3b7a10",
				doctorId: "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
				start: "2026-12-01T09:00:00+00:00",
				end: "2026-12-01T09:30:00+00:00",
				durationMinutes: 30,
				timezone: "Europe/London",
				consultationFee: 7500,
				status: "booked",
				reason: "Annual check-up",
				cancellationReason: null,
				createdAt: "2026-11-29T10:20:00.000Z",
				updatedAt: "2026-11-29T10:20:00.000Z",
				version: 1,
				date: "2026-12-01",
				startTime: "09:00:00",
				endTime: "09:30:00",
				startDateTime: "2026-12-01T09:00:00",
				endDateTime: "2026-12-01T09:30:00"
			}
		]
	}
);

export type Appointment = Static<typeof AppointmentSchema>;

/** An appointment as stored: the API's names, the instants as pg reads them, the bigint fee as its text. */
export type AppointmentRow = Pick<
	Appointment,
	"id" | "patientId" | "doctorId" | "durationMinutes" | "timezone" | "status" | "reason" | "cancellationReason" | "version"
> & {
	startAt: Date;
	endAt: Date;
	consultationFee: string;
	createdAt: Date;
	updatedAt: Date;
};

const COLUMNS = `id, patient_id AS "patientId", doctor_id AS "doctorId", start_at AS "startAt", end_at AS "endAt", duration_minutes AS "durationMinutes",
	timezone, consultation_fee AS "consultationFee", status, reason, cancellation_reason AS "cancellationReason", created_at AS "createdAt", updated_at AS "updatedAt", version`;

/** The If-Match guard of a write, on parameter $n: no list (no If-Match) lets any version through. */
const versionIn = (n: number) => `($${n}::int[] IS NULL OR version = ANY($${n}::int[]))`;

export function toAppointment(row: AppointmentRow): Appointment {
	// `YYYY-MM-DDTHH:mm:ss±hh:mm` in the doctor's zone: the original's local fields are slices of it.
	const start = formatZoned(row.startAt.getTime(), row.timezone);
	const end = formatZoned(row.endAt.getTime(), row.timezone);
	return {
		id: row.id,
		patientId: row.patientId,
		doctorId: row.doctorId,
		start,
		end,
		durationMinutes: row.durationMinutes,
		timezone: row.timezone,
		consultationFee: Number(row.consultationFee),
		status: row.status,
		reason: row.reason,
		cancellationReason: row.cancellationReason,
		createdAt: row.createdAt.toISOString(),
		updatedAt: row.updatedAt.toISOString(),
		version: row.version,
		date: start.slice(0, 10),
		startTime: start.slice(11, 19),
		endTime: end.slice(11, 19),
		startDateTime: start.slice(0, 19),
		endDateTime: end.slice(0, 19)
	};
}

const minutes = (span: Interval) => (span.end - span.start) / 60_000;

/**
 * Takes a transaction lock on each key, in the order given. One round trip for
 * all of them, the fewer while others wait: the aggregate takes every lock
 * before it answers.
 */
export function lockKeys(keys: string[]): Statement {
	return { text: "SELECT count(pg_advisory_xact_lock(hashtext(key))) FROM unnest($1::text[]) AS key", values: [keys] };
}

export interface NewAppointment {
	id: string;
	patientId: string;
	doctorId: string;
	span: Interval;
	timezone: string;
	consultationFee: number;
	reason: string | null;
}

/** A new appointment, booked by `changedBy`, with the retry key it came with; its history's first entry in the same statement. */
export function insertAppointment(a: NewAppointment, request?: IdempotentRequest, changedBy: string | null = null): Statement {
	return {
		text: `WITH booked AS (
				INSERT INTO appointments (id, patient_id, doctor_id, start_at, end_at, duration_minutes, timezone, consultation_fee, reason,
					idempotency_user, idempotency_key, request_fingerprint)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *
			), logged AS (${logChanges("booked", "$13::uuid", "'request'", "NULL")})
			SELECT ${COLUMNS} FROM booked`,
		values: [
			a.id,
			a.patientId,
			a.doctorId,
			new Date(a.span.start),
			new Date(a.span.end),
			minutes(a.span),
			a.timezone,
			a.consultationFee,
			a.reason,
			request?.user ?? null,
			request?.key ?? null,
			request?.fingerprint ?? null,
			changedBy
		]
	};
}

export type EarlierBooking = EarlierCreate<Appointment>;

/** What an earlier booking under the caller's key left (an `EarlierBooking`), whatever became of the appointment since. */
export function appointmentBookedByKey(request: IdempotentRequest): Statement {
	return {
		text: `SELECT request_fingerprint AS fingerprint, idempotency_answer AS answer FROM appointments WHERE idempotency_user = $1 AND idempotency_key = $2`,
		values: [request.user, request.key]
	};
}

/** Keeps a keyed booking's answer on its row, for its retries. */
export function rememberAnswer(id: string, answer: Appointment): Statement {
	return { text: "UPDATE appointments SET idempotency_answer = $2 WHERE id = $1", values: [id, JSON.stringify(answer)] };
}

export function appointmentById(id: string): Statement {
	return { text: `SELECT ${COLUMNS} FROM appointments WHERE id = $1`, values: [id] };
}

/** Moves a booked appointment (and nothing else) at a version `ifMatch` allows to `span`; a new reason replaces the old one. */
export function moveAppointment(id: string, span: Interval, reason: string | null, ifMatch?: number[]): Statement {
	return {
		text: `UPDATE appointments SET start_at = $2, end_at = $3, duration_minutes = $4, reason = COALESCE($5, reason), updated_at = now(), version = version + 1
			WHERE id = $1 AND status = 'booked' AND ${versionIn(6)} RETURNING ${COLUMNS}`,
		values: [id, new Date(span.start), new Date(span.end), minutes(span), reason, ifMatch ?? null]
	};
}

/**
 * Moves an appointment to `to`, only from one of the `from` states and at a version `ifMatch` allows
 * (no row otherwise), and enters the change, by `changedBy`, in its history in the same statement.
 */
export function changeStatus(
	id: string,
	from: readonly Status[],
	to: Status,
	cancellationReason: string | null,
	ifMatch?: number[],
	changedBy: string | null = null
): Statement {
	return {
		text: `WITH changed AS (
				UPDATE appointments SET status = $2, cancellation_reason = COALESCE($4, cancellation_reason), updated_at = now(), version = version + 1
				WHERE id = $1 AND status = ANY($3::varchar[]) AND ${versionIn(5)} RETURNING *
			), logged AS (${logChanges("changed", "$6::uuid", "'request'", "$4")})
			SELECT ${COLUMNS} FROM changed`,
		values: [id, to, from, cancellationReason, ifMatch ?? null, changedBy]
	};
}

const DELETED_PATIENT = "The patient's record was deleted";

/** Cancels a patient's active appointments still to come, each change in the history as MedSync's own. */
export function cancelFutureOfPatient(patientId: string): Statement {
	return {
		text: `WITH changed AS (
				UPDATE appointments SET status = 'cancelled', cancellation_reason = $2, updated_at = now(), version = version + 1
				WHERE patient_id = $1 AND status IN ('booked', 'arrived') AND start_at > now() RETURNING *
			), logged AS (${logChanges("changed", "NULL::uuid", "'patient-deleted'", "$2")})
			SELECT ${COLUMNS} FROM changed`,
		values: [patientId, DELETED_PATIENT]
	};
}

/** An appointment a merge moved, and whether the merge cancelled it on the way. */
export type MovedRow = AppointmentRow & { cancelledByMerge: boolean };

/**
 * Moves every appointment of the merged patient ($2) to the survivor ($3), once per event ($1). One
 * that is active and overlaps an active appointment of the survivor is the same visit booked twice,
 * which the patient exclusion constraint would refuse to move: it is cancelled ($4 says why), then
 * moved. Each is entered in its history as MedSync's doing ($5 names the merge).
 */
export function moveToSurvivor(eventId: string, mergedId: string, survivorId: string): Statement {
	const merge = `Patient ${mergedId} was merged into ${survivorId}`;
	return {
		text: onFirstDelivery(`, plan AS (
				SELECT m.id, m.status IN ('booked', 'arrived') AND EXISTS (
					SELECT 1 FROM appointments s
					WHERE s.patient_id = $3 AND s.id <> m.id AND s.status IN ('booked', 'arrived')
						AND tstzrange(s.start_at, s.end_at, '[)') && tstzrange(m.start_at, m.end_at, '[)')
				) AS clashes
				FROM appointments m, first_delivery WHERE m.patient_id = $2 AND $2 <> $3
			), moved AS (
				UPDATE appointments a SET patient_id = $3,
					status = CASE WHEN plan.clashes THEN 'cancelled' ELSE a.status END,
					cancellation_reason = CASE WHEN plan.clashes THEN $4 ELSE a.cancellation_reason END,
					updated_at = now(), version = a.version + 1
				FROM plan WHERE a.id = plan.id
				RETURNING a.*, plan.clashes
			), logged AS (${logChanges("moved", "NULL::uuid", "'patient-merged'", "CASE WHEN clashes THEN $4::varchar ELSE $5::varchar END")})
			SELECT ${COLUMNS}, clashes AS "cancelledByMerge" FROM moved`),
		values: [eventId, mergedId, survivorId, `Booked twice: ${merge}, who has an appointment at that time`, merge]
	};
}

/** What makes an entry in an appointment's history: a request (by its caller), or a patient's deletion or merge (by MedSync). */
export const CHANGE_CAUSES = ["request", "patient-deleted", "patient-merged", "before-history"] as const;

/** One entry of an appointment's history: its status (and patient) after a change, who made it and when. */
export const HistoryEntrySchema = Type.Object(
	{
		version: Version,
		status: StringEnum(APPOINTMENT_STATUSES),
		patientId: Uuid,
		changedBy: Nullable({ ...Uuid, description: "The staff user who made the change; null when MedSync made it (a patient's deletion or merge) or no one is known." }),
		cause: StringEnum(CHANGE_CAUSES),
		reason: Nullable(Type.String()),
		changedAt: Instant
	},
	{ $id: "AppointmentHistoryEntry" }
);

export type HistoryEntry = Static<typeof HistoryEntrySchema>;

export type HistoryRow = Omit<HistoryEntry, "changedAt"> & { changedAt: Date };

export function toHistoryEntry(row: HistoryRow): HistoryEntry {
	return { ...row, changedAt: row.changedAt.toISOString() };
}

/** The INSERT that enters each row of `changes` (a CTE of appointments' rows after a change) in the history. */
function logChanges(changes: string, changedBy: string, cause: string, reason: string): string {
	return `INSERT INTO appointment_status_history (appointment_id, version, status, patient_id, changed_by, cause, reason)
		SELECT id, version, status, patient_id, ${changedBy}, ${cause}, ${reason} FROM ${changes}`;
}

/** A page of an appointment's history, newest first, and the count of its entries. */
export function historyPage(appointmentId: string, page: PageRequest): { count: Statement; rows: Statement } {
	const { limit, offset } = limitOffset(page);
	return {
		count: { text: "SELECT count(*)::int AS total FROM appointment_status_history WHERE appointment_id = $1", values: [appointmentId] },
		rows: {
			text: `SELECT version, status, patient_id AS "patientId", changed_by AS "changedBy", cause, reason, changed_at AS "changedAt"
				FROM appointment_status_history WHERE appointment_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3`,
			values: [appointmentId, limit, offset]
		}
	};
}

export interface AppointmentFilter extends PageRequest {
	doctorId?: string;
	patientId?: string;
	status?: Status;
	from?: string;
	to?: string;
}

/** A page of appointments by start, and the count of all that match: two statements, the same filter. */
export function appointmentPage(filter: AppointmentFilter): { count: Statement; rows: Statement } {
	const conditions: [string, unknown][] = [
		["doctor_id = $?", filter.doctorId],
		["patient_id = $?", filter.patientId],
		["status = $?", filter.status],
		["start_at >= $?", filter.from && new Date(filter.from)],
		["start_at < $?", filter.to && new Date(filter.to)]
	];
	const values: unknown[] = [];
	const clauses = conditions.filter(([, value]) => value !== undefined).map(([sql, value]) => sql.replace("$?", `$${values.push(value)}`));
	const where = clauses.length ? `WHERE ${clauses.join(" AND ")}` : "";
	const { limit, offset } = limitOffset(filter);
	return {
		count: { text: `SELECT count(*)::int AS total FROM appointments ${where}`, values },
		rows: {
			text: `SELECT ${COLUMNS} FROM appointments ${where} ORDER BY start_at, id LIMIT $${values.length + 1} OFFSET $${values.length + 2}`,
			values: [...values, limit, offset]
		}
	};
}

/** A doctor's active appointments overlapping [from, to), as `{ startAt, endAt }`. */
export function busyTimes(doctorId: string, from: Date, to: Date): Statement {
	return {
		text: `SELECT start_at AS "startAt", end_at AS "endAt" FROM appointments
			WHERE doctor_id = $1 AND status IN ('booked', 'arrived') AND start_at < $3 AND end_at > $2`,
		values: [doctorId, from, to]
	};
}

/** How many active appointments of a doctor start after `now`, as `{ count }`. */
export function countUpcoming(doctorId: string, now: Date): Statement {
	return {
		text: `SELECT count(*)::int AS count FROM appointments WHERE doctor_id = $1 AND status IN ('booked', 'arrived') AND start_at > $2`,
		values: [doctorId, now]
	};
}

/** What a charge needs of a fulfilled appointment billing has not confirmed. */
export type UnchargedRow = Pick<AppointmentRow, "id" | "patientId" | "consultationFee">;

/** The oldest hundred fulfilled appointments not charged yet. */
export function unchargedAppointments(): Statement {
	return {
		text: `SELECT id, patient_id AS "patientId", consultation_fee AS "consultationFee" FROM appointments
			WHERE status = 'fulfilled' AND charged_at IS NULL ORDER BY updated_at LIMIT 100`,
		values: []
	};
}

export function markCharged(id: string): Statement {
	return { text: "UPDATE appointments SET charged_at = now() WHERE id = $1", values: [id] };
}
