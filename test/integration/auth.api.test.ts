import crypto from "node:crypto";
import { Client } from "pg";
import type { ServiceSchema } from "moleculer";
import { SignJWT, decodeJwt } from "jose";
import PatientsService from "../../services/patients.service";
import BillingService from "../../services/billing.service";
import AnalyticsService from "../../services/analytics.service";
import { config } from "../../lib/infra/config";
import { loadSigningKey } from "../../lib/infra/auth/keys";
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from "../../lib/infra/auth/tokens";
import { databaseName, withDatabase } from "../../lib/infra/postgres";
import { type JsonResponse, type TestCluster, type TestUser, adminLogin, bearer, createUser, request, startCluster } from "../helpers/cluster";
import { patientBody, staffEmail, staffPassword } from "../helpers/fixtures";
import { eventually } from "../helpers/node-process";

let cluster: TestCluster;
let adminToken: string;
let users: Record<"ADMIN" | "RECEPTIONIST" | "DOCTOR" | "VIEWER", TestUser>;

const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
	request(cluster.baseUrl, method, path, body, headers);

/** A fresh client address for each use (the last entry: what our proxy appended), so login throttling by IP never spills between tests. */
const fromIp = () => ({ "x-forwarded-for": `10.0.0.1, 198.51.100.${crypto.randomInt(1, 254)}` });

beforeAll(async () => {
	cluster = await startCluster([PatientsService as ServiceSchema, BillingService as ServiceSchema, AnalyticsService as ServiceSchema]);
	adminToken = await adminLogin(cluster.baseUrl);
	const admin = await createUser(cluster.baseUrl, adminToken, "ADMIN");
	users = {
		ADMIN: admin,
		RECEPTIONIST: await createUser(cluster.baseUrl, adminToken, "RECEPTIONIST"),
		DOCTOR: await createUser(cluster.baseUrl, adminToken, "DOCTOR"),
		VIEWER: await createUser(cluster.baseUrl, adminToken, "VIEWER")
	};
});

afterAll(async () => {
	await cluster?.stop();
});

describe("signup, login, validate and me", () => {
	test("end to end", async () => {
		const email = staffEmail("Signup");
		const password = staffPassword();
		const signup = await call("POST", "/auth/signup", { email, password });
		expect(signup.status).toBe(201);
		expect(signup.body).toEqual({ id: expect.any(String), email, role: "VIEWER" });

		const login = await call("POST", "/auth/login", { email: email.toUpperCase(), password }, fromIp());
		expect(login.status).toBe(200);
		expect(login.body).toEqual({ token: expect.any(String), refreshToken: expect.any(String), expiresIn: 900, tokenType: "Bearer" });
		const claims = decodeJwt(login.body.token);
		expect(claims).toMatchObject({ sub: signup.body.id, email, role: "VIEWER" });
		expect(claims.exp! - claims.iat!).toBe(15 * 60);

		const validate = await call("GET", "/auth/validate", undefined, bearer(login.body.token));
		expect(validate.status).toBe(200);
		expect(validate.body).toMatchObject({ sub: signup.body.id, email, role: "VIEWER", iat: claims.iat, exp: claims.exp });

		const me = await call("GET", "/auth/me", undefined, bearer(login.body.token));
		expect(me.body).toEqual({ id: signup.body.id, email, role: "VIEWER", active: true, createdAt: expect.any(String), version: 1 });
		expect(me.headers.get("etag")).toBe('W/"1"');
	});

	test("validate is 401 without a valid token", async () => {
		expect((await call("GET", "/auth/validate")).status).toBe(401);
		expect((await call("GET", "/auth/validate", undefined, { authorization: "Bearer nonsense" })).status).toBe(401);
		expect((await call("GET", "/auth/validate", undefined, { authorization: "Basic YWRtaW46YWRtaW4=" })).status).toBe(401);
	});

	test("a taken email, in any case, is 409", async () => {
		const email = staffEmail("taken");
		expect((await call("POST", "/auth/signup", { email, password: staffPassword() })).status).toBe(201);
		const again = await call("POST", "/auth/signup", { email: email.toUpperCase(), password: staffPassword() });
		expect(again.status).toBe(409);
	});

	test("the password policy: 8 to 128 characters, not a common password; the password is never echoed", async () => {
		const short = await call("POST", "/auth/signup", { email: staffEmail("p"), password: "Ab1!xyz" });
		expect(short.status).toBe(422);
		expect(short.body.data[0].field).toBe("password");
		const long = await call("POST", "/auth/signup", { email: staffEmail("p"), password: "x".repeat(129) });
		expect(long.status).toBe(422);
		const common = await call("POST", "/auth/signup", { email: staffEmail("p"), password: "Password123" });
		expect(common.status).toBe(422);
		expect(common.body.message).toMatch(/password.*common/i);
		expect(JSON.stringify(common.body)).not.toContain("Password123");
	});

	test("signup answers 403 when AUTH_SIGNUP=closed", async () => {
		config.authSignup = "closed";
		try {
			const res = await call("POST", "/auth/signup", { email: staffEmail("closed"), password: staffPassword() });
			expect(res.status).toBe(403);
		} finally {
			config.authSignup = "open";
		}
	});

	test("bad credentials are 401 with one message, whether or not the email exists", async () => {
		const wrong = await call("POST", "/auth/login", { email: users.VIEWER.email, password: "not-the-password" }, fromIp());
		const unknown = await call("POST", "/auth/login", { email: staffEmail("nobody"), password: "not-the-password" }, fromIp());
		expect(wrong.status).toBe(401);
		expect(unknown.status).toBe(401);
		expect(unknown.body).toEqual(wrong.body);
		expect(JSON.stringify(wrong.body)).not.toContain("not-the-password");
	});

	test("an unknown email costs a password hash too, so timing does not reveal accounts", async () => {
		const median = async (email: string) => {
			const times: number[] = [];
			for (let i = 0; i < 5; i++) {
				const start = performance.now();
				await call("POST", "/auth/login", { email, password: "not-the-password" }, fromIp());
				times.push(performance.now() - start);
			}
			return times.sort((a, b) => a - b)[2];
		};
		const known = await median((await createUser(cluster.baseUrl, adminToken, "VIEWER")).email);
		const unknown = await median(staffEmail("ghost"));
		// Without the decoy hash an unknown email answers in a few ms against tens for argon2id.
		expect(unknown).toBeGreaterThan(known * 0.5);
	});
});

