import { type Context, Errors, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { authMigrations } from "../migrations/auth";
import { config } from "../lib/infra/config";
import { NotFoundError, UnauthorizedError } from "../lib/infra/errors";
import { type SigningKey, loadSigningKey } from "../lib/infra/auth/keys";
import type { Revocation } from "../lib/infra/auth/tokens";
import { idParam } from "../lib/domain/validation";
import { isUuid } from "../lib/infra/sql";
import { ADMIN_ONLY, EVERYONE, ROLES, type Role } from "../lib/domain/roles";
import { type Page, type PageRequest, pagingParams } from "../lib/domain/paging";
import { type PeriodicJob, runPeriodically } from "../lib/infra/periodic";
import { errorFields } from "../lib/infra/log-fields";
import { type RequestMeta, created, noContent, withVersion } from "../lib/infra/http";
import { type AccessChange, changeAccess, createUser } from "./auth/accounts";
import { ensureFirstAdmin } from "./auth/first-admin";
import { type Logins, logIn, newLogins, pruneLoginRecords } from "./auth/login";
import { LOGIN_PRUNE_INTERVAL_MS } from "./auth/login-throttle";
import { PASSWORD_MAX, PASSWORD_MIN, isCommonPassword } from "./auth/passwords";
import { type User, type UserRow, userById, userFrom, userPage, userPageFrom } from "./auth/queries";
import { type TokenPair, recentRevocations, revokeSession, rotateRefreshToken } from "./auth/sessions";

const { MoleculerClientError } = Errors;

interface AuthMethods {
	pruneLoginRecords(): Promise<void>;
}

interface AuthVars extends DbVars {
	signingKey: SigningKey;
	logins: Logins;
	loginPruner: PeriodicJob;
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
			async handler(ctx: Context<{ email: string; password: string }, RequestMeta>): Promise<Pick<User, "id" | "email" | "role">> {
				if (config.authSignup === "closed") {
					throw new MoleculerClientError("Sign-up is closed; ask an administrator for an account", 403, "SIGNUP_CLOSED");
				}
				const user = await createUser(this.db, ctx.params.email, ctx.params.password, "VIEWER");
				return created(ctx, "/auth/me", { id: user.id, email: user.email, role: user.role });
			}
		},

		login: {
			rest: "POST /login",
			public: true,
			params: { $$strict: true, email: emailParam, password: loginPasswordParam },
			handler(ctx: Context<{ email: string; password: string }, RequestMeta>): Promise<TokenPair> {
				return logIn(this.logins, ctx.params.email.toLowerCase(), ctx.meta.ip, ctx.params.password);
			}
		},

		refresh: {
			rest: "POST /refresh",
			public: true,
			params: { $$strict: true, refreshToken: { type: "string", min: 1, max: 200 } },
			async handler(ctx: Context<{ refreshToken: string }>): Promise<TokenPair> {
				const rotation = await rotateRefreshToken(this.db, this.signingKey, ctx.params.refreshToken);
				if ("tokens" in rotation) return rotation.tokens;
				if (rotation.revokedSession) await this.broker.broadcast("auth.revoked", { sessionId: rotation.revokedSession } satisfies Revocation);
				throw new UnauthorizedError(rotation.refused);
			}
		},

		logout: {
			rest: "POST /logout",
			roles: EVERYONE,
			params: { $$strict: true },
			async handler(ctx: Context<Record<string, never>, RequestMeta>): Promise<void> {
				const { sessionId } = ctx.meta.user!;
				await revokeSession(this.db, sessionId, "logout");
				await this.broker.broadcast("auth.revoked", { sessionId } satisfies Revocation);
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
				const [row] = await this.db.query<UserRow>(userById(ctx.meta.user!.id));
				if (!row) throw new NotFoundError("User", ctx.meta.user!.id);
				return withVersion(ctx, userFrom(row));
			}
		},

		createUser: {
			rest: "POST /users",
			roles: ADMIN_ONLY,
			params: { $$strict: true, email: emailParam, password: passwordParam, role: { type: "enum", values: ROLES } },
			async handler(ctx: Context<{ email: string; password: string; role: Role }, RequestMeta>): Promise<User> {
				const user = await createUser(this.db, ctx.params.email, ctx.params.password, ctx.params.role);
				return created(ctx, `/auth/users/${user.id}`, withVersion(ctx, user));
			}
		},

		getUser: {
			rest: "GET /users/:id",
			roles: ADMIN_ONLY,
			params: { id: idParam },
			async handler(ctx: Context<{ id: string }, RequestMeta>): Promise<User> {
				const [row] = isUuid(ctx.params.id) ? await this.db.query<UserRow>(userById(ctx.params.id)) : [];
				if (!row) throw new NotFoundError("User", ctx.params.id);
				return withVersion(ctx, userFrom(row));
			}
		},

		listUsers: {
			rest: "GET /users",
			roles: ADMIN_ONLY,
			params: { $$strict: true, ...pagingParams() },
			async handler(ctx: Context<PageRequest>): Promise<Page<User>> {
				const rows = await this.db.query<UserRow & { total: number }>(userPage(ctx.params));
				return userPageFrom(rows, ctx.params);
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
			async handler(ctx: Context<{ id: string } & AccessChange, RequestMeta>): Promise<User> {
				const { id, ...change } = ctx.params;
				const { user, revocation } = await changeAccess(this.db, id, change, ctx.meta);
				if (revocation) await ctx.broadcast("auth.revoked", revocation);
				return withVersion(ctx, user);
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
			handler(this: AuthThis): Promise<Revocation[]> {
				return recentRevocations(this.db);
			}
		}
	},

	methods: {
		/** Run every LOGIN_PRUNE_INTERVAL_MS; a method so that a test can run it at once. */
		pruneLoginRecords(this: AuthThis): Promise<void> {
			return pruneLoginRecords(this.db);
		}
	},

	async started(this: AuthThis) {
		this.signingKey = await loadSigningKey();
		this.logins = await newLogins(this.db, this.signingKey);
		await ensureFirstAdmin(this.db, this.logger);
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
