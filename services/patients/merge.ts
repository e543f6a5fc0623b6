import type { Database } from "../../lib/infra/database";
import { ConflictError, NotFoundError, invalidFields } from "../../lib/infra/errors";
import { isUuid } from "../../lib/infra/sql";
import { patientEvent } from "./events";
import { type Static, Type } from "@sinclair/typebox";
import { Instant, Uuid, Version } from "../../lib/domain/schemas";
import { type Patient, PatientSchema, type RecordRow, lockedPatientRecords, mergePatientWithEvent, patientFrom } from "./queries";

/**
 * Merging a duplicate patient into its survivor: the duplicate is retired (a
 * soft delete that names the survivor, to which its reads then point), and a
 * PATIENT_MERGED event tells the services holding its appointments, account
 * and figures to move them. The survivor keeps its identity and is not changed.
 */

/** 409: the patient was merged into another; its reads point there (GET answers 301). */
export class PatientMergedError extends ConflictError {
	constructor(readonly mergedInto: string) {
		super(`The patient was merged into ${mergedInto}; use that record`, { mergedInto });
	}
}

/** The merged patient, in the merge's answer. */
const MergedSummarySchema = Type.Object({
	id: Uuid,
	mrn: Type.String(),
	version: { ...Version, description: "Its version as merged, the last it will have." },
	mergedAt: Instant
});

export type MergedSummary = Static<typeof MergedSummarySchema>;

/** A merge answers with the survivor (its ETag goes with it) and what was merged into it. */
export const MergeAnswerSchema = Type.Composite([PatientSchema, Type.Object({ merged: MergedSummarySchema })], { $id: "MergeAnswer" });

export type MergeAnswer = Static<typeof MergeAnswerSchema>;

export interface Merge {
	answer: MergeAnswer;
	/** The patient as this call retired it; absent when it repeats a merge already made. */
	retired?: Patient;
}

/**
 * Merges patient `id` into `into`, once: a repeat of a merge already made
 * answers the same and writes nothing. Refused: into itself, a patient merged
 * into another already, a survivor retired (409); an unknown or deleted
 * patient (404); a survivor that never was (422 naming `into`).
 */
export async function mergePatient(db: Database, id: string, into: string, by: string | null): Promise<Merge> {
	if (id === into) throw new ConflictError("A patient cannot be merged into itself", { field: "into" });
	return db.transaction(async tx => {
		const ids = [id, into].filter(isUuid);
		const rows = ids.length ? await tx.query<RecordRow>(lockedPatientRecords(ids)) : [];
		const merged = rows.find(row => row.id === id);
		const survivor = rows.find(row => row.id === into);
		if (!merged || (merged.deletedAt && !merged.mergedInto)) throw new NotFoundError("Patient", id);
		if (merged.mergedInto && merged.mergedInto !== into) throw new PatientMergedError(merged.mergedInto);
		if (!survivor) throw invalidFields([{ field: "into", message: "The 'into' field names no patient." }]);
		if (survivor.mergedInto) {
			throw new ConflictError(`The survivor was itself merged into ${survivor.mergedInto}; merge into that one`, { field: "into", mergedInto: survivor.mergedInto });
		}
		if (survivor.deletedAt) throw new ConflictError("The survivor is deleted", { field: "into" });
		if (merged.mergedInto) return { answer: answerOf(survivor, merged) };
		const [row] = await tx.query<RecordRow>(mergePatientWithEvent(id, into, patientEvent("PATIENT_MERGED", merged, into), by));
		return { answer: answerOf(survivor, row), retired: patientFrom(row) };
	});
}

function answerOf(survivor: RecordRow, merged: RecordRow): MergeAnswer {
	return { ...patientFrom(survivor), merged: { id: merged.id, mrn: merged.mrn, version: merged.version, mergedAt: merged.deletedAt!.toISOString() } };
}