describe("tokens", () => {
	async function signWith(key: Parameters<SignJWT["sign"]>[0], claims: Record<string, unknown>, header: Record<string, unknown>) {
		return new SignJWT(claims)
			.setProtectedHeader({ alg: "EdDSA", ...header })
			.setIssuer(TOKEN_ISSUER)
			.setAudience(TOKEN_AUDIENCE)
			.sign(key);
	}

	test("an expired token is 401", async () => {
		const key = await loadSigningKey();
		const now = Math.floor(Date.now() / 1000);
		const claims = decodeJwt(adminToken);
		const token = await signWith(key.privateKey, { ...claims, iat: now - 3600, exp: now - 1800 }, { kid: key.kid });
		const res = await call("GET", "/patients", undefined, bearer(token));
		expect(res.status).toBe(401);
		expect(res.body.message).toMatch(/expired/);
	});

	test("a token accepted before is refused once it expires (the gateway remembers verified tokens only until then)", async () => {
		const key = await loadSigningKey();
		const now = Math.floor(Date.now() / 1000);
		const token = await signWith(key.privateKey, { ...decodeJwt(adminToken), iat: now, exp: now + 2 }, { kid: key.kid });
		expect((await call("GET", "/patients", undefined, bearer(token))).status).toBe(200);
		await new Promise(r => setTimeout(r, (now + 2) * 1000 - Date.now() + 100));
		const res = await call("GET", "/patients", undefined, bearer(token));
		expect(res.status).toBe(401);
		expect(res.body.message).toMatch(/expired/);
	});

	test("a token with a forged signature is 401", async () => {
		const key = await loadSigningKey();
		const { privateKey: otherKey } = crypto.generateKeyPairSync("ed25519");
		const claims = decodeJwt(adminToken);
		const forged = await signWith(otherKey, { ...claims }, { kid: key.kid });
		expect((await call("GET", "/patients", undefined, bearer(forged))).status).toBe(401);
		// The admin's real payload under a tampered role claim: the signature no longer matches.
		const [header, , signature] = adminToken.split(".");
		const payload = Buffer.from(JSON.stringify({ ...decodeJwt(users.VIEWER.token), role: "ADMIN" })).toString("base64url");
		expect((await call("GET", "/patients", undefined, bearer(`${header}.${payload}.${signature}`))).status).toBe(401);
	});

	test("alg: none and HS256-with-the-public-key are 401", async () => {
		const claims = decodeJwt(adminToken);
		const none = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.`;
		expect((await call("GET", "/patients", undefined, bearer(none))).status).toBe(401);

		const jwks = (await call("GET", "/auth/.well-known/jwks.json")).body;
		const hs256 = await new SignJWT(claims)
			.setProtectedHeader({ alg: "HS256", kid: jwks.keys[0].kid })
			.sign(new TextEncoder().encode(JSON.stringify(jwks.keys[0])));
		expect((await call("GET", "/patients", undefined, bearer(hs256))).status).toBe(401);
	});

	test("the JWKS publishes the public key only", async () => {
		const res = await call("GET", "/auth/.well-known/jwks.json");
		expect(res.status).toBe(200);
		expect(res.body.keys).toHaveLength(1);
		expect(res.body.keys[0]).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA", use: "sig", kid: expect.any(String) });
		expect(res.body.keys[0].d).toBeUndefined();
	});

	test("a deactivated user's tokens stop working at once, and they cannot log in", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "RECEPTIONIST");
		expect((await call("GET", "/patients", undefined, bearer(user.token))).status).toBe(200);
		const off = await call("PATCH", `/auth/users/${user.id}`, { active: false }, bearer(adminToken));
		expect(off.status).toBe(200);
		expect(off.body.active).toBe(false);
		expect((await call("GET", "/patients", undefined, bearer(user.token))).status).toBe(401);
		expect((await call("POST", "/auth/login", { email: user.email, password: user.password }, fromIp())).status).toBe(401);
	});

	test("a role change retires the tokens that carry the old role", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "RECEPTIONIST");
		await call("PATCH", `/auth/users/${user.id}`, { role: "VIEWER" }, bearer(adminToken));
		expect((await call("GET", "/patients", undefined, bearer(user.token))).status).toBe(401);
		await new Promise(r => setTimeout(r, 1100)); // tokens minted in the second of the change are refused too
		const fresh = await call("POST", "/auth/login", { email: user.email, password: user.password }, fromIp());
		expect(decodeJwt(fresh.body.token).role).toBe("VIEWER");
		expect((await call("GET", "/patients", undefined, bearer(fresh.body.token))).status).toBe(403);
	});

	test("logout revokes the session: its access and refresh tokens stop working", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "DOCTOR");
		const session = await call("POST", "/auth/login", { email: user.email, password: user.password }, fromIp());
		const out = await call("POST", "/auth/logout", undefined, bearer(session.body.token));
		expect(out.status).toBe(204);
		expect((await call("GET", "/auth/me", undefined, bearer(session.body.token))).status).toBe(401);
		expect((await call("POST", "/auth/refresh", { refreshToken: session.body.refreshToken })).status).toBe(401);
		// Other sessions of the same user are untouched.
		expect((await call("GET", "/auth/me", undefined, bearer(user.token))).status).toBe(200);
	});
});

describe("refresh tokens", () => {
	test("rotate on every use", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "DOCTOR");
		const first = await call("POST", "/auth/login", { email: user.email, password: user.password }, fromIp());
		const second = await call("POST", "/auth/refresh", { refreshToken: first.body.refreshToken });
		expect(second.status).toBe(200);
		expect(second.body.refreshToken).not.toBe(first.body.refreshToken);
		expect(decodeJwt(second.body.token)).toMatchObject({ sub: user.id, role: "DOCTOR", sid: decodeJwt(first.body.token).sid });
		const third = await call("POST", "/auth/refresh", { refreshToken: second.body.refreshToken });
		expect(third.status).toBe(200);
	});

	test("reusing a rotated-out token revokes the whole session", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "DOCTOR");
		const login = await call("POST", "/auth/login", { email: user.email, password: user.password }, fromIp());
		const rotated = await call("POST", "/auth/refresh", { refreshToken: login.body.refreshToken });
		expect(rotated.status).toBe(200);

		const replay = await call("POST", "/auth/refresh", { refreshToken: login.body.refreshToken });
		expect(replay.status).toBe(401);
		expect(replay.body.message).toMatch(/reuse/);
		// The thief's copy and the legitimate holder's newer tokens are all dead now.
		expect((await call("POST", "/auth/refresh", { refreshToken: rotated.body.refreshToken })).status).toBe(401);
		expect((await call("GET", "/auth/me", undefined, bearer(rotated.body.token))).status).toBe(401);
	});

	test("an unknown refresh token is 401; a missing one is 422", async () => {
		expect((await call("POST", "/auth/refresh", { refreshToken: "made-up" })).status).toBe(401);
		expect((await call("POST", "/auth/refresh", {})).status).toBe(422);
	});
});

describe("login throttling", () => {
	/** X-Forwarded-For naming one client, for tests that need the same one again. */
	const client = (ip: string) => ({ "x-forwarded-for": ip });
	const login = (email: string, password: string, headers: Record<string, string>) => call("POST", "/auth/login", { email, password }, headers);
	const tally = (answers: JsonResponse[]) => {
		const counts: Record<number, number> = {};
		for (const { status } of answers) counts[status] = (counts[status] ?? 0) + 1;
		return counts;
	};
	/** Every 429 says when to come back, within `most` seconds. */
	const expectRetryAfter = (answers: JsonResponse[], most: number) => {
		for (const refused of answers.filter(a => a.status === 429)) {
			const seconds = Number(refused.headers.get("retry-after"));
			expect(seconds).toBeGreaterThanOrEqual(1);
			expect(seconds).toBeLessThanOrEqual(most);
		}
	};

	test("the 6th bad login for one email from one client within 15 minutes is 429 with Retry-After, even with the right password", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "VIEWER");
		const from = client("203.0.113.1");
		for (let i = 0; i < 5; i++) expect((await login(user.email, `wrong-${i}`, from)).status).toBe(401);
		const sixth = await login(user.email, user.password, from);
		expect(sixth.status).toBe(429);
		expect(sixth.headers.get("retry-after")).not.toBeNull();
		expectRetryAfter([sixth], 15 * 60);
	});

	test("a client cannot pick its address: X-Forwarded-For entries before the proxy's own are ignored", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "VIEWER");
		for (let i = 0; i < 5; i++) expect((await login(user.email, `wrong-${i}`, client(`192.0.2.${i}, 203.0.113.9`))).status).toBe(401);
		expect((await login(user.email, user.password, client("192.0.2.200, 203.0.113.9"))).status).toBe(429);
	});

	test("40 parallel wrong passwords for one email from one client: exactly 5 are checked, 35 are 429", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "VIEWER");
		const from = client("203.0.113.2");
		const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => login(user.email, `wrong-${i}`, from)));
		expect(tally(answers)).toEqual({ 401: 5, 429: 35 });
		expectRetryAfter(answers, 15 * 60);
		expect((await login(user.email, user.password, from)).status).toBe(429);
	});

	test("30 bad logins from one IP block that IP, not others", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "DOCTOR");
		const ip = { "x-forwarded-for": "203.0.113.77" };
		for (let i = 0; i < 30; i++) {
			expect((await call("POST", "/auth/login", { email: staffEmail("spray"), password: "wrong-password" }, ip)).status).toBe(401);
		}
		const blocked = await call("POST", "/auth/login", { email: user.email, password: user.password }, ip);
		expect(blocked.status).toBe(429);
		expect(blocked.headers.get("retry-after")).toBeTruthy();
		const elsewhere = await call("POST", "/auth/login", { email: user.email, password: user.password }, fromIp());
		expect(elsewhere.status).toBe(200);
	});

	test("40 parallel wrong passwords from one client across 40 emails: exactly 30 are checked, 10 are 429", async () => {
		const from = client("203.0.113.3");
		const answers = await Promise.all(Array.from({ length: 40 }, () => login(staffEmail("stuffing"), "wrong-password", from)));
		expect(tally(answers)).toEqual({ 401: 30, 429: 10 });
		expectRetryAfter(answers, 15 * 60);
	});

	test("an attacker who exhausts their client's limit does not lock the owner out on another client", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "DOCTOR");
		const attacker = client("203.0.113.4");
		const attack = await Promise.all(Array.from({ length: 20 }, (_, i) => login(user.email, `guess-${i}`, attacker)));
		expect(tally(attack)).toEqual({ 401: 5, 429: 15 });
		expect((await login(user.email, user.password, attacker)).status).toBe(429);
		expect((await login(user.email, user.password, client("203.0.113.5"))).status).toBe(200);
	});

	test("a flood of 300 parallel attempts from one client holds no one else up: only 401s and 429s, and another user logs in meanwhile", async () => {
		const [target, bystander] = await Promise.all([createUser(cluster.baseUrl, adminToken, "VIEWER"), createUser(cluster.baseUrl, adminToken, "DOCTOR")]);
		const from = client("203.0.113.66");
		const flood = Promise.all(Array.from({ length: 300 }, (_, i) => login(i % 2 ? target.email : staffEmail("flood"), "wrong-password", from)));
		const meanwhile = await login(bystander.email, bystander.password, client("198.51.100.66"));
		const answers = await flood;
		expect(meanwhile.status).toBe(200);
		expect(Object.keys(tally(answers)).sort()).toEqual(["401", "429"]);
		expect(tally(answers)[401]).toBeLessThanOrEqual(30);
	});

	test("parallel logins with the right password from one client all succeed: attempts in flight are waited for, not refused", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "RECEPTIONIST");
		const from = client("203.0.113.6");
		const answers = await Promise.all(Array.from({ length: 12 }, () => login(user.email, user.password, from)));
		expect(tally(answers)).toEqual({ 200: 12 });
	});

	test("during an attack spread over many addresses, a known client logs in and an unknown one is slowed, never locked out", async () => {
		const user = await createUser(cluster.baseUrl, adminToken, "RECEPTIONIST");
		const known = client("203.0.113.7");
		expect((await login(user.email, user.password, known)).status).toBe(200);

		// One guess from each of 20 addresses at once: the account's free allowance is checked, the rest wait out the back-off.
		const attack = await Promise.all(Array.from({ length: 20 }, (_, i) => login(user.email, `guess-${i}`, client(`198.18.0.${i + 1}`))));
		expect(tally(attack)).toEqual({ 401: 10, 429: 10 });
		expectRetryAfter(attack, 60);

		const stranger = await login(user.email, user.password, client("203.0.113.8"));
		expect(stranger.status).toBe(429);
		expectRetryAfter([stranger], 60);
		expect((await login(user.email, user.password, known)).status).toBe(200);
	});

	test("attempts older than every window and clients unseen for 30 days are pruned", async () => {
		const authDb = new Client({ connectionString: withDatabase(process.env.DATABASE_URL!, databaseName("auth")) });
		await authDb.connect();
		try {
			const email = staffEmail("pruned");
			await authDb.query(
				`INSERT INTO login_failures (email, ip, at) VALUES ($1, '203.0.113.9', now() - interval '61 minutes'), ($1, '203.0.113.9', now() - interval '59 minutes')`,
				[email]
			);
			await authDb.query(
				`INSERT INTO known_login_clients (user_id, ip, last_login_at) VALUES ($1, '203.0.113.9', now() - interval '31 days'), ($1, '203.0.113.10', now() - interval '29 days')`,
				[users.VIEWER.id]
			);
			const auth = cluster.broker.getLocalService("auth") as unknown as { pruneLoginRecords(): Promise<void> };
			await auth.pruneLoginRecords();
			const failures = await authDb.query("SELECT at > now() - interval '1 hour' AS recent FROM login_failures WHERE email = $1", [email]);
			expect(failures.rows).toEqual([{ recent: true }]);
			const clients = await authDb.query("SELECT ip FROM known_login_clients WHERE user_id = $1 AND ip LIKE '203.0.113.%'", [users.VIEWER.id]);
			expect(clients.rows).toEqual([{ ip: "203.0.113.10" }]);
		} finally {
			await authDb.end();
		}
	});
});

describe("user administration", () => {
	test("an admin creates, lists and changes users", async () => {
		const email = staffEmail("staff");
		const created = await call("POST", "/auth/users", { email, password: staffPassword(), role: "DOCTOR" }, bearer(adminToken));
		expect(created.status).toBe(201);
		expect(created.body).toMatchObject({ email, role: "DOCTOR", active: true });
		expect(created.body.passwordHash).toBeUndefined();

		const list = await call("GET", "/auth/users?pageSize=100", undefined, bearer(adminToken));
		expect(list.status).toBe(200);
		expect(list.body.rows.map((u: { email: string }) => u.email)).toContain(email);
		expect(JSON.stringify(list.body)).not.toMatch(/argon2|passwordHash/);

		const changed = await call("PATCH", `/auth/users/${created.body.id}`, { role: "RECEPTIONIST" }, bearer(adminToken));
		expect(changed.body.role).toBe("RECEPTIONIST");
		expect((await call("PATCH", "/auth/users/00000000-0000-4000-8000-000000000000", { active: false }, bearer(adminToken))).status).toBe(404);
		expect((await call("PATCH", `/auth/users/${created.body.id}`, { role: "SUPERUSER" }, bearer(adminToken))).status).toBe(422);
	});

	test("versions: GET, 201 and PATCH send the ETag; a stale If-Match is 412 and changes nothing, a fresh one passes", async () => {
		const created = await call("POST", "/auth/users", { email: staffEmail("versioned"), password: staffPassword(), role: "DOCTOR" }, bearer(adminToken));
		expect(created.body.version).toBe(1);
		expect(created.headers.get("etag")).toBe('W/"1"');
		expect(created.headers.get("location")).toBe(`/auth/users/${created.body.id}`);
		const read = await call("GET", `/auth/users/${created.body.id}`, undefined, bearer(adminToken));
		expect(read.body).toEqual(created.body);
		expect(read.headers.get("etag")).toBe('W/"1"');

		// Two admins read version 1; the first change wins, the second (still at 1) is refused.
		const first = await call("PATCH", `/auth/users/${created.body.id}`, { role: "RECEPTIONIST" }, { ...bearer(adminToken), "if-match": 'W/"1"' });
		expect(first.status).toBe(200);
		expect(first.body).toMatchObject({ role: "RECEPTIONIST", version: 2 });
		expect(first.headers.get("etag")).toBe('W/"2"');
		const second = await call("PATCH", `/auth/users/${created.body.id}`, { active: false }, { ...bearer(adminToken), "if-match": 'W/"1"' });
		expect(second.status).toBe(412);
		expect(second.body).toMatchObject({ type: "PRECONDITION_FAILED", data: { currentVersion: 2 } });
		// Even a change to what it already is: the precondition comes first.
		expect((await call("PATCH", `/auth/users/${created.body.id}`, { role: "RECEPTIONIST" }, { ...bearer(adminToken), "if-match": '"1"' })).status).toBe(412);
		expect((await call("GET", `/auth/users/${created.body.id}`, undefined, bearer(adminToken))).body).toEqual(first.body);

		const unknown = crypto.randomUUID();
		expect((await call("PATCH", `/auth/users/${unknown}`, { active: false }, { ...bearer(adminToken), "if-match": 'W/"1"' })).status).toBe(404);
		expect((await call("GET", `/auth/users/${unknown}`, undefined, bearer(adminToken))).status).toBe(404);
		expect((await call("GET", `/auth/users/${created.body.id}`, undefined, bearer(users.RECEPTIONIST.token))).status).toBe(403);
		const tagged = await call("PATCH", `/auth/users/${created.body.id}`, { active: false }, { ...bearer(adminToken), "if-match": 'W/"7", W/"2"' });
		expect(tagged.body).toMatchObject({ active: false, version: 3 });
	});

	test("the user list pages oldest first, and a page past the end is empty but keeps the total", async () => {
		const all = await call("GET", "/auth/users?pageSize=100", undefined, bearer(adminToken));
		const { total } = all.body;
		expect(total).toBeGreaterThanOrEqual(5);
		expect(all.body.rows).toHaveLength(Math.min(total, 100));
		const createdAt = all.body.rows.map((u: { createdAt: string }) => u.createdAt);
		expect(createdAt).toEqual([...createdAt].sort());

		const second = await call("GET", "/auth/users?page=2&pageSize=2", undefined, bearer(adminToken));
		expect(second.body).toEqual({ rows: all.body.rows.slice(2, 4), total, page: 2, pageSize: 2, totalPages: Math.ceil(total / 2) });
		const past = await call("GET", `/auth/users?page=${total + 1}&pageSize=1`, undefined, bearer(adminToken));
		expect(past.body).toEqual({ rows: [], total, page: total + 1, pageSize: 1, totalPages: total });
	});

	test("the last active admin cannot be demoted or deactivated", async () => {
		const { body } = await call("GET", "/auth/users?pageSize=100", undefined, bearer(adminToken));
		const admins = body.rows.filter((u: { role: string; active: boolean }) => u.role === "ADMIN" && u.active);
		// Demote every admin but the one we log in as; the last refusal is the point.
		const me = (await call("GET", "/auth/me", undefined, bearer(users.ADMIN.token))).body;
		for (const admin of admins.filter((a: { id: string }) => a.id !== me.id)) {
			expect((await call("PATCH", `/auth/users/${admin.id}`, { active: false }, bearer(users.ADMIN.token))).status).toBe(200);
		}
		const last = await call("PATCH", `/auth/users/${me.id}`, { role: "VIEWER" }, bearer(users.ADMIN.token));
		expect(last.status).toBe(409);
		for (const admin of admins.filter((a: { id: string }) => a.id !== me.id)) {
			await call("PATCH", `/auth/users/${admin.id}`, { active: true }, bearer(users.ADMIN.token));
		}
		// Reactivation cut off the admins' older tokens, and those minted within the same second.
		await new Promise(r => setTimeout(r, 1100));
		const relogin = await call("POST", "/auth/login", { email: process.env.ADMIN_EMAIL, password: process.env.ADMIN_PASSWORD }, fromIp());
		expect(relogin.status).toBe(200);
		adminToken = relogin.body.token;
	});
});

describe("the role matrix, cell by cell, through the gateway", () => {
	type Cell = [string, (patientId: string) => [string, string, unknown?]];
	const cells: Cell[] = [
		["patients: read (list)", () => ["GET", "/patients"]],
		["patients: read (one)", id => ["GET", `/patients/${id}`]],
		["patients: create", () => ["POST", "/patients", patientBody()]],
		["patients: update (PUT)", id => ["PUT", `/patients/${id}`, { ...patientBody(), name: "Replaced" }]],
		["patients: update (PATCH)", id => ["PATCH", `/patients/${id}`, { address: "Elsewhere 2" }]],
		["patients: delete", id => ["DELETE", `/patients/${id}`]],
		["users: list", () => ["GET", "/auth/users"]],
		["users: create", () => ["POST", "/auth/users", { email: staffEmail("matrix"), password: staffPassword(), role: "VIEWER" }]],
		["audit: read", () => ["GET", "/audit"]],
		["analytics: read", () => ["GET", "/analytics/registrations"]]
	];
	const allowed: Record<string, string[]> = {
		"patients: read (list)": ["ADMIN", "RECEPTIONIST", "DOCTOR"],
		"patients: read (one)": ["ADMIN", "RECEPTIONIST", "DOCTOR"],
		"patients: create": ["ADMIN", "RECEPTIONIST"],
		"patients: update (PUT)": ["ADMIN", "RECEPTIONIST"],
		"patients: update (PATCH)": ["ADMIN", "RECEPTIONIST"],
		"patients: delete": ["ADMIN"],
		"users: list": ["ADMIN"],
		"users: create": ["ADMIN"],
		"audit: read": ["ADMIN"],
		"analytics: read": ["ADMIN", "VIEWER"]
	};
	const roles = ["ADMIN", "RECEPTIONIST", "DOCTOR", "VIEWER"] as const;

	for (const [cell, build] of cells) {
		for (const role of roles) {
			const expectAllowed = allowed[cell].includes(role);
			test(`${cell} × ${role} → ${expectAllowed ? "allowed" : "403"}`, async () => {
				const patient = (await call("POST", "/patients", patientBody(), bearer(adminToken))).body;
				const [method, path, body] = build(patient.id);
				const res = await call(method, path, body, bearer(users[role].token));
				if (expectAllowed) expect(res.status).toBeLessThan(300);
				else {
					expect(res.status).toBe(403);
					expect(res.body).toMatchObject({ name: "ForbiddenError", code: 403, type: "FORBIDDEN" });
				}
			});
		}
	}

	test("nothing under /patients, /auth/users, /audit or /analytics answers without a token", async () => {
		const patient = (await call("POST", "/patients", patientBody(), bearer(adminToken))).body;
		for (const [, build] of cells) {
			const [method, path, body] = build(patient.id);
			const res = await call(method, path, body);
			expect([method, path, res.status]).toEqual([method, path, 401]);
		}
	});

	test("every routed action declares its roles or says it is public", () => {
		const whitelist: string[] = (cluster.broker.getLocalService("api")!.settings as any).routes.find((r: any) => r.path === "/").whitelist;
		const routed = cluster.broker.registry
			.getActionList({ onlyLocal: true, skipInternal: true, withEndpoints: false })
			.map((a: any) => a.action)
			.filter((a: any) => a.rest && a.visibility !== "public" && whitelist.some(w => a.name.startsWith(w.replace("*", ""))));
		expect(routed.length).toBeGreaterThan(10);
		const undeclared = routed.filter((a: any) => !a.public && !(Array.isArray(a.roles) && a.roles.length));
		expect(undeclared.map((a: any) => a.name)).toEqual([]);
	});
});

describe("audit trail", () => {
	let auditDb: Client;
	beforeAll(async () => {
		auditDb = new Client({ connectionString: withDatabase(process.env.DATABASE_URL!, databaseName("audit")) });
		await auditDb.connect();
	});
	afterAll(() => auditDb.end());

	const auditFor = async (patientId: string, count: number) =>
		eventually(async () => {
			const res = await call("GET", `/audit?patientId=${patientId}`, undefined, bearer(adminToken));
			return res.body.total >= count ? res.body.rows : undefined;
		}, 10_000, "audit records");

	test("a patient read leaves a record of who, what, when, outcome and from where", async () => {
		const patient = (await call("POST", "/patients", patientBody(), bearer(adminToken))).body;
		const ip = { "x-forwarded-for": "192.0.2.10", "x-request-id": `req-${patient.id}` };
		expect((await call("GET", `/patients/${patient.id}`, undefined, { ...bearer(users.DOCTOR.token), ...ip })).status).toBe(200);
		const rows = await auditFor(patient.id, 2);
		expect(rows).toContainEqual(
			expect.objectContaining({
				userId: users.DOCTOR.id,
				role: "DOCTOR",
				action: "patients.get",
				resource: "patient",
				patientId: patient.id,
				outcome: "success",
				status: 200,
				ip: "192.0.2.10",
				requestId: `req-${patient.id}`,
				at: expect.any(String)
			})
		);
		// The create was recorded too, with the new patient's id.
		expect(rows).toContainEqual(expect.objectContaining({ action: "patients.create", patientId: patient.id, role: "ADMIN", status: 201 }));
	});

	test("a denied attempt is recorded as denied", async () => {
		const patient = (await call("POST", "/patients", patientBody(), bearer(adminToken))).body;
		expect((await call("GET", `/patients/${patient.id}`, undefined, bearer(users.VIEWER.token))).status).toBe(403);
		expect((await call("DELETE", `/patients/${patient.id}`)).status).toBe(401);
		const rows = await auditFor(patient.id, 3);
		expect(rows).toContainEqual(expect.objectContaining({ userId: users.VIEWER.id, role: "VIEWER", action: "patients.get", outcome: "denied", status: 403 }));
		expect(rows).toContainEqual(expect.objectContaining({ userId: null, action: "patients.remove", outcome: "denied", status: 401 }));
	});

	test("the audit query filters by user and time, for admins only", async () => {
		const from = new Date(Date.now() - 60_000).toISOString();
		await call("GET", "/patients", undefined, bearer(users.RECEPTIONIST.token));
		const rows = await eventually(async () => {
			const res = await call("GET", `/audit?userId=${users.RECEPTIONIST.id}&from=${from}`, undefined, bearer(adminToken));
			return res.body.total > 0 ? res.body.rows : undefined;
		}, 10_000, "receptionist's records");
		expect(rows.every((r: { userId: string }) => r.userId === users.RECEPTIONIST.id)).toBe(true);
		const future = await call("GET", `/audit?from=${new Date(Date.now() + 3_600_000).toISOString()}`, undefined, bearer(adminToken));
		expect(future.body.total).toBe(0);
		expect((await call("GET", "/audit?patientId=not-a-uuid", undefined, bearer(adminToken))).status).toBe(422);
	});

	test("the API cannot change or delete audit records, nor can SQL", async () => {
		expect((await call("DELETE", "/audit", undefined, bearer(adminToken))).status).toBe(404);
		expect((await call("PUT", "/audit", {}, bearer(adminToken))).status).toBe(404);
		expect((await call("POST", "/audit", {}, bearer(adminToken))).status).toBe(404);
		await expect(auditDb.query("UPDATE audit_events SET outcome = 'success'")).rejects.toThrow(/cannot be changed/);
		await expect(auditDb.query("DELETE FROM audit_events")).rejects.toThrow(/cannot be changed/);
		await expect(auditDb.query("TRUNCATE audit_events")).rejects.toThrow(/cannot be changed/);
	});

	test("a batch shipped twice (a gateway crashed before noting it sent) is stored once, every field intact", async () => {
		const record = {
			id: crypto.randomUUID(),
			at: "2026-01-02T03:04:05.678Z",
			userId: crypto.randomUUID(),
			role: "DOCTOR",
			action: "patients.get",
			resource: "patient",
			patientId: crypto.randomUUID(),
			outcome: "denied",
			status: 403,
			ip: "203.0.113.9",
			requestId: "req-twice"
		};
		const other = { ...record, id: crypto.randomUUID(), userId: null, role: null, patientId: null, ip: null, requestId: null, outcome: "error", status: 500 };
		await cluster.broker.call("audit.record", { records: [record] });
		await cluster.broker.call("audit.record", { records: [record, other] });
		const { rows } = await auditDb.query("SELECT * FROM audit_events WHERE id = ANY($1::uuid[]) ORDER BY status", [[record.id, other.id]]);
		expect(rows).toHaveLength(2);
		expect(rows[0]).toMatchObject({
			id: record.id,
			user_id: record.userId,
			role: "DOCTOR",
			action: "patients.get",
			resource: "patient",
			patient_id: record.patientId,
			outcome: "denied",
			status: 403,
			ip: "203.0.113.9",
			request_id: "req-twice"
		});
		expect(new Date(rows[0].at).toISOString()).toBe(record.at);
		expect(rows[1]).toMatchObject({ id: other.id, user_id: null, role: null, patient_id: null, ip: null, request_id: null, outcome: "error", status: 500 });
	});

	test("with the audit service down, requests still succeed and their records arrive once it is back", async () => {
		const broker = cluster.broker;
		const auditService = broker.getLocalService("audit")!;
		const schema = auditService.originalSchema;
		await broker.destroyService(auditService);
		const patient = (await call("POST", "/patients", patientBody(), bearer(adminToken))).body;
		expect(patient.id).toBeDefined();
		expect((await call("GET", `/patients/${patient.id}`, undefined, bearer(users.DOCTOR.token))).status).toBe(200);

		broker.createService(schema);
		await broker.waitForServices(["audit"]);
		const rows = await auditFor(patient.id, 2);
		expect(rows.map((r: { action: string }) => r.action).sort()).toEqual(["patients.create", "patients.get"]);
	});
});
