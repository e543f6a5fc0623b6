import { type PageRequest, limitOffset } from "./paging";
import { escapeLike } from "./sql";

/**
 * The SQL of the patient registry's hot paths (the reads, and registration),
 * written out rather than built by the ORM on every request. The benchmark's
 * baseline runs the same reads, so the two do the same database work there.
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

export interface NewPatient {
	id: string;
	mrn: string;
	name: string;
	email: string;
	address: string;
	dateOfBirth: string;
	registerDate: string;
	phone: string | null;
	gender: string | null;
}

/** An event for the outbox, which the relay publishes once the statement that wrote it commits. */
export interface OutboxEvent {
	eventId: string;
	topic: string;
	key: string;
	eventType: string;
	payload: Uint8Array;
}

/** Registers a patient and writes the event announcing it, in one statement: both, or (on any error) neither. */
export function insertPatientWithEvent(p: NewPatient, event: OutboxEvent): Statement {
	return {
		text: `WITH patient AS (
			INSERT INTO patients (id, mrn, name, email, address, date_of_birth, register_date, phone, gender, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now(), now()) RETURNING ${COLUMNS}
		), event AS (
			INSERT INTO outbox (event_id, topic, key, event_type, payload) SELECT $10, $11, $12, $13, $14 FROM patient
		)
		SELECT * FROM patient`,
		values: [p.id, p.mrn, p.name, p.email, p.address, p.dateOfBirth, p.registerDate, p.phone, p.gender, event.eventId, event.topic, event.key, event.eventType, Buffer.from(event.payload)]
	};
}

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
