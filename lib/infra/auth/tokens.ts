import crypto from "node:crypto";

/** Access tokens live 15 minutes; revocations are remembered at least that long. */
export const ACCESS_TOKEN_TTL_SECONDS = 15 * 60;
export const TOKEN_ISSUER = "medsync-auth";
export const TOKEN_AUDIENCE = "medsync-api";

/** Claims of a MedSync access token. */
export interface AccessClaims {
	sub: string;
	email: string;
	role: string;
	sid: string;
	iat: number;
	exp: number;
}

/** A revocation, broadcast by auth as `auth.revoked` and listed by `auth.revocations`. */
export interface Revocation {
	/** Tokens of this session are refused until they expire. */
	sessionId?: string;
	/** Tokens of this user issued before `validAfter` (epoch seconds) are refused. */
	userId?: string;
	validAfter?: number;
}

export function newRefreshToken(): string {
	return crypto.randomBytes(32).toString("base64url");
}

export function sha256(text: string): string {
	return crypto.createHash("sha256").update(text).digest("hex");
}
