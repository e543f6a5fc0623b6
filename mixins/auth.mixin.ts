import type { IncomingMessage } from "node:http";
import { type ActionSchema, type Context, Errors, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import { type JSONWebKeySet, type JWTVerifyGetKey, createLocalJWKSet, errors as joseErrors, jwtVerify } from "jose";
import { config } from "../lib/infra/config";
import { ForbiddenError, UnauthorizedError } from "../lib/infra/errors";
import { JWT_ALG } from "../lib/infra/auth/keys";
import { ACCESS_TOKEN_TTL_SECONDS, type AccessClaims, type Revocation, TOKEN_AUDIENCE, TOKEN_ISSUER } from "../lib/infra/auth/tokens";
import type { Role } from "../lib/domain/roles";
import type { AuthenticatedUser, RequestMeta } from "../lib/infra/http";
import { errorFields } from "../lib/infra/log-fields";
import type { MixinSchema } from "../types/mixin";

const { MoleculerRetryableError } = Errors;

export interface GatewayRequest extends IncomingMessage {
	$action?: ActionSchema;
	$params?: Record<string, unknown>;
	$ctx?: Context<unknown, RequestMeta>;
	/** The matched route, e.g. `/patients/:id`: what a log line or a message may name instead of the URL. */
	$alias?: { method: string; path: string; fullPath?: string };
}

interface AuthVars {
	keySet?: JWTVerifyGetKey;
	keySetFetchedAt: number;
	/** sessionId → when its newest token expires (epoch s): a revoked session's tokens are refused until then. */
	revokedSessions: Map<string, number>;
	/** userId → tokens issued before this (epoch s) are refused. */
	userCutoffs: Map<string, number>;
	revocationsLoaded: Promise<void> | undefined;
	revocationTimer?: NodeJS.Timeout;
	/** Tokens whose signature and claims already passed, until they expire: a signature check costs more than the rest of a read. */
	verifiedTokens: Map<string, AccessClaims>;
}

interface AuthMethods {
	verifyAccessToken(token: string): Promise<AccessClaims>;
	checkRevocation(claims: AccessClaims): Promise<AccessClaims>;
	loadKeySet(force: boolean): Promise<JWTVerifyGetKey>;
	loadRevocations(): Promise<void>;
	applyRevocations(revocations: Revocation[]): void;
}

type AuthThis = Service & AuthVars & AuthMethods;

const REVOCATION_REFRESH_MS = 60_000;
const KEYSET_REFETCH_MIN_MS = 30_000;
const VERIFIED_TOKENS_MAX = 10_000;

function bearerToken(req: IncomingMessage): string | undefined {
	const header = req.headers.authorization;
	if (!header) return undefined;
	const match = /^Bearer\s+(\S+)$/i.exec(header);
	return match?.[1];
}

/**
 * The client's address. Behind a proxy (TRUST_PROXY), the last entry of
 * X-Forwarded-For: the one our proxy appended. Entries before it are whatever
 * the client sent, so trusting the first would let a client pick its address
 * (and dodge the login throttle, or pose as a known client).
 */
export function clientIp(req: IncomingMessage): string | undefined {
	if (config.trustProxy) {
		const forwarded = req.headers["x-forwarded-for"];
		const last = (Array.isArray(forwarded) ? forwarded.join(",") : forwarded)?.split(",").at(-1)?.trim();
		if (last) return last;
	}
	return req.socket.remoteAddress ?? undefined;
}

/**
 * Authentication and role checks for the gateway, the one place they are
 * enforced. Tokens are verified locally with auth's public keys (JWKS, fetched
 * over the broker); sessions revoked and users cut off are learned from auth's
 * `auth.revoked` broadcasts, and re-read every minute in case one was missed.
 */
export function AuthMixin(): MixinSchema {
	const schema: ServiceSchema<ServiceSettingSchema, AuthMethods, AuthVars> = {
		name: "auth-mixin",

		events: {
			"auth.revoked"(this: AuthThis, ctx: Context<Revocation>) {
				this.applyRevocations([ctx.params]);
			}
		},

		methods: {
			/** moleculer-web hook: the caller as `ctx.meta.user`, or 401. Public actions need no token. */
			async authenticate(this: AuthThis, ctx: Context<unknown, RequestMeta>, _route: unknown, req: GatewayRequest) {
				ctx.meta.ip = clientIp(req);
				if (req.$action?.public) return null;
				const token = bearerToken(req);
				if (!token) throw new UnauthorizedError("A Bearer token is required");
				const claims = await this.verifyAccessToken(token);
				const user: AuthenticatedUser = {
					id: claims.sub,
					email: claims.email,
					role: claims.role as Role,
					sessionId: claims.sid,
					issuedAt: claims.iat,
					expiresAt: claims.exp
				};
				return user;
			},

			/** moleculer-web hook: the action's declared roles must include the caller's; no declaration, no access. */
			authorize(this: AuthThis, ctx: Context<unknown, RequestMeta>, _route: unknown, req: GatewayRequest) {
				const action = req.$action;
				if (!action || action.public) return;
				const role = ctx.meta.user?.role;
				if (!role || !action.roles?.includes(role)) {
					throw new ForbiddenError(`The ${role ?? "anonymous"} role may not ${req.method} ${req.$alias?.fullPath ?? "this path"}`);
				}
			},

			async verifyAccessToken(this: AuthThis, token: string): Promise<AccessClaims> {
				let claims = this.verifiedTokens.get(token);
				// An expired one goes through the full check below, which says so.
				if (claims && claims.exp * 1000 <= Date.now()) this.verifiedTokens.delete(token);
				else if (claims) return this.checkRevocation(claims);
				try {
					// Only EdDSA is accepted: `alg: none` and HMAC tricks fail here.
					const options = { algorithms: [JWT_ALG], issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE, requiredClaims: ["sub", "sid", "iat", "exp"] };
					try {
						claims = (await jwtVerify(token, await this.loadKeySet(false), options)).payload as unknown as AccessClaims;
					} catch (err) {
						// A key we have not seen: auth may have rotated; fetch the set again (rate-limited).
						if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err;
						claims = (await jwtVerify(token, await this.loadKeySet(true), options)).payload as unknown as AccessClaims;
					}
				} catch (err) {
					if (err instanceof joseErrors.JOSEError) {
						throw new UnauthorizedError(err instanceof joseErrors.JWTExpired ? "The token has expired" : "The token is invalid");
					}
					throw err;
				}
				// Oldest first out: a Map iterates in insertion order.
				if (this.verifiedTokens.size >= VERIFIED_TOKENS_MAX) this.verifiedTokens.delete(this.verifiedTokens.keys().next().value!);
				this.verifiedTokens.set(token, claims);
				return this.checkRevocation(claims);
			},

			/** Revocations change after a token is issued, so they are checked on every request, cached token or not. */
			async checkRevocation(this: AuthThis, claims: AccessClaims): Promise<AccessClaims> {
				await this.revocationsLoaded;
				if (this.revokedSessions.has(claims.sid)) throw new UnauthorizedError("The session has ended");
				const cutoff = this.userCutoffs.get(claims.sub);
				if (cutoff !== undefined && claims.iat < cutoff) throw new UnauthorizedError("The token was revoked");
				return claims;
			},

			async loadKeySet(this: AuthThis, force: boolean): Promise<JWTVerifyGetKey> {
				const stale = force && Date.now() - this.keySetFetchedAt > KEYSET_REFETCH_MIN_MS;
				if (this.keySet && !stale) return this.keySet;
				try {
					const jwks = await this.broker.call<JSONWebKeySet, Record<string, never>>("auth.jwks", {});
					this.keySet = createLocalJWKSet(jwks);
					this.keySetFetchedAt = Date.now();
					return this.keySet;
				} catch (err) {
					if (this.keySet) return this.keySet;
					this.logger.warn(errorFields(err), "Cannot fetch the token keys from the auth service");
					throw new MoleculerRetryableError("Authentication is temporarily unavailable", 503, "SERVICE_NOT_AVAILABLE");
				}
			},

			async loadRevocations(this: AuthThis): Promise<void> {
				const revocations = await this.broker.call<Revocation[], Record<string, never>>("auth.revocations", {});
				this.applyRevocations(revocations);
			},

			/** Records revocations, then prunes once: the minute's reload brings every recent one at a time. */
			applyRevocations(this: AuthThis, revocations: Revocation[]) {
				const now = Math.floor(Date.now() / 1000);
				for (const revocation of revocations) {
					if (revocation.sessionId) this.revokedSessions.set(revocation.sessionId, now + ACCESS_TOKEN_TTL_SECONDS);
					if (revocation.userId && revocation.validAfter !== undefined) {
						const known = this.userCutoffs.get(revocation.userId) ?? 0;
						this.userCutoffs.set(revocation.userId, Math.max(known, revocation.validAfter));
					}
				}
				// Tokens live 15 minutes: older entries can no longer match a valid token.
				for (const [id, until] of this.revokedSessions) if (until < now) this.revokedSessions.delete(id);
				for (const [id, after] of this.userCutoffs) if (after + ACCESS_TOKEN_TTL_SECONDS < now) this.userCutoffs.delete(id);
			}
		},

		created(this: AuthThis) {
			this.revokedSessions = new Map();
			this.userCutoffs = new Map();
			this.verifiedTokens = new Map();
			this.keySetFetchedAt = 0;
		},

		async started(this: AuthThis) {
			const refresh = () =>
				this.loadRevocations().catch(err => this.logger.warn(errorFields(err), "Cannot read revocations from the auth service; retrying"));
			// Requests wait for the first load (auth may start after the gateway), but never longer than the call timeout.
			this.revocationsLoaded = this.broker
				.waitForServices(["auth"], 30_000)
				.then(refresh)
				.catch(() => this.logger.warn("The auth service has not appeared; tokens are checked without revocations until it does"));
			this.revocationTimer = setInterval(refresh, REVOCATION_REFRESH_MS);
			this.revocationTimer.unref();
		},

		stopped(this: AuthThis) {
			clearInterval(this.revocationTimer);
		}
	};
	return schema;
}
