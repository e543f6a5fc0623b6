import type { Migration } from "../lib/infra/migrations";
import { appendOnlySql } from "../lib/infra/sql";
import { PROCESSED_EVENTS_SQL } from "../lib/domain/patient-events";

export const appointmentMigrations: Migration[] = [
	{
		version: 1,
		name: "create appointments with database-enforced no-overlap",
		sql: `
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE appointments (
	id uuid PRIMARY KEY,
	patient_id uuid NOT NULL,
	doctor_id uuid NOT NULL,
	start_at timestamptz NOT NULL,
	end_at timestamptz NOT NULL,
	duration_minutes integer NOT NULL CHECK (duration_minutes > 0),
	-- The doctor's zone and fee when booked: how the times are shown, what fulfilment charges.
	timezone varchar(64) NOT NULL,
	consultation_fee bigint NOT NULL CHECK (consultation_fee >= 0),
	status varchar(10) NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'arrived', 'fulfilled', 'cancelled', 'noshow')),
	reason varchar(500),
	cancellation_reason varchar(500),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	CHECK (end_at > start_at),
	-- No two active appointments of one doctor, or of one patient, overlap: whoever commits second gets 23P01.
	CONSTRAINT appointments_doctor_no_overlap EXCLUDE USING gist (doctor_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&)
		WHERE (status IN ('booked', 'arrived')),
	CONSTRAINT appointments_patient_no_overlap EXCLUDE USING gist (patient_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&)
		WHERE (status IN ('booked', 'arrived'))
);
CREATE INDEX appointments_doctor_start_idx ON appointments (doctor_id, start_at);
CREATE INDEX appointments_patient_start_idx ON appointments (patient_id, start_at);
CREATE INDEX appointments_start_idx ON appointments (start_at, id);
`
	},
	{
		version: 2,
		name: "remember which fulfilled appointments billing has charged",
		sql: `
ALTER TABLE appointments ADD COLUMN charged_at timestamptz;
CREATE INDEX appointments_uncharged_idx ON appointments (updated_at) WHERE status = 'fulfilled' AND charged_at IS NULL;
`
	},
	{
		version: 3,
		name: "appointments' versions",
		sql: `
-- Raised by every change: the ETag a client sends back in If-Match, so a stale write is refused, not applied.
ALTER TABLE appointments ADD COLUMN version integer NOT NULL DEFAULT 1;
`
	},
	{
		version: 4,
		name: "appointments remember the Idempotency-Key they were booked with",
		sql: `
-- A retried POST /appointments with its key gets the first answer again, not a
-- 409 from its own first booking: the key, its caller, the request's fingerprint
-- and the answer stay on the row it created.
ALTER TABLE appointments
	ADD COLUMN idempotency_key varchar(255),
	ADD COLUMN idempotency_user uuid,
	ADD COLUMN request_fingerprint char(64),
	ADD COLUMN idempotency_answer jsonb;
CREATE UNIQUE INDEX appointments_idempotency_key ON appointments (idempotency_user, idempotency_key) WHERE idempotency_key IS NOT NULL;
`
	},
	{
		version: 5,
		name: "appointments' status history",
		sql: `
-- Each status an appointment took (and each move to another patient on a merge), who
-- made the change and when: written by the statement that makes the change.
CREATE TABLE appointment_status_history (
	id bigserial PRIMARY KEY,
	appointment_id uuid NOT NULL REFERENCES appointments (id),
	-- The appointment's version and state after the change.
	version integer NOT NULL,
	status varchar(10) NOT NULL,
	patient_id uuid NOT NULL,
	-- The staff user who asked; NULL when MedSync made the change itself, from a patient's deletion or merge.
	changed_by uuid,
	cause varchar(16) NOT NULL CHECK (cause IN ('request', 'patient-deleted', 'patient-merged', 'before-history')),
	reason varchar(500),
	changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX appointment_status_history_appointment_idx ON appointment_status_history (appointment_id, id);
${appendOnlySql("appointment_status_history", "an appointment's history is append-only")}

-- Appointments booked before the history began: their booking and their present status, by no one known.
INSERT INTO appointment_status_history (appointment_id, version, status, patient_id, cause, changed_at)
SELECT id, 1, 'booked', patient_id, 'before-history', created_at FROM appointments;
INSERT INTO appointment_status_history (appointment_id, version, status, patient_id, cause, reason, changed_at)
SELECT id, version, status, patient_id, 'before-history', cancellation_reason, updated_at FROM appointments WHERE status <> 'booked';
`
	},
	{
		version: 6,
		name: "the patient events the appointments service applied",
		sql: `
-- Appointments follow a merged patient to the survivor (PATIENT_MERGED), once per event.
${PROCESSED_EVENTS_SQL}
`
	}
];
