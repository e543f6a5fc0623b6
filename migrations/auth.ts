import type { Migration } from "../lib/infra/migrations";

export const authMigrations: Migration[] = [
	{
		version: 1,
		name: "create users, sessions, refresh tokens and login failures",
		sql: `
CREATE TABLE users (
	id uuid PRIMARY KEY,
	email varchar(254) NOT NULL,
	password_hash text NOT NULL,
	role varchar(16) NOT NULL CHECK (role IN ('ADMIN', 'RECEPTIONIST', 'DOCTOR', 'VIEWER')),
	active boolean NOT NULL DEFAULT true,
	-- Access tokens issued before this instant are refused: set on deactivation and role changes.
	tokens_valid_after timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_tokens_valid_after_idx ON users (tokens_valid_after) WHERE tokens_valid_after IS NOT NULL;

CREATE TABLE sessions (
	id uuid PRIMARY KEY,
	user_id uuid NOT NULL REFERENCES users (id),
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL,
	revoked_at timestamptz,
	revoked_reason text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- Refresh tokens are opaque; only their SHA-256 is stored. A used one is kept to detect its reuse.
CREATE TABLE refresh_tokens (
	token_hash char(64) PRIMARY KEY,
	session_id uuid NOT NULL REFERENCES sessions (id),
	created_at timestamptz NOT NULL DEFAULT now(),
	used_at timestamptz
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE login_failures (
	id bigserial PRIMARY KEY,
	email varchar(254) NOT NULL,
	ip varchar(64),
	at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_email_idx ON login_failures (email, at);
CREATE INDEX login_failures_ip_idx ON login_failures (ip, at);
`
	},
	{
		version: 2,
		name: "reserve login attempts; remember the clients that logged in",
		sql: `
-- An attempt is written before its password is checked, as pending, and counts as a
-- failure until it proves the right password (then its row goes). '' is the client
-- of calls that came over the broker, not through the gateway: they share one key.
UPDATE login_failures SET ip = '' WHERE ip IS NULL;
ALTER TABLE login_failures
	ALTER COLUMN ip SET NOT NULL,
	ADD COLUMN pending boolean NOT NULL DEFAULT false;
CREATE INDEX login_failures_at_idx ON login_failures (at);

-- A client (by IP: the API has no cookies) that logged in to an account is exempt
-- from that account's global back-off, so a distributed attack does not slow its owner.
CREATE TABLE known_login_clients (
	user_id uuid NOT NULL REFERENCES users (id),
	ip varchar(64) NOT NULL,
	last_login_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id, ip)
);
CREATE INDEX known_login_clients_last_login_at_idx ON known_login_clients (last_login_at);
`
	},
	{
		version: 3,
		name: "staff accounts' versions",
		sql: `
-- Raised by every change: the ETag a client sends back in If-Match, so a stale write is refused, not applied.
ALTER TABLE users ADD COLUMN version integer NOT NULL DEFAULT 1;
`
	}
];
