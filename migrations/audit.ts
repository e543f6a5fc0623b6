import type { Migration } from "../lib/infra/migrations";
import { appendOnlySql } from "../lib/infra/sql";

export const auditMigrations: Migration[] = [
	{
		version: 1,
		name: "create the append-only audit trail",
		sql: `
CREATE TABLE audit_events (
	id uuid PRIMARY KEY,
	at timestamptz NOT NULL,
	user_id uuid,
	role varchar(16),
	action varchar(100) NOT NULL,
	resource varchar(32) NOT NULL,
	patient_id uuid,
	outcome varchar(16) NOT NULL CHECK (outcome IN ('success', 'denied', 'error')),
	status smallint NOT NULL,
	ip varchar(64),
	request_id varchar(100),
	recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_at_idx ON audit_events (at, id);
CREATE INDEX audit_events_patient_idx ON audit_events (patient_id, at);
CREATE INDEX audit_events_user_idx ON audit_events (user_id, at);

-- Append-only, whatever the client: the database itself refuses to change or remove a record.
${appendOnlySql("audit_events", "audit records cannot be changed or deleted")}`
	},
	{
		version: 2,
		name: "who read through an operator's tool",
		sql: `
-- A read through the REPL has no gateway user: it names the operator, <OS user>@<host>, or 'unknown'.
ALTER TABLE audit_events ADD COLUMN operator varchar(200);`
	}
];
