import type { Statement } from "../../lib/infra/database";
import { type PatientRow, PATIENT_COLUMNS } from "./queries";

/**
 * The statements that find a patient's likely duplicates (migration 5: the
 * trigram index on names, the normalised phone and email columns and their
 * indexes), and the rows they read.
 */

/** How much each reason adds to a candidate's score; a name adds its weight times its similarity. */
export interface DuplicateWeights {
	name: number;
	dateOfBirth: number;
	phone: number;
	email: number;
}

export interface DuplicateSearch {
	id: string;
	weights: DuplicateWeights;
	/** A name less similar than this is no reason at all. */
	nameFloor: number;
	/** Candidates below this score are left out. */
	minScore: number;
	limit: number;
}

/** A candidate as `duplicateCandidates` reads it: the patient, and what matched with what weight. */
export type DuplicateRow = PatientRow & {
	nameSimilarity: number;
	nameWeight: number;
	sameDateOfBirth: boolean;
	samePhone: boolean;
	sameEmail: boolean;
	score: number;
};

/**
 * The setting `duplicateCandidates` runs under, for this transaction only: the
 * similarity a name must reach for pg_trgm's `%` (and so for the trigram index)
 * to find it is a setting, not an argument of the operator.
 */
export function duplicateSearchSettings(nameThreshold: number): Statement {
	return { text: "SELECT set_config('pg_trgm.similarity_threshold', $1, true)", values: [String(nameThreshold)] };
}

/**
 * The live patients most like patient `id`, best first. Each reason finds its
 * own candidates through its own index (a similar name through the trigram
 * index, at the threshold `duplicateSearchSettings` set; the date of birth, the
 * phone's digits and the mailbox through their btrees); only that union is
 * scored, so the work grows with the candidates, not with the table. A
 * candidate found one way is scored on every reason. The patients' rows are
 * read for the best `limit` only.
 */
export function duplicateCandidates(search: DuplicateSearch): Statement {
	const { weights } = search;
	return {
		text: `WITH target AS (
			SELECT id, name, date_of_birth, phone_digits, email_mailbox FROM patients WHERE id = $1 AND deleted_at IS NULL
		), found AS (
			SELECT id, name, date_of_birth, phone_digits, email_mailbox FROM patients WHERE name % (SELECT name FROM target) AND deleted_at IS NULL
			UNION
			SELECT id, name, date_of_birth, phone_digits, email_mailbox FROM patients WHERE date_of_birth = (SELECT date_of_birth FROM target) AND deleted_at IS NULL
			UNION
			SELECT id, name, date_of_birth, phone_digits, email_mailbox FROM patients WHERE phone_digits = (SELECT phone_digits FROM target) AND deleted_at IS NULL
			UNION
			SELECT id, name, date_of_birth, phone_digits, email_mailbox FROM patients WHERE email_mailbox = (SELECT email_mailbox FROM target) AND deleted_at IS NULL
		), matched AS (
			SELECT f.id AS candidate, similarity(f.name, t.name) AS name_similarity,
				f.date_of_birth = t.date_of_birth AS same_date_of_birth,
				coalesce(f.phone_digits = t.phone_digits, false) AS same_phone,
				coalesce(f.email_mailbox = t.email_mailbox, false) AS same_email
			FROM found f CROSS JOIN target t
			WHERE f.id <> t.id
		), weighed AS (
			SELECT *, CASE WHEN name_similarity >= $3 THEN round(($4 * name_similarity)::numeric, 3) ELSE 0 END AS name_weight
			FROM matched
		), scored AS (
			SELECT *, name_weight + CASE WHEN same_date_of_birth THEN $5::numeric ELSE 0 END
				+ CASE WHEN same_phone THEN $6::numeric ELSE 0 END + CASE WHEN same_email THEN $7::numeric ELSE 0 END AS score
			FROM weighed
		), best AS (
			SELECT * FROM scored WHERE score >= $8 ORDER BY score DESC, candidate LIMIT $2
		)
		SELECT ${PATIENT_COLUMNS}, best.name_similarity::float8 AS "nameSimilarity", best.name_weight::float8 AS "nameWeight",
			best.same_date_of_birth AS "sameDateOfBirth", best.same_phone AS "samePhone", best.same_email AS "sameEmail", best.score::float8 AS score
		FROM best JOIN patients ON patients.id = best.candidate
		ORDER BY best.score DESC, best.candidate`,
		values: [search.id, search.limit, search.nameFloor, weights.name, weights.dateOfBirth, weights.phone, weights.email, search.minScore]
	};
}
