import { type Static, Type } from "@sinclair/typebox";
import type { Database } from "../../lib/infra/database";
import { StringEnum, Uuid } from "../../lib/domain/schemas";
import { type DuplicateRow, type DuplicateWeights, duplicateCandidates, duplicateSearchSettings } from "./duplicate-queries";
import { PatientSchema, patientFrom } from "./queries";
import { findPatient } from "./registry";

/**
 * Likely duplicates of a patient: registration desks create them with a typo
 * in a name or a second email. Each reason adds its weight to a candidate's
 * score (docs/api.md#duplicate-patients); the weights sum to 1, so a score
 * runs from 0 to 1.
 */

/**
 * A name weighs most, times its trigram similarity (1 for the same name, up
 * to case and punctuation). A date of birth alone is shared by many; a phone
 * and an email by a household (a parent's on a child's record): each weighs
 * less than a name.
 */
export const DUPLICATE_WEIGHTS: DuplicateWeights = { name: 0.5, dateOfBirth: 0.2, phone: 0.15, email: 0.15 };

/** pg_trgm's own default threshold: below it, two names share too little to say anything. */
export const NAME_SIMILARITY_FLOOR = 0.3;

/**
 * No single reason but a near-identical name (similarity 0.8 or more) makes a
 * candidate: a typo'd name needs the same birth date, phone or email as well,
 * and a phone with an email (a household's) needs a name or a birth date too.
 */
export const MIN_DUPLICATE_SCORE = 0.4;

export const DUPLICATE_LIMIT = { default: 10, max: 50 };

const DuplicateReasonSchema = Type.Union([
	Type.Object({ kind: Type.Literal("name"), similarity: Type.Number({ minimum: 0, maximum: 1 }), weight: Type.Number() }),
	Type.Object({ kind: StringEnum(["dateOfBirth", "phone", "email"] as const), weight: Type.Number() })
]);

export type DuplicateReason = Static<typeof DuplicateReasonSchema>;

const DuplicateCandidateSchema = Type.Object({
	patient: PatientSchema,
	score: Type.Number({ description: "The weights of its reasons, added up: at least 0.4." }),
	reasons: Type.Array(DuplicateReasonSchema)
});

export type DuplicateCandidate = Static<typeof DuplicateCandidateSchema>;

/** The patient's likely duplicates, best first. */
export const DuplicatesSchema = Type.Object({ patient: Uuid, candidates: Type.Array(DuplicateCandidateSchema) }, { $id: "Duplicates" });

export type Duplicates = Static<typeof DuplicatesSchema>;

/** The live patients most likely to be patient `id` again, best first; a 404 for no such live patient. */
export async function findDuplicates(db: Database, id: string, limit: number): Promise<Duplicates> {
	return db.transaction(async tx => {
		await findPatient(tx, id);
		// A similar name alone must reach MIN_DUPLICATE_SCORE: the trigram index then finds only those; the
		// candidates the other reasons find are scored on their names too, whatever their similarity.
		await tx.query(duplicateSearchSettings(MIN_DUPLICATE_SCORE / DUPLICATE_WEIGHTS.name));
		const rows = await tx.query<DuplicateRow>(
			duplicateCandidates({ id, weights: DUPLICATE_WEIGHTS, nameFloor: NAME_SIMILARITY_FLOOR, minScore: MIN_DUPLICATE_SCORE, limit })
		);
		return { patient: id, candidates: rows.map(candidateFrom) };
	});
}

function candidateFrom(row: DuplicateRow): DuplicateCandidate {
	const reasons: DuplicateReason[] = [];
	if (row.nameWeight > 0) reasons.push({ kind: "name", similarity: Math.round(row.nameSimilarity * 1000) / 1000, weight: row.nameWeight });
	if (row.sameDateOfBirth) reasons.push({ kind: "dateOfBirth", weight: DUPLICATE_WEIGHTS.dateOfBirth });
	if (row.samePhone) reasons.push({ kind: "phone", weight: DUPLICATE_WEIGHTS.phone });
	if (row.sameEmail) reasons.push({ kind: "email", weight: DUPLICATE_WEIGHTS.email });
	return { patient: patientFrom(row), score: row.score, reasons };
}
