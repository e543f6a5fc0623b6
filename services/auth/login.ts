import crypto from "node:crypto";
import type { Database, Queryable } from "../../lib/infra/database";
import { TooManyRequestsError, UnauthorizedError } from "../../lib/infra/errors";
import type { SigningKey } from "../../lib/infra/auth/keys";
import { ATTEMPT_RECHECK_MS, IN_FLIGHT_WAIT_MS, type LoginCounts, LoginsInProgress, loginClient, loginVerdict } from "./login-throttle";
import { hashPassword, verifyPassword } from "./passwords";
import * as sql from "./queries";
import type { User, UserRow } from "./queries";
import { type TokenPair, openSession } from "./sessions";

/** Logging in: a password checked within the throttle's limits (login-throttle.ts), then a session. */

const BAD_CREDENTIALS = "Invalid email or password";
const THROTTLED = "Too many failed logins. Try again later.";

/** What the login flow works with, one per service. */
export interface Logins {
	db: Database;
	signingKey: SigningKey;
	/** An argon2id hash of a random password: verified against when the email is unknown, so both paths take as long. */
	decoyHash: string;
	inProgress: LoginsInProgress;
}

export async function newLogins(db: Database, signingKey: SigningKey): Promise<Logins> {
	return { db, signingKey, decoyHash: await hashPassword(crypto.randomBytes(16).toString("hex")), inProgress: new LoginsInProgress() };
}

/**
 * A login from `ip` with an email in lower case: the new session's tokens, or
 * 401; 429 when the client has too many logins in progress here already, or the
 * throttle refuses.
 */
export async function logIn(logins: Logins, email: string, ip: string | undefined, password: string): Promise<TokenPair> {
	const client = loginClient(ip);
	if (!logins.inProgress.enter(client)) throw new TooManyRequestsError(THROTTLED, 1);
	try {
		return await checkPassword(logins, email, client, password);
	} finally {
		logins.inProgress.leave(client);
	}
}

async function checkPassword({ db, signingKey, decoyHash, inProgress }: Logins, email: string, client: string, password: string): Promise<TokenPair> {
	const attempt = await reserveAttempt(db, inProgress, email, client);
	let user: User | undefined;
	try {
		const [row] = await db.query<UserRow & { passwordHash: string }>(sql.userForLogin(email));
		// The decoy keeps an unknown email as slow as a wrong password.
		const ok = await verifyPassword(row ? row.passwordHash : decoyHash, password);
		if (row && ok && row.active) user = sql.userFrom(row);
	} finally {
		// Also on an error: the attempt stays a failure, no longer pending.
		if (!user) await db.query(sql.settleLoginFailure(attempt));
	}
	if (!user) throw new UnauthorizedError(BAD_CREDENTIALS);
	return db.transaction(async tx => {
		// The reservation goes, and so do this client's earlier typos: it has proved the password.
		// Other clients' failures stay, and so do attempts still being checked.
		await tx.query(sql.clearLoginFailures(email, client, attempt));
		await tx.query(sql.rememberLoginClient(user.id, client));
		return openSession(tx, signingKey, user);
	});
}

/**
 * Counts, checks and records a login attempt in one transaction, serialised
 * per email and per client by advisory locks, before its password is checked:
 * the attempt is written as a pending failure, so no number of parallel
 * attempts gets past the limits. Returns the attempt's id; 429 when refused.
 */
async function reserveAttempt(db: Database, inProgress: LoginsInProgress, email: string, client: string): Promise<string> {
	const deadline = Date.now() + IN_FLIGHT_WAIT_MS;
	for (;;) {
		const outcome = await db.transaction(async tx => {
			await tx.query(sql.lockLoginAttempts(email, client));
			const [counts] = await tx.query<LoginCounts>(sql.loginCounts(email, client));
			const verdict = loginVerdict(counts);
			if (verdict.kind !== "check") return verdict;
			const [reserved] = await tx.query<{ id: string }>(sql.reserveLoginAttempt(email, client));
			return { kind: "reserved" as const, id: reserved.id };
		});
		if (outcome.kind === "reserved") return outcome.id;
		if (outcome.kind === "refuse") throw new TooManyRequestsError(THROTTLED, outcome.retryAfter);
		// Attempts in flight settle within a hash's time; past the wait, they are as good as failures.
		if (Date.now() >= deadline) throw new TooManyRequestsError(THROTTLED, 1);
		await inProgress.nextEnd(client, Math.min(ATTEMPT_RECHECK_MS, deadline - Date.now()));
	}
}

/** Attempts older than every window, and clients not seen for KNOWN_CLIENT_DAYS, count for nothing. */
export async function pruneLoginRecords(db: Queryable): Promise<void> {
	await db.query(sql.pruneLoginFailures);
	await db.query(sql.pruneKnownClients);
}
