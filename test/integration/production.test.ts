import crypto from "node:crypto";
import { type NodeProcess, eventually, freePort, startNode } from "../helpers/node-process";
import { request } from "../helpers/cluster";

/**
 * A node started as production starts it (NODE_ENV=production, its secrets
 * given): what it opens without being told. Nothing: no browser origin may
 * call it, and nobody may sign up.
 */
describe("in production", () => {
	let node: NodeProcess;
	let baseUrl: string;

	beforeAll(async () => {
		const port = await freePort();
		baseUrl = `http://127.0.0.1:${port}`;
		const { privateKey } = crypto.generateKeyPairSync("ed25519");
		node = startNode(["api", "auth", "audit"], {
			NODE_ENV: "production",
			PORT: String(port),
			AUTH_JWT_PRIVATE_KEY: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
			ADMIN_PASSWORD: crypto.randomBytes(18).toString("base64url"),
			READY_SERVICES: "auth,audit"
		});
		await eventually(async () => ((await request(baseUrl, "GET", "/ready")).status === 200 ? true : undefined), 60_000, "the node to be ready");
	}, 90_000);

	afterAll(() => node?.stop());

	test("answers no browser origin: no CORS headers, and a preflight finds nothing", async () => {
		const health = await fetch(`${baseUrl}/health`, { headers: { origin: "https://evil.example" } });
		expect(health.status).toBe(200);
		expect(health.headers.get("access-control-allow-origin")).toBeNull();
		const preflight = await fetch(`${baseUrl}/patients`, {
			method: "OPTIONS",
			headers: { origin: "https://evil.example", "access-control-request-method": "GET" }
		});
		expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
		expect(preflight.status).toBeGreaterThanOrEqual(400);
	});

	test("sign-up is closed", async () => {
		const res = await request(baseUrl, "POST", "/auth/signup", { email: "walk.in@example.org", password: "a sturdy passphrase 42" });
		expect(res.status).toBe(403);
		expect(res.body.type).toBe("SIGNUP_CLOSED");
	});
});
