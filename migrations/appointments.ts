import type { Migration } from "../lib/infra/migrations";

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
	}
];
