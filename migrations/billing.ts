import type { Migration } from "../lib/infra/migrations";
import { appendOnlySql } from "../lib/infra/sql";
import { PROCESSED_EVENTS_SQL } from "../lib/domain/patient-events";

export const billingMigrations: Migration[] = [
	{
		version: 1,
		name: "create billing accounts and the append-only ledger",
		sql: `
CREATE TABLE billing_accounts (
	id uuid PRIMARY KEY,
	patient_id uuid NOT NULL,
	name varchar(100) NOT NULL,
	email varchar(254) NOT NULL,
	status varchar(9) NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE', 'SUSPENDED')),
	currency char(3) NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
-- One account per patient: what makes CreateBillingAccount idempotent.
CREATE UNIQUE INDEX billing_accounts_patient_id_key ON billing_accounts (patient_id);

-- Money in integer minor units (cents); never a float.
CREATE TABLE billing_transactions (
	id uuid PRIMARY KEY,
	account_id uuid NOT NULL REFERENCES billing_accounts (id),
	type varchar(10) NOT NULL CHECK (type IN ('CHARGE', 'PAYMENT', 'ADJUSTMENT', 'REFUND')),
	amount bigint NOT NULL CHECK (amount <> 0 AND (type = 'ADJUSTMENT' OR amount > 0)),
	description varchar(500),
	reference varchar(100),
	idempotency_key varchar(255),
	request_fingerprint char(64),
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX billing_transactions_account_idx ON billing_transactions (account_id, created_at, id);
-- A retried request with the same Idempotency-Key finds the transaction it already posted.
CREATE UNIQUE INDEX billing_transactions_idempotency_key ON billing_transactions (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

${appendOnlySql("billing_transactions", "the ledger is append-only: post a REFUND or an ADJUSTMENT instead")}`
	},
	{
		version: 2,
		name: "remember processed patient events",
		sql: PROCESSED_EVENTS_SQL
	},
	{
		version: 3,
		name: "billing accounts have a version",
		sql: `
-- Raised by every change that changes something (staff's, gRPC's, the patient events'): a PATCH with a stale If-Match is refused.
ALTER TABLE billing_accounts ADD COLUMN version integer NOT NULL DEFAULT 1;`
	}
];
