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
	},
	{
		version: 4,
		name: "a merged patient's account closes and carries its balance over",
		sql: `
-- A merged patient's account is CLOSED, and names the account that took over its balance; only a merge closes one.
ALTER TABLE billing_accounts ADD COLUMN merged_into_account_id uuid REFERENCES billing_accounts (id);
ALTER TABLE billing_accounts DROP CONSTRAINT billing_accounts_status_check;
ALTER TABLE billing_accounts ADD CONSTRAINT billing_accounts_status_check CHECK (status IN ('ACTIVE', 'INACTIVE', 'SUSPENDED', 'CLOSED'));
ALTER TABLE billing_accounts ADD CONSTRAINT billing_accounts_closed_by_merge CHECK ((status = 'CLOSED') = (merged_into_account_id IS NOT NULL));
-- A TRANSFER carries a balance from one account to another, signed as an adjustment is: a merge posts one on
-- each side, of opposite amounts, so no money is created or lost.
ALTER TABLE billing_transactions DROP CONSTRAINT billing_transactions_type_check;
ALTER TABLE billing_transactions ADD CONSTRAINT billing_transactions_type_check CHECK (type IN ('CHARGE', 'PAYMENT', 'ADJUSTMENT', 'REFUND', 'TRANSFER'));
ALTER TABLE billing_transactions DROP CONSTRAINT billing_transactions_check;
ALTER TABLE billing_transactions ADD CONSTRAINT billing_transactions_amount_check CHECK (amount <> 0 AND (type IN ('ADJUSTMENT', 'TRANSFER') OR amount > 0));`
	}
];
