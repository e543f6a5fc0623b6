import crypto from "node:crypto";
import { ServiceBroker } from "moleculer";
import { type JsonResponse, adminLogin, bearer, request } from "../helpers/cluster";
import { type NodeProcess, eventually, freePort, startNode } from "../helpers/node-process";
import { type PostgresServer, startPostgresServer, tcpServer } from "../helpers/postgres-server";
import { patientBody } from "../helpers/fixtures";
import { natsUrl } from "../helpers/servers";

const SERVICES = ["auth", "audit", "patients"];
/**
 * An answer must come before Moleculer's 10 s request timeout, which is what a
 * request waited before (the pool waited 60 s for a connection): this bounds a
 * hang, generously for a loaded machine; it is not a speed target.
 */
const PROMPT_MS = 8000;

/**
 * The PostgreSQL server of DATABASE_URL goes away while MedSync runs, first
 * refusing connections, then (a host cut off) accepting them and never answering.
 * Every route that needs it answers 503 SERVICE_UNAVAILABLE with Retry-After,
 * promptly; /ready names the database; and once the server is back, requests
 * succeed again without restarting MedSync. In one process, and with the
 * gateway on a node of its own, where the error crosses NATS serialised.
 */

let postgres: PostgresServer;

beforeAll(async () => {
	postgres = await startPostgresServer();
});

afterAll(() => postgres?.destroy());

function expectUnavailable(res: JsonResponse, what: string) {
	expect({ what, status: res.status }).toEqual({ what, status: 503 });
	expect(res.body).toEqual({ name: "ServiceUnavailableError", message: expect.any(String), code: 503, type: "SERVICE_UNAVAILABLE", data: null });
	expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
}

describe.each([
	{ topology: "in one process", nodes: [["api", ...SERVICES]] },
	{ topology: "with the gateway on a node of its own, over NATS", nodes: [["api"], SERVICES] }
])("the database goes away and comes back, $topology", ({ nodes }) => {
	const namespace = `test-${crypto.randomBytes(4).toString("hex")}`;
	let processes: NodeProcess[] = [];
	let observer: ServiceBroker;
	let baseUrl: string;
	let token: string;
	const api = (method: string, path: string, body?: unknown) => request(baseUrl, method, path, body, bearer(token));
	/** What is posted while the database is gone, each time: it must leave nothing behind. */
	const refused = patientBody();

	/** Each request that needs the database answers 503 promptly, and /ready says which database is down. */
	async function expectOutageAnswered(patientId: string) {
		const requests: [string, string, unknown?][] = [
			["GET", "/patients"],
			["GET", `/patients/${patientId}`],
			["POST", "/patients", refused]
		];
		for (const [method, path, body] of requests) {
			const started = performance.now();
			const res = await api(method, path, body);
			const elapsed = performance.now() - started;
			expectUnavailable(res, `${method} ${path}`);
			expect({ what: `${method} ${path}`, prompt: elapsed < PROMPT_MS }).toEqual({ what: `${method} ${path}`, prompt: true });
		}
		const ready = await api("GET", "/ready");
		expect(ready.status).toBe(503);
		expect(ready.body.checks).toMatchObject({ "patients.database": expect.stringMatching(/^down: /), "auth.database": expect.stringMatching(/^down: /) });
	}

	beforeAll(async () => {
		const nats = await natsUrl();
		const port = await freePort();
		baseUrl = `http://127.0.0.1:${port}`;
		const env = {
			TRANSPORTER: nats,
			NAMESPACE: namespace,
			PORT: String(port),
			DATABASE_URL: postgres.url,
			READY_SERVICES: SERVICES.join(","),
			// No billing here: patients gives up on it soon, and does not retry it meanwhile.
			BILLING_GRPC_DEADLINE_MS: "300",
			BILLING_RECONCILE_INTERVAL_MS: "600000"
		};
		observer = new ServiceBroker({ namespace, transporter: nats as "NATS", logger: false, nodeID: `observer-${namespace}` });
		await observer.start();
		processes = nodes.map(services => startNode(services, env));
		await observer.waitForServices(["api", ...SERVICES], 60_000);
		token = await eventually(() => adminLogin(baseUrl), 30_000, "login through the gateway");
		await eventually(async () => ((await api("GET", "/patients")).status === 200 ? true : undefined), 30_000, "the routes");
	}, 120_000);

	afterAll(async () => {
		await Promise.all(processes.map(node => node.stop()));
		await observer?.stop();
	});

	test("503 with Retry-After while it is gone, refusing or silent; served again once it is back", async () => {
		const before = await api("POST", "/patients", patientBody());
		expect(before.status).toBe(201);

		// A fast shutdown: open connections are told so (57P01), new ones are refused.
		await postgres.stop();
		await expectOutageAnswered(before.body.id);

		// A host cut off: connections are accepted and never answered.
		const silent = await tcpServer(postgres.port, () => {});
		try {
			await expectOutageAnswered(before.body.id);
		} finally {
			silent.close();
		}

		await postgres.start();
		const read = await eventually(async () => {
			const res = await api("GET", `/patients/${before.body.id}`);
			return res.status === 200 ? res : undefined;
		}, 20_000, "the patient served again");
		expect(read.body).toEqual(before.body);
		const after = await api("POST", "/patients", patientBody());
		expect(after.status).toBe(201);
		// What was refused during the outage left nothing behind.
		const during = await api("GET", `/patients?search=${encodeURIComponent(refused.email)}`);
		expect(during.body.total).toBe(0);
		// Billing does not run here, so /ready stays 503 for its sake; the databases report themselves up.
		const ready = await eventually(async () => {
			const res = await api("GET", "/ready");
			return res.body.checks["patients.database"] === "up" ? res : undefined;
		}, 20_000, "the database reported up");
		expect(ready.body.checks).toMatchObject({ "auth.database": "up", "audit.database": "up" });
		// The outbox relay's own connection came back too: the new patient's event leaves.
		await eventually(
			async () => ((await observer.call<{ pending: number }>("patients.outboxStatus")).pending === 0 ? true : undefined),
			20_000,
			"the outbox drained"
		);

		const output = processes.map(node => node.output()).join("\n");
		expect(output).toContain("The database is unreachable; answering 503");
		// No 500 was logged: every failure was recognised as the outage it was.
		expect(output).not.toContain("Request failed");
	}, 120_000);
});
