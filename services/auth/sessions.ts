import crypto from "node:crypto";
import { type Static, Type } from "@sinclair/typebox";
import { SignJWT } from "jose";
import { config } from "../../lib/infra/config";
import type { Database, Queryable } from "../../lib/infra/database";
import { JWT_ALG, type SigningKey } from "../../lib/infra/auth/keys";
import { ACCESS_TOKEN_TTL_SECONDS, type Revocation, TOKEN_AUDIENCE, TOKEN_ISSUER, newRefreshToken, sha256 } from "../../lib/infra/auth/tokens";
import * as sql from "./queries";
import type { RefreshTokenRow, User, UserRow } from "./queries";

/**
 * Sessions and their tokens: a session is one login, a chain of refresh tokens
 * each traded once for the next, with short-lived access tokens along it.
 */

export const TokenPairSchema = Type.Object(
	{
		token: Type.String({ description: "The access token (a JWT): send it as `Authorization: Bearer <token>`." }),
		refreshToken: Type.String({ description: "Traded once, at POST /auth/refresh, for the next pair." }),
		expiresIn: Type.Integer({ description: "Seconds the access token is valid." }),
		tokenType: Type.Literal("Bearer")
	},
	{ $id: "TokenPair" }
);

export type TokenPair = Static<typeof TokenPairSchema>;

/** A new refresh token of the session (only its hash is stored), and an access token for `user`. */
async function issueTokens(tx: Queryable, key: SigningKey, user: User, sessionId: string): Promise<TokenPair> {
	const refreshToken = newRefreshToken();
	await tx.query(sql.insertRefreshToken(sha256(refreshToken), sessionId));
	const token = await new SignJWT({ email: user.email, role: user.role, sid: sessionId })
		.setProtectedHeader({ alg: JWT_ALG, kid: key.kid, typ: "JWT" })
		.setSubject(user.id)
		.setIssuer(TOKEN_ISSUER)
		.setAudience(TOKEN_AUDIENCE)
		.setIssuedAt()
		.setExpirationTime(`${ACCESS_TOKEN_TTL_SECONDS}s`)
		.sign(key.privateKey);
	return { token, refreshToken, expiresIn: ACCESS_TOKEN_TTL_SECONDS, tokenType: "Bearer" };
}

/** A session for a user who proved their password, lasting AUTH_SESSION_DAYS, and its first tokens. */
export async function openSession(tx: Queryable, key: SigningKey, user: User): Promise<TokenPair> {
	const sessionId = crypto.randomUUID();
	await tx.query(sql.insertSession(sessionId, user.id, config.sessionDays));
	return issueTokens(tx, key, user, sessionId);
}

/** New tokens; or why not (a 401), with the session revoked when a used token came back. */
export type Rotation = { tokens: TokenPair } | { refused: string; revokedSession?: string };

/** Trades a refresh token for the session's next tokens, once: the token and its session stay locked until it is done. */
export function rotateRefreshToken(db: Database, key: SigningKey, refreshToken: string): Promise<Rotation> {
	const tokenHash = sha256(refreshToken);
	return db.transaction(async tx => {
		const [token] = await tx.query<RefreshTokenRow>(sql.refreshTokenForUpdate(tokenHash));
		if (!token || token.revokedAt || token.expired) return { refused: "Invalid refresh token" };
		if (token.usedAt) {
			// A rotated-out token came back: someone holds a copy. End the whole session.
			await tx.query(sql.revokeSession(token.sessionId, "refresh token reuse"));
			return { refused: "Refresh token reuse detected; the session is revoked", revokedSession: token.sessionId };
		}
		const [user] = await tx.query<UserRow>(sql.userById(token.userId));
		if (!user?.active) return { refused: "Invalid refresh token" };
		await tx.query(sql.markRefreshTokenUsed(tokenHash));
		return { tokens: await issueTokens(tx, key, sql.userFrom(user), token.sessionId) };
	});
}

/** Ends a session: its refresh tokens stop working here, its access tokens at the gateways once they hear of it. */
export async function revokeSession(db: Queryable, sessionId: string, reason: string): Promise<void> {
	await db.query(sql.revokeSession(sessionId, reason));
}

/** What gateways must refuse now: sessions revoked, and users' token cut-offs, within an access token's lifetime. */
export async function recentRevocations(db: Queryable): Promise<Revocation[]> {
	const sessions = await db.query<Revocation>(sql.revokedSessions(ACCESS_TOKEN_TTL_SECONDS));
	const users = await db.query<{ userId: string; validAfter: string }>(sql.cutOffUsers(ACCESS_TOKEN_TTL_SECONDS));
	return [...sessions, ...users.map(sql.cutOffFrom)];
}
