import crypto from "node:crypto";
import { isUuid } from "../lib/sql";
import { type Context, Errors, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import { SignJWT } from "jose";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { authMigrations } from "../migrations/auth";
import { config } from "../lib/config";
import { ConflictError, NotFoundError, TooManyRequestsError, UnauthorizedError } from "../lib/errors";
import { violatedUniqueConstraint } from "../lib/db-errors";
import { JWT_ALG, type SigningKey, loadSigningKey } from "../lib/auth/keys";
import type { Queryable } from "../lib/database";
import { idParam } from "../lib/validation";
import { PASSWORD_MAX, PASSWORD_MIN, hashPassword, isCommonPassword, verifyPassword } from "./auth/passwords";
import { ACCESS_TOKEN_TTL_SECONDS, type Revocation, TOKEN_AUDIENCE, TOKEN_ISSUER, newRefreshToken, sha256 } from "../lib/auth/tokens";
import { ADMIN_ONLY, EVERYONE, ROLES, type Role } from "../lib/roles";
import { developmentSecret } from "../lib/secrets";
import { type Page, type PageRequest, pagingParams } from "../lib/paging";
import { type PeriodicJob, runPeriodically } from "../lib/periodic";
import {
	ATTEMPT_RECHECK_MS,
	IN_FLIGHT_WAIT_MS,
	LOGIN_PRUNE_INTERVAL_MS,
	type LoginCounts,
	LoginsInProgress,
	loginClient,
	loginVerdict
} from "./auth/login-throttle";
import * as sql from "./auth/queries";
import type { RefreshTokenRow, User, UserRow } from "./auth/queries";
import { errorFields } from "../lib/log-fields";
import { type RequestMeta, created, noContent } from "../lib/http";

const { MoleculerClientError } = Errors;

interface TokenPair {
	token: string;
	refreshToken: string;
	expiresIn: number;
	tokenType: "Bearer";
}

interface AuthMethods {
	issueTokens(tx: Queryable, user: User, sessionId: string): Promise<TokenPair>;
	createUser(email: string, password: string, role: Role): Promise<User>;
	logIn(email: string, client: string, password: string): Promise<TokenPair>;
	reserveLoginAttempt(email: string, client: string): Promise<string>;
	settleLoginFailure(attempt: string): Promise<void>;
	pruneLoginRecords(): Promise<void>;
	revokeSession(sessionId: string, reason: string, tx?: Queryable): Promise<void>;
	ensureFirstAdmin(): Promise<void>;
}

interface AuthVars extends DbVars {
	signingKey: SigningKey;
	/** An argon2id hash of a random password: verified against when the email is unknown, so both paths take as long. */
	decoyHash: string;
	loginPruner: PeriodicJob;
	loginsInProgress: LoginsInProgress;
}

type AuthThis = Service<ServiceSettingSchema> & AuthVars & AuthMethods;

const emailParam = { type: "email", max: 254 };
const passwordParam = {
	type: "string",
	min: PASSWORD_MIN,
	max: PASSWORD_MAX,
	custom(value: unknown, errors: { type: string }[]) {
		if (typeof value === "string" && isCommonPassword(value)) errors.push({ type: "passwordCommon" });
		return value;
	},
	messages: { passwordCommon: "The '{field}' field is a commonly used password; choose another." }
};
/** Login only compares; the policy applies when a password is set. */
const loginPasswordParam = { type: "string", min: 1, max: PASSWORD_MAX };

const BAD_CREDENTIALS = "Invalid email or password";
const THROTTLED = "Too many failed logins. Try again later.";

const AuthService: ServiceSchema<ServiceSettingSchema, AuthMethods, AuthVars> = {
	name: "auth",

	mixins: [DbMixin("auth", authMigrations)],

	settings: {
		rest: "/auth"
	},

	actions: {
		signup: {
			rest: "POST /signup",
			public: true,
			params: { $$strict: true, email: emailParam, password: passwordParam },
			async handler(ctx: Context<{ email: string; password: string }, RequestMeta>): Promise<Omit<User, "active" | "createdAt">> {
				if (config.authSignup === "closed") {
					throw new MoleculerClientError("Sign-up is closed; ask an administrator for an account", 403, "SIGNUP_CLOSED");
				}
				const user = await this.createUser(ctx.params.email, ctx.params.password, "VIEWER");
				return created(ctx, "/auth/me", { id: user.id, email: user.email, role: user.role });
			}
		},

		login: {
			rest: "POST /login",
			public: true,
			params: { $$strict: true, email: emailParam, password: loginPasswordParam },
			async handler(ctx: Context<{ email: string; password: string }, RequestMeta>): Promise<TokenPair> {
				const email = ctx.params.email.toLowerCase();
				const client = loginClient(ctx.meta.ip);
				if (!this.loginsInProgress.enter(client)) throw new TooManyRequestsError(THROTTLED, 1);
				try {
					return await this.logIn(email, client, ctx.params.password);
				} finally {
					this.loginsInProgress.leave(client);
				}
			}
		},

		refresh: {
			rest: "POST /refresh",
			public: true,
			params: { $$strict: true, refreshToken: { type: "string", min: 1, max: 200 } },
			async handler(ctx: Context<{ refreshToken: string }>): Promise<TokenPair> {
				const tokenHash = sha256(ctx.params.refreshToken);
				const outcome = await this.db.transaction(async tx => {
					const [token] = await tx.query<RefreshTokenRow>(sql.refreshTokenForUpdate(tokenHash));
					if (!token || token.revokedAt || token.expired) return { error: "Invalid refresh token" };
					if (token.usedAt) {
						// A rotated-out token came back: someone holds a copy. End the whole session.
						await this.revokeSession(token.sessionId, "refresh token reuse", tx);
						return { error: "Refresh token reuse detected; the session is revoked" };
					}
					const [user] = await tx.query<UserRow>(sql.userById(token.userId));
					if (!user?.active) return { error: "Invalid refresh token" };
					await tx.query(sql.markRefreshTokenUsed(tokenHash));
					return { tokens: await this.issueTokens(tx, sql.userFrom(user), token.sessionId) };
				});
				if (!outcome.tokens) throw new UnauthorizedError(outcome.error);
				return outcome.tokens;
			}
		},

		logout: {
			rest: "POST /logout",
			roles: EVERYONE,
			params: { $$strict: true },
			async handler(ctx: Context<Record<string, never>, RequestMeta>): Promise<void> {
				await this.revokeSession(ctx.meta.user!.sessionId, "logout");
				noContent(ctx);
			}
		},

		validate: {
			rest: "GET /validate",
			roles: EVERYONE,
			params: { $$strict: true },
			handler(ctx: Context<Record<string, never>, RequestMeta>) {
				const user = ctx.meta.user!;
				return { sub: user.id, email: user.email, role: user.role, sid: user.sessionId, iat: user.issuedAt, exp: user.expiresAt };
			}
		},

		me: {
			rest: "GET /me",
			roles: EVERYONE,
			params: { $$strict: true },
			async handler(ctx: Context<Record<string, never>, RequestMeta>): Promise<User> {
				const [row] = await this.db.query<UserRow>(sql.userById(ctx.meta.user!.id));
				if (!row) throw new NotFoundError("User", ctx.meta.user!.id);
				return sql.userFrom(row);
			}
		},

		createUser: {
			rest: "POST /users",
			roles: ADMIN_ONLY,
			params: { $$strict: true, email: emailParam, password: passwordParam, role: { type: "enum", values: ROLES } },
			async handler(ctx: Context<{ email: string; password: string; role: Role }, RequestMeta>): Promise<User> {
				const user = await this.createUser(ctx.params.email, ctx.params.password, ctx.params.role);
				return created(ctx, `/auth/users/${user.id}`, user);
			}
		},

		listUsers: {
			rest: "GET /users",
			roles: ADMIN_ONLY,
			params: { $$strict: true, ...pagingParams() },
			async handler(ctx: Context<PageRequest>): Promise<Page<User>> {
				const rows = await this.db.query<UserRow & { total: number }>(sql.userPage(ctx.params));
				return sql.userPageFrom(rows, ctx.params);
			}
		},

		updateUser: {
			rest: "PATCH /users/:id",
			roles: ADMIN_ONLY,
			params: {
				$$strict: true,
				id: idParam,
				role: { type: "enum", values: ROLES, optional: true },
				active: { type: "boolean", optional: true }
			},
			async handler(ctx: Context<{ id: string; role?: Role; active?: boolean }>): Promise<User> {
				const { id, role, active } = ctx.params;
				const { user, revocation } = await this.db.transaction(async tx => {
					// Serialises admin changes, so two requests cannot together remove the last admin.
					await tx.query(sql.lockAdminChanges);
					const [row] = isUuid(id) ? await tx.query<UserRow>(sql.userById(id)) : [];
					if (!row) throw new NotFoundError("User", id);
					const before = sql.userFrom(row);
					const losesAdmin = before.role === "ADMIN" && before.active && (active === false || (role && role !== "ADMIN"));
					if (losesAdmin) {
						const [admins] = await tx.query<{ count: number }>(sql.activeAdminCount);
						if (admins.count <= 1) throw new ConflictError("The last active administrator cannot be demoted or deactivated");
					}
					const changed = (role !== undefined && role !== before.role) || (active !== undefined && active !== before.active);
					if (!changed) return { user: before, revocation: undefined };
					// Tokens minted before this second carry the old role or a deactivated user: refuse them.
					const validAfter = Math.ceil(Date.now() / 1000);
					const [after] = await tx.query<UserRow>(sql.updateUserAccess(id, role ?? before.role, active ?? before.active, new Date(validAfter * 1000)));
					return { user: sql.userFrom(after), revocation: { userId: id, validAfter } satisfies Revocation };
				});
				if (revocation) await ctx.broadcast("auth.revoked", revocation);
				return user;
			}
		},

		jwks: {
			rest: "GET /.well-known/jwks.json",
			public: true,
			params: { $$strict: true },
			handler(this: AuthThis) {
				return { keys: [this.signingKey.publicJwk] };
			}
		},

		/** What gateways must refuse now: recent session revocations and user token cut-offs. Not routed. */
		revocations: {
			visibility: "public",
			async handler(this: AuthThis): Promise<Revocation[]> {
				const sessions = await this.db.query<Revocation>(sql.revokedSessions(ACCESS_TOKEN_TTL_SECONDS));
				const users = await this.db.query<{ userId: string; validAfter: string }>(sql.cutOffUsers(ACCESS_TOKEN_TTL_SECONDS));
				return [...sessions, ...users.map(sql.cutOffFrom)];
			}
		}
	},

	methods: {
		async issueTokens(this: AuthThis, tx: Queryable, user: User, sessionId: string): Promise<TokenPair> {
			const refreshToken = newRefreshToken();
			await tx.query(sql.insertRefreshToken(sha256(refreshToken), sessionId));
			const token = await new SignJWT({ email: user.email, role: user.role, sid: sessionId })
				.setProtectedHeader({ alg: JWT_ALG, kid: this.signingKey.kid, typ: "JWT" })
				.setSubject(user.id)
				.setIssuer(TOKEN_ISSUER)
				.setAudience(TOKEN_AUDIENCE)
				.setIssuedAt()
				.setExpirationTime(`${ACCESS_TOKEN_TTL_SECONDS}s`)
				.sign(this.signingKey.privateKey);
			return { token, refreshToken, expiresIn: ACCESS_TOKEN_TTL_SECONDS, tokenType: "Bearer" };
		},

		async createUser(this: AuthThis, email: string, password: string, role: Role): Promise<User> {
			try {
				const [row] = await this.db.query<UserRow>(sql.insertUser(crypto.randomUUID(), email, await hashPassword(password), role));
				return sql.userFrom(row);
			} catch (err) {
				if (violatedUniqueConstraint(err) === "users_email_key") {
					throw new ConflictError("An account with this email already exists", { field: "email" });
				}
				throw err;
			}
		},

		/** Checks a password, within the throttle's limits; the session's tokens, or 401 (429 when throttled). */
		async logIn(this: AuthThis, email: string, client: string, password: string): Promise<TokenPair> {
			const attempt = await this.reserveLoginAttempt(email, client);
			let user: User | undefined;
			try {
				const [row] = await this.db.query<UserRow & { passwordHash: string }>(sql.userForLogin(email));
				// The decoy keeps an unknown email as slow as a wrong password.
				const ok = await verifyPassword(row ? row.passwordHash : this.decoyHash, password);
				if (row && ok && row.active) user = sql.userFrom(row);
			} finally {
				// Also on an error: the attempt stays a failure.
				if (!user) await this.settleLoginFailure(attempt);
			}
			if (!user) throw new UnauthorizedError(BAD_CREDENTIALS);
			return this.db.transaction(async tx => {
				// The reservation goes, and so do this client's earlier typos: it has proved the password.
				// Other clients' failures stay, and so do attempts still being checked.
				await tx.query(sql.clearLoginFailures(email, client, attempt));
				await tx.query(sql.rememberLoginClient(user.id, client));
				const sessionId = crypto.randomUUID();
				await tx.query(sql.insertSession(sessionId, user.id, config.sessionDays));
				return this.issueTokens(tx, user, sessionId);
			});
		},

		/**
		 * Counts, checks and records a login attempt in one transaction, serialised
		 * per email and per client by advisory locks, before its password is checked:
		 * the attempt is written as a pending failure, so no number of parallel
		 * attempts gets past the limits. Returns the attempt's id; 429 when refused.
		 */
		async reserveLoginAttempt(this: AuthThis, email: string, client: string): Promise<string> {
			const deadline = Date.now() + IN_FLIGHT_WAIT_MS;
			for (;;) {
				const outcome = await this.db.transaction(async tx => {
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
				await this.loginsInProgress.nextEnd(client, Math.min(ATTEMPT_RECHECK_MS, deadline - Date.now()));
			}
		},

		/** A reserved attempt failed: it stays a failure, no longer pending. */
		async settleLoginFailure(this: AuthThis, attempt: string): Promise<void> {
			await this.db.query(sql.settleLoginFailure(attempt));
		},

		/** Attempts older than every window, and clients not seen for KNOWN_CLIENT_DAYS, count for nothing. */
		async pruneLoginRecords(this: AuthThis): Promise<void> {
			await this.db.query(sql.pruneLoginFailures);
			await this.db.query(sql.pruneKnownClients);
		},

		async revokeSession(this: AuthThis, sessionId: string, reason: string, tx: Queryable = this.db): Promise<void> {
			await tx.query(sql.revokeSession(sessionId, reason));
			await this.broker.broadcast("auth.revoked", { sessionId } satisfies Revocation);
		},

		/** At first start (no admin yet): ADMIN_EMAIL / ADMIN_PASSWORD, or a generated password printed once and kept under the data dir. */
		async ensureFirstAdmin(this: AuthThis): Promise<void> {
			const [admin] = await this.db.query<{ found: boolean }>(sql.anyAdmin);
			if (admin.found) return;
			let password = config.adminPassword;
			if (!password) {
				const secret = developmentSecret("admin-password", () => crypto.randomBytes(18).toString("base64url"));
				password = secret.value.trim();
				if (secret.created) {
					this.logger.warn(`First admin ${config.adminEmail} created with password ${password} (also saved to ${secret.file}, mode 0600)`);
				}
			}
			try {
				await this.createUser(config.adminEmail, password, "ADMIN");
				this.logger.info(`Created the first admin account, ${config.adminEmail}`);
			} catch (err) {
				// Another auth node created it at the same moment.
				if (!(err instanceof ConflictError)) throw err;
			}
		}
	},

	created(this: AuthThis) {
		this.loginsInProgress = new LoginsInProgress();
	},

	async started(this: AuthThis) {
		this.signingKey = await loadSigningKey();
		this.decoyHash = await hashPassword(crypto.randomBytes(16).toString("hex"));
		await this.ensureFirstAdmin();
		this.loginPruner = runPeriodically(
			() => this.pruneLoginRecords(),
			LOGIN_PRUNE_INTERVAL_MS,
			err => this.logger.warn(errorFields(err), "Pruning old login attempts failed"),
			{ now: true }
		);
	},

	async stopped(this: AuthThis) {
		await this.loginPruner?.stop();
	}
};

export default AuthService;
