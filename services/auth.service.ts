import { type Static, Type } from "@sinclair/typebox";
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
import { PageOf, StringEnum, Uuid } from "../lib/domain/schemas";
import { type PeriodicJob, runPeriodically } from "../lib/infra/periodic";
import { errorFields } from "../lib/infra/log-fields";
import { type RequestMeta, created, noContent, withVersion } from "../lib/infra/http";
import { type AccessChange, changeAccess, createUser } from "./auth/accounts";
import { ensureFirstAdmin } from "./auth/first-admin";
import { type Logins, logIn, newLogins, pruneLoginRecords } from "./auth/login";
import { LOGIN_PRUNE_INTERVAL_MS } from "./auth/login-throttle";
import { PASSWORD_MAX, PASSWORD_MIN, isCommonPassword } from "./auth/passwords";
import { type User, type UserRow, UserSchema, userById, userFrom, userPage, userPageFrom } from "./auth/queries";
import { type TokenPair, TokenPairSchema, recentRevocations, revokeSession, rotateRefreshToken } from "./auth/sessions";

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

/** A new account, as sign-up answers it. */
const SignedUpSchema = Type.Object({ id: UserSchema.properties.id, email: UserSchema.properties.email, role: UserSchema.properties.role });

/** An access token's claims, as GET /auth/validate answers them. */
const TokenClaimsSchema = Type.Object({
	sub: Uuid,
	email: Type.String({ format: "email" }),
	role: StringEnum(ROLES),
	sid: Type.String({ description: "The session: what logout ends." }),
	iat: Type.Integer({ description: "Issued at, epoch seconds." }),
	exp: Type.Integer({ description: "Expires at, epoch seconds." })
});

/** The JSON Web Key Set that verifies the access tokens: Ed25519 keys. */
const KeySetSchema = Type.Object({
	keys: Type.Array(
		Type.Object({
			kty: Type.Optional(Type.String({ examples: ["OKP"] })),
			crv: Type.Optional(Type.String({ examples: ["Ed25519"] })),
			x: Type.Optional(Type.String()),
			kid: Type.Optional(Type.String()),
			alg: Type.Optional(Type.String({ examples: ["EdDSA"] })),
			use: Type.Optional(Type.String({ examples: ["sig"] }))
		})
	)
});

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
			responses: {
				201: { description: "The account, a VIEWER; Location is /auth/me.", schema: SignedUpSchema, headers: ["Location"] },
				403: "Sign-up is closed (AUTH_SIGNUP=closed).",
				409: "An account with this email already exists."
			},
			async handler(ctx: Context<{ email: string; password: string }, RequestMeta>): Promise<Static<typeof SignedUpSchema>> {
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
			responses: {
				200: { description: "A new session's tokens.", schema: TokenPairSchema },
				401: "Invalid email or password (or an inactive account).",
				429: "Too many failed logins from this client or for this email: retry after Retry-After seconds."
			},
			handler(ctx: Context<{ email: string; password: string }, RequestMeta>): Promise<TokenPair> {
				return logIn(this.logins, ctx.params.email.toLowerCase(), ctx.meta.ip, ctx.params.password);
			}
		},

		refresh: {
			rest: "POST /refresh",
			public: true,
			params: { $$strict: true, refreshToken: { type: "string", min: 1, max: 200 } },
			responses: {
				200: { description: "The session's next tokens; the refresh token sent is spent.", schema: TokenPairSchema },
				401: "The refresh token is unknown, expired or spent (a spent one ends its session)."
			},
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
			responses: { 204: { description: "The session is over: its tokens are refused from now on." } },
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
			responses: { 200: { description: "The token's claims.", schema: TokenClaimsSchema } },
			handler(ctx: Context<Record<string, never>, RequestMeta>): Static<typeof TokenClaimsSchema> {
				const user = ctx.meta.user!;
				return { sub: user.id, email: user.email, role: user.role, sid: user.sessionId, iat: user.issuedAt, exp: user.expiresAt };
			}
		},

		me: {
			rest: "GET /me",
			roles: EVERYONE,
			params: { $$strict: true },
			responses: { 200: { description: "The caller's account.", schema: UserSchema, headers: ["ETag"] }, 404: "The account is gone." },
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
			responses: {
				201: { description: "The account.", schema: UserSchema, headers: ["Location", "ETag"] },
				409: "An account with this email already exists."
			},
			async handler(ctx: Context<{ email: string; password: string; role: Role }, RequestMeta>): Promise<User> {
				const user = await createUser(this.db, ctx.params.email, ctx.params.password, ctx.params.role);
				return created(ctx, `/auth/users/${user.id}`, withVersion(ctx, user));
			}
		},

		getUser: {
			rest: "GET /users/:id",
			roles: ADMIN_ONLY,
			params: { id: idParam },
			responses: { 200: { description: "The account.", schema: UserSchema, headers: ["ETag"] } },
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
			responses: { 200: { description: "A page of staff accounts.", schema: PageOf(UserSchema) } },
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
			responses: {
				200: { description: "The account, changed; a demoted or deactivated user's tokens are refused from now on.", schema: UserSchema, headers: ["ETag"] },
				409: "The last active administrator cannot be demoted or deactivated.",
				412: "If-Match names a version the account no longer has: nothing was written."
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
			responses: { 200: { description: "The public keys that verify MedSync's access tokens (RFC 7517).", schema: KeySetSchema } },
			handler(this: AuthThis): Static<typeof KeySetSchema> {
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
