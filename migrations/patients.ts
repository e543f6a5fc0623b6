import type { Migration } from "../lib/infra/migrations";
import { appendOnlySql } from "../lib/infra/sql";

export const patientMigrations: Migration[] = [
	{
		version: 1,
		name: "create patients",
		sql: `
CREATE SEQUENCE patient_mrn_serial START 1000000 MINVALUE 1000000 MAXVALUE 9999999;

CREATE TABLE patients (
	id uuid PRIMARY KEY,
	mrn char(8) NOT NULL UNIQUE,
	name varchar(100) NOT NULL,
	email varchar(254) NOT NULL,
	address text NOT NULL,
	date_of_birth date NOT NULL,
	register_date date NOT NULL,
	phone varchar(32),
	gender varchar(7) CHECK (gender IN ('male', 'female', 'other', 'unknown')),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz
);

-- Deleted records keep their row (medical records are never destroyed) but free their email.
CREATE UNIQUE INDEX patients_email_key ON patients (lower(email)) WHERE deleted_at IS NULL;
-- Name prefix search (lower(name) LIKE 'abc%') and the sort orders, over live rows only.
CREATE INDEX patients_name_prefix_idx ON patients (lower(name) text_pattern_ops) WHERE deleted_at IS NULL;
CREATE INDEX patients_name_idx ON patients (lower(name), id) WHERE deleted_at IS NULL;
CREATE INDEX patients_register_date_idx ON patients (register_date, id) WHERE deleted_at IS NULL;
CREATE INDEX patients_date_of_birth_idx ON patients (date_of_birth, id) WHERE deleted_at IS NULL;
CREATE INDEX patients_created_at_idx ON patients (created_at, id) WHERE deleted_at IS NULL;
`
	},
	{
		version: 2,
		name: "link patients to their billing accounts",
		sql: `
ALTER TABLE patients ADD COLUMN billing_account_id uuid;
-- The patients whose account billing has not yet opened: what the reconciler looks for.
CREATE INDEX patients_without_billing_idx ON patients (created_at) WHERE billing_account_id IS NULL AND deleted_at IS NULL;
`
	},
	{
		version: 3,
		name: "transactional outbox for patient events",
		sql: `
-- Events are written here in the transaction that changes the patient, then relayed to Kafka in id order.
CREATE TABLE outbox (
	id bigserial PRIMARY KEY,
	event_id uuid NOT NULL UNIQUE,
	topic varchar(249) NOT NULL,
	key varchar(200) NOT NULL,
	event_type varchar(40) NOT NULL,
	payload bytea NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	sent_at timestamptz,
	attempts integer NOT NULL DEFAULT 0,
	last_error text
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE sent_at IS NULL;

-- Wakes the relay at commit, so events leave at once rather than at the next poll.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('outbox', '');
	RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
`
	},
	{
		version: 4,
		name: "patient versions, registration retry keys and history",
		sql: `
-- Raised by every change: a client's If-Match names the version it read, so a change made meanwhile is never overwritten.
ALTER TABLE patients
	ADD COLUMN version integer NOT NULL DEFAULT 1,
	ADD COLUMN idempotency_user uuid,
	ADD COLUMN idempotency_key varchar(255),
	ADD COLUMN request_fingerprint char(64);
-- A registration retried by the same caller with the same Idempotency-Key finds the patient its first attempt registered.
CREATE UNIQUE INDEX patients_idempotency_key ON patients (idempotency_user, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Each patient's versions, each the whole record as a change left it (deleted ones too), with who changed it and when.
-- Written in the statement that makes the change, so a version exists if and only if its change does.
CREATE TABLE patient_versions (
	patient_id uuid NOT NULL REFERENCES patients (id),
	version integer NOT NULL,
	kind varchar(16) NOT NULL CHECK (kind IN ('recorded', 'created', 'updated', 'deleted', 'merged')),
	changed_by uuid,
	changed_at timestamptz NOT NULL,
	record jsonb NOT NULL,
	PRIMARY KEY (patient_id, version)
);
${appendOnlySql("patient_versions", "a patient's history cannot be changed: a change adds a version")}

-- Patients registered before history was kept start theirs with the record as it stood ('recorded': author unknown).
INSERT INTO patient_versions (patient_id, version, kind, changed_by, changed_at, record)
SELECT p.id, 1, 'recorded', NULL, p."updatedAt", to_jsonb(p) FROM (
	SELECT id, mrn, name, email, address, to_char(date_of_birth, 'YYYY-MM-DD') AS "dateOfBirth", to_char(register_date, 'YYYY-MM-DD') AS "registerDate",
		phone, gender, billing_account_id AS "billingAccountId", version, created_at AS "createdAt", updated_at AS "updatedAt", deleted_at AS "deletedAt"
	FROM patients
) AS p;
`
	},
	{
		version: 5,
		name: "finding duplicate patients",
		sql: `
-- Duplicates are found by similar names (trigram similarity), so pg_trgm. It is a trusted extension: the owner of the database may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
-- A phone as its digits and an email without case, spaces or "+tag", so that two ways of writing one number or one mailbox compare equal.
-- Stored: computed once per write, and indexable.
ALTER TABLE patients
	ADD COLUMN phone_digits text GENERATED ALWAYS AS (NULLIF(regexp_replace(phone, '[^0-9]', '', 'g'), '')) STORED,
	ADD COLUMN email_mailbox text GENERATED ALWAYS AS (lower(regexp_replace(btrim(email), '[+][^@]*@', '@'))) STORED;
-- Each reason a patient is a duplicate candidate is found through its own index, over live rows only
-- (the date of birth through patients_date_of_birth_idx). The trigram index takes each registration at once
-- (fastupdate off): its pending list, kept until a vacuum, is read through by every search, and made the planner
-- prefer comparing every name (40 ms on 10,000 patients, against 1 ms through the index).
CREATE INDEX patients_name_trgm_idx ON patients USING gin (name gin_trgm_ops) WITH (fastupdate = off) WHERE deleted_at IS NULL;
CREATE INDEX patients_phone_digits_idx ON patients (phone_digits) WHERE deleted_at IS NULL;
CREATE INDEX patients_email_mailbox_idx ON patients (email_mailbox) WHERE deleted_at IS NULL;
`
	},
	{
		version: 6,
		name: "duplicate patients merged into a survivor",
		sql: `
-- A merged patient is retired like a deleted one (it leaves every read and frees its email) and names its survivor,
-- to which its reads point. A survivor is never itself retired when the merge is made; the check keeps the pointer
-- on retired rows and off the row itself.
ALTER TABLE patients ADD COLUMN merged_into uuid REFERENCES patients (id);
ALTER TABLE patients ADD CONSTRAINT patients_merged_is_retired CHECK (merged_into IS NULL OR (deleted_at IS NOT NULL AND merged_into <> id));
`
	},
	{
		version: 7,
		name: "outbox events carry the trace of the change that wrote them",
		sql: `
-- The W3C trace context (traceparent, tracestate) of the request whose transaction wrote the event, which the relay
-- puts in the Kafka message's headers so that consumers continue that trace. Null when tracing was off.
ALTER TABLE outbox ADD COLUMN trace_context jsonb;
`
	}
];
