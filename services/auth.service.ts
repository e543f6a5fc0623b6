import crypto from "node:crypto";
import { isUuid } from "../lib/sql";
import { type Context, Errors, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import { SignJWT } from "jose";
import { DataTypes, type Model, QueryTypes, type Transaction, col, fn, where } from "sequelize";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { authMigrations } from "../migrations/auth";
import { config } from "../lib/config";
import { ConflictError, NotFoundError, TooManyRequestsError, UnauthorizedError } from "../lib/errors";
import { violatedUniqueConstraint } from "../lib/db-errors";
import { JWT_ALG, type SigningKey, loadSigningKey } from "../lib/auth/keys";
import { idParam } from "../lib/validation";
import { PASSWORD_MAX, PASSWORD_MIN, hashPassword, isCommonPassword, verifyPassword } from "./auth/passwords";
import { ACCESS_TOKEN_TTL_SECONDS, type Revocation, TOKEN_AUDIENCE, TOKEN_ISSUER, newRefreshToken, sha256 } from "../lib/auth/tokens";
import { ADMIN_ONLY, EVERYONE, ROLES, type Role } from "../lib/roles";
import { developmentSecret } from "../lib/secrets";
import { type Page, type PageRequest, limitOffset, pagingParams, toPage } from "../lib/paging";
import { type PeriodicJob, runPeriodically } from "../lib/periodic";
import {
	ATTEMPT_RECHECK_MS,
	EMAIL_WINDOW_SECONDS,
	IN_FLIGHT_WAIT_MS,
	IP_WINDOW_SECONDS,
	KNOWN_CLIENT_DAYS,
	LOGIN_PRUNE_INTERVAL_MS,
	LOGIN_RECORDS_KEPT_SECONDS,
	type LoginCounts,
	LoginsInProgress,
	PAIR_WINDOW_SECONDS,
	PENDING_STALE_SECONDS,
	loginClient,
	loginVerdict
} from "./auth/login-throttle";
import { errorFields } from "../lib/log-fields";
import { type RequestMeta, created, noContent } from "../lib/http";

const { MoleculerClientError } = Errors;

export interface User {
	id: string;
	email: string;
	role: Role;
	active: boolean;
	createdAt: string;
}

interface TokenPair {
	token: string;
	refreshToken: string;
	expiresIn: number;
	tokenType: "Bearer";
}

interface AuthMethods {
	toUser(row: Model): User;
	issueTokens(user: User, sessionId: string, transaction: Transaction): Promise<TokenPair>;
	createUser(email: string, password: string, role: Role): Promise<User>;
	logIn(email: string, client: string, password: string): Promise<TokenPair>;
	reserveLoginAttempt(email: string, client: string): Promise<string>;
	settleLoginFailure(attempt: string): Promise<void>;
	pruneLoginRecords(): Promise<void>;
	revokeSession(sessionId: string, reason: string, transaction?: Transaction): Promise<void>;
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

	mixins: [
		DbMixin(
			"auth",
			authMigrations,
			{
				name: "user",
				define: {
					id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
					email: { type: DataTypes.STRING(254), allowNull: false },
					passwordHash: { type: DataTypes.TEXT, allowNull: false },
					role: { type: DataTypes.STRING(16), allowNull: false },
					active: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: true },
					tokensValidAfter: { type: DataTypes.DATE }
				},
				options: { tableName: "users", underscored: true, timestamps: true }
			}
		)
	],

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
				const outcome = await this.adapter.db.transaction(async transaction => {
					const [token] = await this.adapter.db.query<{
						session_id: string;
						used_at: Date | null;
						revoked_at: Date | null;
						expired: boolean;
						user_id: string;
					}>(
						`SELECT t.session_id, t.used_at, s.revoked_at, s.expires_at < now() AS expired, s.user_id
						 FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
						 WHERE t.token_hash = $1 FOR UPDATE OF t, s`,
						{ bind: [tokenHash], type: QueryTypes.SELECT, transaction }
					);
					if (!token || token.revoked_at || token.expired) return { error: "Invalid refresh token" };
					if (token.used_at) {
						// A rotated-out token came back: someone holds a copy. End the whole session.
						await this.revokeSession(token.session_id, "refresh token reuse", transaction);
						return { error: "Refresh token reuse detected; the session is revoked" };
					}
					const row = await this.adapter.model.findByPk(token.user_id, { transaction });
					if (!row || !row.get("active")) return { error: "Invalid refresh token" };
					await this.adapter.db.query("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", {
						bind: [tokenHash],
						transaction
					});
					return { tokens: await this.issueTokens(this.toUser(row), token.session_id, transaction) };
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
				const row = await this.adapter.model.findByPk(ctx.meta.user!.id);
				if (!row) throw new NotFoundError("User", ctx.meta.user!.id);
				return this.toUser(row);
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
				const { rows, count } = await this.adapter.model.findAndCountAll({
					order: [["createdAt", "ASC"], ["id", "ASC"]],
					...limitOffset(ctx.params)
				});
				return toPage(rows.map(row => this.toUser(row)), count, ctx.params);
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
				const { user, revocation } = await this.adapter.db.transaction(async transaction => {
					// Serialises admin changes, so two requests cannot together remove the last admin.
					await this.adapter.db.query("SELECT pg_advisory_xact_lock(hashtext('auth.admins'))", { transaction });
					const row = isUuid(id) ? await this.adapter.model.findByPk(id, { transaction }) : null;
					if (!row) throw new NotFoundError("User", id);
					const before = this.toUser(row);
					const losesAdmin = before.role === "ADMIN" && before.active && (active === false || (role && role !== "ADMIN"));
					if (losesAdmin) {
						const admins = await this.adapter.model.count({ where: { role: "ADMIN", active: true }, transaction });
						if (admins <= 1) throw new ConflictError("The last active administrator cannot be demoted or deactivated");
					}
					const changed = (role !== undefined && role !== before.role) || (active !== undefined && active !== before.active);
					if (!changed) return { user: before, revocation: undefined };
					// Tokens minted before this second carry the old role or a deactivated user: refuse them.
					const validAfter = Math.ceil(Date.now() / 1000);
					await row.update({ role: role ?? before.role, active: active ?? before.active, tokensValidAfter: new Date(validAfter * 1000) }, { transaction });
					return { user: this.toUser(row), revocation: { userId: id, validAfter } satisfies Revocation };
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
				const since = `now() - make_interval(secs => ${ACCESS_TOKEN_TTL_SECONDS})`;
				const sessions = await this.adapter.db.query<{ id: string }>(`SELECT id FROM sessions WHERE revoked_at > ${since}`, {
					type: QueryTypes.SELECT
				});
				const users = await this.adapter.db.query<{ id: string; valid_after: number }>(
					`SELECT id, floor(extract(epoch FROM tokens_valid_after))::bigint AS valid_after FROM users WHERE tokens_valid_after > ${since}`,
					{ type: QueryTypes.SELECT }
				);
				return [
					...sessions.map(s => ({ sessionId: s.id })),
					...users.map(u => ({ userId: u.id, validAfter: Number(u.valid_after) }))
				];
			}
		}
	},

	methods: {
		toUser(row: Model): User {
			const u = row.get({ plain: true }) as User & { createdAt: Date };
			return { id: u.id, email: u.email, role: u.role, active: u.active, createdAt: new Date(u.createdAt).toISOString() };
		},

		async issueTokens(this: AuthThis, user: User, sessionId: string, transaction: Transaction): Promise<TokenPair> {
			const refreshToken = newRefreshToken();
			await this.adapter.db.query("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)", {
				bind: [sha256(refreshToken), sessionId],
				transaction
			});
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
				const row = await this.adapter.model.create({ email, passwordHash: await hashPassword(password), role });
				return this.toUser(row);
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
				const row = await this.adapter.model.findOne({ where: where(fn("lower", col("email")), email) });
				// The decoy keeps an unknown email as slow as a wrong password.
				const ok = await verifyPassword(row ? (row.get("passwordHash") as string) : this.decoyHash, password);
				if (row && ok && row.get("active")) user = this.toUser(row);
			} finally {
				// Also on an error: the attempt stays a failure.
				if (!user) await this.settleLoginFailure(attempt);
			}
			if (!user) throw new UnauthorizedError(BAD_CREDENTIALS);
			return this.adapter.db.transaction(async transaction => {
				// The reservation goes, and so do this client's earlier typos: it has proved the password.
				// Other clients' failures stay, and so do attempts still being checked.
				await this.adapter.db.query("DELETE FROM login_failures WHERE email = $1 AND ip = $2 AND (id = $3 OR NOT pending)", {
					bind: [email, client, attempt],
					transaction
				});
				await this.adapter.db.query(
					`INSERT INTO known_login_clients (user_id, ip) VALUES ($1, $2)
					 ON CONFLICT (user_id, ip) DO UPDATE SET last_login_at = now()`,
					{ bind: [user.id, client], transaction }
				);
				const sessionId = crypto.randomUUID();
				await this.adapter.db.query(
					`INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, now() + make_interval(days => $3))`,
					{ bind: [sessionId, user.id, config.sessionDays], transaction }
				);
				return this.issueTokens(user, sessionId, transaction);
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
				const outcome = await this.adapter.db.transaction(async transaction => {
					// Every attempt takes the email's lock, then the client's: one order, so no deadlock.
					await this.adapter.db.query(
						`SELECT pg_advisory_xact_lock(hashtext('auth.login.email'), hashtext($1)),
						        pg_advisory_xact_lock(hashtext('auth.login.ip'), hashtext($2))`,
						{ bind: [email, client], transaction }
					);
					// Times are the statement's, not the transaction's (now()), which began before the lock was granted:
					// attempts are then stamped in the order they were let through.
					const [counts] = await this.adapter.db.query<LoginCounts>(
						`SELECT count(*) FILTER (WHERE pair)::int AS "pairAttempts",
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
						{
							bind: [email, client, PAIR_WINDOW_SECONDS, IP_WINDOW_SECONDS, EMAIL_WINDOW_SECONDS, PENDING_STALE_SECONDS, KNOWN_CLIENT_DAYS],
							type: QueryTypes.SELECT,
							transaction
						}
					);
					const verdict = loginVerdict(counts);
					if (verdict.kind !== "check") return verdict;
					const [reserved] = await this.adapter.db.query<{ id: string }>(
						"INSERT INTO login_failures (email, ip, pending, at) VALUES ($1, $2, true, statement_timestamp()) RETURNING id",
						{ bind: [email, client], type: QueryTypes.SELECT, transaction }
					);
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
			await this.adapter.db.query("UPDATE login_failures SET pending = false WHERE id = $1", { bind: [attempt] });
		},

		/** Attempts older than every window, and clients not seen for KNOWN_CLIENT_DAYS, count for nothing. */
		async pruneLoginRecords(this: AuthThis): Promise<void> {
			await this.adapter.db.query("DELETE FROM login_failures WHERE at < now() - make_interval(secs => $1)", {
				bind: [LOGIN_RECORDS_KEPT_SECONDS]
			});
			await this.adapter.db.query("DELETE FROM known_login_clients WHERE last_login_at < now() - make_interval(days => $1)", {
				bind: [KNOWN_CLIENT_DAYS]
			});
		},

		async revokeSession(this: AuthThis, sessionId: string, reason: string, transaction?: Transaction): Promise<void> {
			await this.adapter.db.query("UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL", {
				bind: [sessionId, reason],
				transaction
			});
			await this.broker.broadcast("auth.revoked", { sessionId } satisfies Revocation);
		},

		/** At first start (no admin yet): ADMIN_EMAIL / ADMIN_PASSWORD, or a generated password printed once and kept under the data dir. */
		async ensureFirstAdmin(this: AuthThis): Promise<void> {
			if (await this.adapter.model.count({ where: { role: "ADMIN" } })) return;
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
