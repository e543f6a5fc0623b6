import { type Static, Type } from "@sinclair/typebox";
import type { Statement } from "../../lib/infra/database";
import { Instant, StringEnum, Uuid, Version } from "../../lib/domain/schemas";
import type { Revocation } from "../../lib/infra/auth/tokens";
import { type Page, type PageRequest, limitOffset, toPage } from "../../lib/domain/paging";
import { ROLES, type Role } from "../../lib/domain/roles";
import {
	EMAIL_WINDOW_SECONDS,
	IP_WINDOW_SECONDS,
	KNOWN_CLIENT_DAYS,
	LOGIN_RECORDS_KEPT_SECONDS,
	PAIR_WINDOW_SECONDS,
	PENDING_STALE_SECONDS
} from "./login-throttle";

/** Every statement of the auth service, and the mappers of their rows (columns: migrations/auth.ts). */

/** A staff account as the API shows it: never its password hash. */
export const UserSchema = Type.Object(
	{ id: Uuid, email: Type.String({ format: "email" }), role: StringEnum(ROLES), active: Type.Boolean(), createdAt: Instant, version: Version },
	{
		$id: "User",
		examples: [{ id: "5b0f3a2e-1c4d-4e6f-8a9b-0c1d2e3f4a5b", email: "reception@clinic.example", role: "RECEPTIONIST", active: true, createdAt: "2026-11-29T09:00:00.000Z", version: 1 }]
	}
);

export type User = Static<typeof UserSchema>;

export interface UserRow extends Omit<User, "createdAt"> {
	createdAt: Date;
}

const USER_COLUMNS = `id, email, role, active, created_at AS "createdAt", version`;

export function userFrom(row: UserRow): User {
	return { id: row.id, email: row.email, role: row.role, active: row.active, createdAt: row.createdAt.toISOString(), version: row.version };
}

/** A new account, active; its id is decided by the caller. */
export function insertUser(id: string, email: string, passwordHash: string, role: Role): Statement {
	return {
		text: `INSERT INTO users (id, email, password_hash, role, active, created_at, updated_at)
			VALUES ($1, $2, $3, $4, true, now(), now()) RETURNING ${USER_COLUMNS}`,
		values: [id, email, passwordHash, role]
	};
}

export function userById(id: string): Statement {
	return { text: `SELECT ${USER_COLUMNS} FROM users WHERE id = $1`, values: [id] };
}

/** The account an email (already lower case) logs in to, in any case, with its hash. */
export function userForLogin(email: string): Statement {
	return { text: `SELECT ${USER_COLUMNS}, password_hash AS "passwordHash" FROM users WHERE lower(email) = $1`, values: [email] };
}

/** One page of accounts, oldest first; each row also carries `total`, and a page past the end is one row of nulls but for it. */
export function userPage(page: PageRequest): Statement {
	const { limit, offset } = limitOffset(page);
	return {
		text: `SELECT ${USER_COLUMNS}, counted.total
			FROM (SELECT count(*)::int AS total FROM users) AS counted
			LEFT JOIN LATERAL (SELECT * FROM users ORDER BY created_at ASC, id ASC LIMIT $1 OFFSET $2) AS page ON true`,
		values: [limit, offset]
	};
}

export function userPageFrom(rows: (UserRow & { total: number })[], page: PageRequest): Page<User> {
	return toPage(rows.filter(row => row.id !== null).map(userFrom), rows[0].total, page);
}

/**
 * A new role or active flag for an account at a version `ifMatch` allows (any, when undefined): no row
 * otherwise. Tokens issued before `validAfter` then carry what no longer holds.
 */
export function updateUserAccess(id: string, role: Role, active: boolean, validAfter: Date, ifMatch?: number[]): Statement {
	return {
		text: `UPDATE users SET role = $2, active = $3, tokens_valid_after = $4, updated_at = now(), version = version + 1
			WHERE id = $1 AND ($5::int[] IS NULL OR version = ANY($5::int[])) RETURNING ${USER_COLUMNS}`,
		values: [id, role, active, validAfter, ifMatch ?? null]
	};
}

/** Held until the transaction ends: serialises the changes that could remove the last admin. */
export const lockAdminChanges: Statement = { text: "SELECT pg_advisory_xact_lock(hashtext('auth.admins'))", values: [] };

export const activeAdminCount: Statement = { text: "SELECT count(*)::int AS count FROM users WHERE role = 'ADMIN' AND active", values: [] };

export const anyAdmin: Statement = { text: "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'ADMIN') AS found", values: [] };

export function insertSession(id: string, userId: string, days: number): Statement {
	return { text: "INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, now() + make_interval(days => $3))", values: [id, userId, days] };
}

export function revokeSession(id: string, reason: string): Statement {
	return { text: "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL", values: [id, reason] };
}

export function insertRefreshToken(tokenHash: string, sessionId: string): Statement {
	return { text: "INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)", values: [tokenHash, sessionId] };
}

export interface RefreshTokenRow {
	sessionId: string;
	userId: string;
	usedAt: Date | null;
	revokedAt: Date | null;
	expired: boolean;
}

/** A refresh token and its session, both locked until the transaction ends, so one token rotates once. */
export function refreshTokenForUpdate(tokenHash: string): Statement {
	return {
		text: `SELECT t.session_id AS "sessionId", s.user_id AS "userId", t.used_at AS "usedAt", s.revoked_at AS "revokedAt", s.expires_at < now() AS expired
			FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
			WHERE t.token_hash = $1 FOR UPDATE OF t, s`,
		values: [tokenHash]
	};
}

