import { type PageRequest, limitOffset } from "./paging";
import { escapeLike } from "./sql";

/**
 * The SQL of the patient registry's read paths, the busiest in MedSync: written
 * out rather than built by the ORM on every request. The benchmark's baseline
 * runs these same statements, so the two do the same database work.
 */

export interface Statement {
	text: string;
	values: unknown[];
}

export interface PatientFilter extends PageRequest {
	search?: string;
	bornFrom?: string;
	bornTo?: string;
	/** A sortable field, `-` first for descending. */
	sort: string;
}

/** Column → the name the API gives it; dates come back as `YYYY-MM-DD` whatever the session's DateStyle. */
const COLUMNS = `id, mrn, name, email, address, to_char(date_of_birth, 'YYYY-MM-DD') AS "dateOfBirth", to_char(register_date, 'YYYY-MM-DD') AS "registerDate",
	phone, gender, billing_account_id AS "billingAccountId", created_at AS "createdAt", updated_at AS "updatedAt"`;

/** Each sortable field and the expression its index covers. */
export const PATIENT_SORT_KEYS = {
	name: "lower(name)",
	registerDate: "register_date",
	dateOfBirth: "date_of_birth",
	createdAt: "created_at",
	mrn: "mrn"
} as const;

export function patientById(id: string): Statement {
	return { text: `SELECT ${COLUMNS} FROM patients WHERE id = $1 AND deleted_at IS NULL`, values: [id] };
}

/**
 * One page of live patients and the count of all that match. `search` matches a
 * name prefix, a whole email, or an MRN, case-insensitively for the first two.
 */
export function patientPage(filter: PatientFilter): { page: Statement; count: Statement } {
	const values: unknown[] = [];
	const conditions = ["deleted_at IS NULL"];
	if (filter.search) {
		const needle = filter.search.toLowerCase();
		values.push(`${escapeLike(needle)}%`, needle, filter.search);
		conditions.push("(lower(name) LIKE $1 OR lower(email) = $2 OR mrn = $3)");
	}
	if (filter.bornFrom) conditions.push(`date_of_birth >= $${values.push(filter.bornFrom)}`);
	if (filter.bornTo) conditions.push(`date_of_birth <= $${values.push(filter.bornTo)}`);
	const where = conditions.join(" AND ");

	const direction = filter.sort.startsWith("-") ? "DESC" : "ASC";
	const key = PATIENT_SORT_KEYS[filter.sort.replace(/^-/, "") as keyof typeof PATIENT_SORT_KEYS];
	if (!key) throw new Error(`Patients cannot be sorted by ${filter.sort}`);
	const { limit, offset } = limitOffset(filter);
	const next = values.length + 1;
	return {
		page: {
			text: `SELECT ${COLUMNS} FROM patients WHERE ${where} ORDER BY ${key} ${direction}, id ${direction} LIMIT $${next} OFFSET $${next + 1}`,
			values: [...values, limit, offset]
		},
		count: { text: `SELECT count(*)::int AS total FROM patients WHERE ${where}`, values }
	};
}
