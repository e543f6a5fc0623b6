import crypto from "node:crypto";
import { config } from "../../lib/infra/config";
import type { Database, Queryable, Statement } from "../../lib/infra/database";
import { todayIn } from "../../lib/domain/dates";
import { violatedUniqueConstraint } from "../../lib/infra/db-errors";
import { ConflictError, IdempotencyKeyReusedError, NotFoundError, PreconditionFailedError } from "../../lib/infra/errors";
import { requestFingerprint } from "../../lib/infra/idempotency";
import { formatMrn } from "../../lib/domain/mrn";
import { type Page, type PageRequest, toPage } from "../../lib/domain/paging";
import { isUuid } from "../../lib/infra/sql";
import { patientEvent } from "./events";
import { PatientMergedError } from "./merge";
import {
	type Patient,
	type PatientFields,
	type PatientFilter,
	type PatientRow,
	type PatientVersion,
	type PatientVersionRow,
	type RegistrationRow,
	insertPatientWithEvent,
	lockedPatientById,
	mergedPatientById,
	nextMrnSerial,
	patientById,
	patientFrom,
	patientPage,
	patientVersion,
	patientVersionPage,
	registrationByKey,
	softDeletePatientWithEvent,
	storedPatient,
	updatePatientWithEvent,
	versionFrom
} from "./queries";

/**
 * The registry's work on its database: reads, and each change of a patient
 * written with the event announcing it (the outbox relay publishes it after
 * the commit).
 */

/** What a client gives to register a patient. */
export type PatientInput = Pick<PatientFields, "name" | "email" | "address" | "dateOfBirth"> & Partial<PatientFields>;

/** Who writes: the caller's user id (null for a peer service), as each version of a patient records it. */
export type Author = string | null;

/** A caller's Idempotency-Key for a registration. */
export interface RetryRequest {
	user: string;
	key: string;
}

/** A registration's answer, and whether it repeats the first attempt's under the same key (nothing written this time). */
export interface Registration {
	patient: Patient;
	repeated: boolean;
}

/**
 * Registers a patient, with its event and its version 1. Under a caller's
 * retry key, a repeat of the same request gets the first attempt's patient as
 * it was answered (with the billing account opened since), and another request
 * a 422; a failed attempt (a taken email) leaves the key unused.
 */
export async function registerPatient(db: Queryable, input: PatientInput, by: Author, retryRequest?: RetryRequest): Promise<Registration> {
	const id = crypto.randomUUID();
	const patient = {
		...input,
		id,
		mrn: await nextMrn(db),
		registerDate: input.registerDate ?? todayIn(config.clinicTimezone),
		phone: input.phone ?? null,
		gender: input.gender ?? null
	};
	const retry = retryRequest ? { ...retryRequest, fingerprint: requestFingerprint(input) } : null;
	let conflict: unknown;
	try {
		const [row] = await uniqueEmail(db.query<PatientRow>(insertPatientWithEvent(patient, patientEvent("PATIENT_CREATED", patient), by, retry)));
		if (row) return { patient: patientFrom(row), repeated: false };
	} catch (err) {
		// Two attempts with one key racing: the one that waited meets the other's email before its key.
		if (!retry || !(err instanceof ConflictError)) throw err;
		conflict = err;
	}
	const [first] = retry ? await db.query<RegistrationRow>(registrationByKey(retry.user, retry.key)) : [];
	if (!first) throw conflict;
	if (first.fingerprint !== retry!.fingerprint) throw new IdempotencyKeyReusedError();
	return { patient: { ...storedPatient(first.record), billingAccountId: first.billingAccountId }, repeated: true };
}

export function findPatient(db: Queryable, id: string): Promise<Patient> {
	return livePatient(db, id, patientById);
}