export function markRefreshTokenUsed(tokenHash: string): Statement {
	return { text: "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", values: [tokenHash] };
}

/** Sessions revoked, and accounts whose tokens were cut off, within an access token's lifetime. */
export function revokedSessions(withinSeconds: number): Statement {
	return { text: `SELECT id AS "sessionId" FROM sessions WHERE revoked_at > now() - make_interval(secs => $1)`, values: [withinSeconds] };
}

export function cutOffUsers(withinSeconds: number): Statement {
	return {
		text: `SELECT id AS "userId", floor(extract(epoch FROM tokens_valid_after))::bigint AS "validAfter"
			FROM users WHERE tokens_valid_after > now() - make_interval(secs => $1)`,
		values: [withinSeconds]
	};
}

/** pg reads a bigint as a string. */
export function cutOffFrom(row: { userId: string; validAfter: string }): Revocation {
	return { userId: row.userId, validAfter: Number(row.validAfter) };
}

/** Held until the transaction ends; always the email's lock, then the client's: one order, so no deadlock. */
export function lockLoginAttempts(email: string, client: string): Statement {
	return {
		text: `SELECT pg_advisory_xact_lock(hashtext('auth.login.email'), hashtext($1)),
			pg_advisory_xact_lock(hashtext('auth.login.ip'), hashtext($2))`,
		values: [email, client]
	};
}

/**
 * What the attempts table says about a login (a LoginCounts row). Times are the
 * statement's, not the transaction's (now()), which began before the locks were
 * granted: attempts are then stamped in the order they were let through.
 */
export function loginCounts(email: string, client: string): Statement {
	return {
		text: `SELECT count(*) FILTER (WHERE pair)::int AS "pairAttempts",
			count(*) FILTER (WHERE pair AND settled)::int AS "pairFailures",
			extract(epoch FROM min(at) FILTER (WHERE pair) + make_interval(secs => $3) - statement_timestamp())::float8 AS "pairRetry",
			count(*) FILTER (WHERE by_ip)::int AS "ipAttempts",
			count(*) FILTER (WHERE by_ip AND settled)::int AS "ipFailures",
			extract(epoch FROM min(at) FILTER (WHERE by_ip) + make_interval(secs => $4) - statement_timestamp())::float8 AS "ipRetry",
			count(*) FILTER (WHERE by_email)::int AS "emailAttempts",
			extract(epoch FROM statement_timestamp() - max(at) FILTER (WHERE by_email))::float8 AS "emailIdleSeconds",
			EXISTS (SELECT 1 FROM known_login_clients k JOIN users u ON u.id = k.user_id
			        WHERE lower(u.email) = $1 AND k.ip = $2 AND k.last_login_at > statement_timestamp() - make_interval(days => $7)) AS "knownClient"
			FROM (SELECT at,
			             email = $1 AND ip = $2 AND at > statement_timestamp() - make_interval(secs => $3) AS pair,
			             ip = $2 AND at > statement_timestamp() - make_interval(secs => $4) AS by_ip,
			             email = $1 AND at > statement_timestamp() - make_interval(secs => $5) AS by_email,
			             NOT pending OR at <= statement_timestamp() - make_interval(secs => $6) AS settled
			      FROM login_failures
			      WHERE (email = $1 AND at > statement_timestamp() - make_interval(secs => $5))
			         OR (ip = $2 AND at > statement_timestamp() - make_interval(secs => $4))) recent`,
		values: [email, client, PAIR_WINDOW_SECONDS, IP_WINDOW_SECONDS, EMAIL_WINDOW_SECONDS, PENDING_STALE_SECONDS, KNOWN_CLIENT_DAYS]
	};
}

/** An attempt about to be checked, written as a pending failure; returns its `id`. */
export function reserveLoginAttempt(email: string, client: string): Statement {
	return { text: "INSERT INTO login_failures (email, ip, pending, at) VALUES ($1, $2, true, statement_timestamp()) RETURNING id", values: [email, client] };
}

export function settleLoginFailure(attempt: string): Statement {
	return { text: "UPDATE login_failures SET pending = false WHERE id = $1", values: [attempt] };
}

/** After a right password: the attempt's reservation, and this client's earlier failures on the account (not attempts still pending). */
export function clearLoginFailures(email: string, client: string, attempt: string): Statement {
	return { text: "DELETE FROM login_failures WHERE email = $1 AND ip = $2 AND (id = $3 OR NOT pending)", values: [email, client, attempt] };
}

export function rememberLoginClient(userId: string, client: string): Statement {
	return {
		text: `INSERT INTO known_login_clients (user_id, ip) VALUES ($1, $2)
			ON CONFLICT (user_id, ip) DO UPDATE SET last_login_at = now()`,
		values: [userId, client]
	};
}

export const pruneLoginFailures: Statement = {
	text: "DELETE FROM login_failures WHERE at < now() - make_interval(secs => $1)",
	values: [LOGIN_RECORDS_KEPT_SECONDS]
};

export const pruneKnownClients: Statement = {
	text: "DELETE FROM known_login_clients WHERE last_login_at < now() - make_interval(days => $1)",
	values: [KNOWN_CLIENT_DAYS]
};
