import crypto from "node:crypto";
import { config } from "../../lib/infra/config";
import type { Database, Queryable, Statement } from "../../lib/infra/database";
import { todayIn } from "../../lib/domain/dates";
import { violatedUniqueConstraint } from "../../lib/infra/db-errors";
import { ConflictError, NotFoundError, PreconditionFailedError } from "../../lib/infra/errors";
import { formatMrn } from "../../lib/domain/mrn";
import { type Page, toPage } from "../../lib/domain/paging";
import { isUuid } from "../../lib/infra/sql";
import { patientEvent } from "./events";
import {
	type Patient,
	type PatientFields,
	type PatientFilter,
	type PatientRow,
	insertPatientWithEvent,
	lockedPatientById,
	nextMrnSerial,
	patientById,
	patientFrom,
	patientPage,
	softDeletePatientWithEvent,
	updatePatientWithEvent
} from "./queries";

/**
 * The registry's work on its database: reads, and each change of a patient
 * written with the event announcing it (the outbox relay publishes it after
 * the commit).
 */

/** What a client gives to register a patient. */
export type PatientInput = Pick<PatientFields, "name" | "email" | "address" | "dateOfBirth"> & Partial<PatientFields>;

export async function registerPatient(db: Queryable, input: PatientInput): Promise<Patient> {
	const id = crypto.randomUUID();
	const patient = {
		...input,
		id,
		mrn: await nextMrn(db),
		registerDate: input.registerDate ?? todayIn(config.clinicTimezone),
		phone: input.phone ?? null,
		gender: input.gender ?? null
	};
	const [row] = await uniqueEmail(db.query<PatientRow>(insertPatientWithEvent(patient, patientEvent("PATIENT_CREATED", patient))));
	return patientFrom(row);
}

export function findPatient(db: Queryable, id: string): Promise<Patient> {
	return livePatient(db, id, patientById);
}

export async function listPatients(db: Queryable, filter: PatientFilter): Promise<Page<Patient>> {
	const rows = await db.query<PatientRow & { total: number }>(patientPage(filter));
	return toPage(rows.filter(row => row.id !== null).map(patientFrom), rows[0].total, filter);
}

/**
 * Applies `change` to a live patient whose version `ifMatch` allows (null:
 * any), else 412 and nothing written; a field it gives as undefined stays as
 * it is, like one it leaves out.
 */
export async function changePatient(db: Database, id: string, change: Partial<PatientFields>, ifMatch: number[] | null): Promise<Patient> {
	const given: Partial<PatientFields> = Object.fromEntries(Object.entries(change).filter(([, value]) => value !== undefined));
	return uniqueEmail(
		db.transaction(async tx => {
			const current = await livePatient(tx, id, lockedPatientById);
			const changed = { ...current, ...given };
			const [row] = await tx.query<PatientRow>(updatePatientWithEvent(changed, patientEvent("PATIENT_UPDATED", changed), ifMatch));
			// The row is locked and live: only its version can have kept the write out.
			if (!row) throw new PreconditionFailedError("Patient", current.version);
			return patientFrom(row);
		})
	);
}

/** Soft-deletes a live patient whose version `ifMatch` allows (null: any), else 412; the patient as it was deleted. */
export async function deletePatient(db: Database, id: string, ifMatch: number[] | null): Promise<Patient> {
	return db.transaction(async tx => {
		const current = await livePatient(tx, id, lockedPatientById);
		const [row] = await tx.query<PatientRow>(softDeletePatientWithEvent(id, patientEvent("PATIENT_DELETED", current), ifMatch));
		if (!row) throw new PreconditionFailedError("Patient", current.version);
		return patientFrom(row);
	});
}

/** The live patient `read` finds by `id`, or a 404. */
async function livePatient(db: Queryable, id: string, read: (id: string) => Statement): Promise<Patient> {
	// A malformed id names no patient: that is a 404, not a validation error.
	const [row] = isUuid(id) ? await db.query<PatientRow>(read(id)) : [];
	if (!row) throw new NotFoundError("Patient", id);
	return patientFrom(row);
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