export async function listPatients(db: Queryable, filter: PatientFilter): Promise<Page<Patient>> {
	const rows = await db.query<PatientRow & { total: number }>(patientPage(filter));
	return toPage(rows.filter(row => row.id !== null).map(patientFrom), rows[0].total, filter);
}

/**
 * A page of the patient's versions, newest first; a deleted or merged patient
 * keeps its history. 404 for a patient that never was.
 */
export async function patientHistory(db: Queryable, id: string, page: PageRequest): Promise<Page<PatientVersion>> {
	const rows = isUuid(id) ? await db.query<PatientVersionRow & { total: number }>(patientVersionPage(id, page)) : [];
	if (!rows[0]?.total) throw new NotFoundError("Patient", id);
	return toPage(rows.filter(row => row.version !== null).map(versionFrom), rows[0].total, page);
}

/** One version of the patient, or a 404. */
export async function findPatientVersion(db: Queryable, id: string, version: number): Promise<PatientVersion> {
	const [row] = isUuid(id) ? await db.query<PatientVersionRow>(patientVersion(id, version)) : [];
	if (!row) throw new NotFoundError("Patient version", version);
	return versionFrom(row);
}

/**
 * Applies `change` to a live patient whose version `ifMatch` allows (null:
 * any), else 412 and nothing written; a field it gives as undefined stays as
 * it is, like one it leaves out.
 */
export async function changePatient(db: Database, id: string, change: Partial<PatientFields>, by: Author, ifMatch: number[] | null): Promise<Patient> {
	const given: Partial<PatientFields> = Object.fromEntries(Object.entries(change).filter(([, value]) => value !== undefined));
	return uniqueEmail(
		db.transaction(async tx => {
			const current = await livePatient(tx, id, lockedPatientById);
			const changed = { ...current, ...given };
			const [row] = await tx.query<PatientRow>(updatePatientWithEvent(changed, patientEvent("PATIENT_UPDATED", changed), by, ifMatch));
			// The row is locked and live: only its version can have kept the write out.
			if (!row) throw new PreconditionFailedError("Patient", current.version);
			return patientFrom(row);
		})
	);
}

/** Soft-deletes a live patient whose version `ifMatch` allows (null: any), else 412; the patient as it was deleted. */
export async function deletePatient(db: Database, id: string, by: Author, ifMatch: number[] | null): Promise<Patient> {
	return db.transaction(async tx => {
		const current = await livePatient(tx, id, lockedPatientById);
		const [row] = await tx.query<PatientRow>(softDeletePatientWithEvent(id, patientEvent("PATIENT_DELETED", current), by, ifMatch));
		if (!row) throw new PreconditionFailedError("Patient", current.version);
		return patientFrom(row);
	});
}

/** The live patient `read` finds by `id`; a 409 pointing at the survivor if it was merged; else a 404. */
async function livePatient(db: Queryable, id: string, read: (id: string) => Statement): Promise<Patient> {
	// A malformed id names no patient: that is a 404, not a validation error.
	if (!isUuid(id)) throw new NotFoundError("Patient", id);
	const [row] = await db.query<PatientRow>(read(id));
	if (row) return patientFrom(row);
	const [merged] = await db.query<{ mergedInto: string }>(mergedPatientById(id));
	if (merged) throw new PatientMergedError(merged.mergedInto);
	throw new NotFoundError("Patient", id);
}

/** A serial a failed registration leaves unused is a gap in the MRNs, never a duplicate. */
async function nextMrn(db: Queryable): Promise<string> {
	const [{ serial }] = await db.query<{ serial: string }>(nextMrnSerial);
	return formatMrn(BigInt(serial));
}

/** Turns the email unique-index violation into a 409; other errors pass through. */
async function uniqueEmail<T>(work: Promise<T>): Promise<T> {
	try {
		return await work;
	} catch (err) {
		if (violatedUniqueConstraint(err) === "patients_email_key") {
			throw new ConflictError("A patient with this email already exists", { field: "email" });
		}
		throw err;
	}
}
