import type { Migration } from "../lib/infra/migrations";

export const doctorMigrations: Migration[] = [
	{
		version: 1,
		name: "create doctors",
		sql: `
CREATE TABLE doctors (
	id uuid PRIMARY KEY,
	name varchar(100) NOT NULL,
	email varchar(254) NOT NULL,
	specialization varchar(100) NOT NULL,
	address text NOT NULL,
	joining_date date NOT NULL,
	phone varchar(32),
	timezone varchar(64) NOT NULL DEFAULT 'UTC',
	consultation_fee bigint NOT NULL DEFAULT 0 CHECK (consultation_fee >= 0),
	slot_minutes integer NOT NULL DEFAULT 30 CHECK (slot_minutes BETWEEN 5 AND 480),
	-- [{ day: "monday", start: "09:00", end: "17:00" }, …] in the doctor's wall-clock time.
	availability jsonb NOT NULL DEFAULT '[]',
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz
);
CREATE UNIQUE INDEX doctors_email_key ON doctors (lower(email)) WHERE deleted_at IS NULL;
CREATE INDEX doctors_specialization_idx ON doctors (specialization, lower(name), id) WHERE deleted_at IS NULL;
CREATE INDEX doctors_name_prefix_idx ON doctors (lower(name) text_pattern_ops) WHERE deleted_at IS NULL;
CREATE INDEX doctors_name_idx ON doctors (lower(name), id) WHERE deleted_at IS NULL;
`
	},
	{
		version: 2,
		name: "doctors' versions",
		sql: `
-- Raised by every change: the ETag a client sends back in If-Match, so a stale write is refused, not applied.
ALTER TABLE doctors ADD COLUMN version integer NOT NULL DEFAULT 1;
`
	},
	{
		version: 3,
		name: "doctors remember the Idempotency-Key they were created with",
		sql: `
-- A retried POST /doctors with its key gets the first answer again: the key, its
-- caller, the request's fingerprint and the answer stay on the row it created.
ALTER TABLE doctors
	ADD COLUMN idempotency_key varchar(255),
	ADD COLUMN idempotency_user uuid,
	ADD COLUMN request_fingerprint char(64),
	ADD COLUMN idempotency_answer jsonb;
CREATE UNIQUE INDEX doctors_idempotency_key ON doctors (idempotency_user, idempotency_key) WHERE idempotency_key IS NOT NULL;
`
	}
];
