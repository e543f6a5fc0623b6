import { type ChildProcess, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { adminLogin, bearer, request } from "../helpers/cluster";
import { EVERY_DAY, createDoctor, createPatient } from "../helpers/fixtures";
import { eventually, freePort } from "../helpers/node-process";
import { SERVER_WAIT_MS, type TestKafka, natsUrl, useKafka } from "../helpers/servers";

/**
 * Operating MedSync as its operators do: `npm run stack` (every service its own
 * process over the real NATS, Kafka and PostgreSQL), `npm run seed`, and the REPL
 * joining that cluster. The code under test is the build in dist/.
 */
const ROOT = path.resolve(__dirname, "../..");

let kafka: TestKafka;
let nats: string;
let stack: ChildProcess;
let output = "";
let baseUrl: string;
let env: Record<string, string>;

function run(script: string, input?: string, extraEnv: Record<string, string> = {}, args: string[] = []): Promise<{ code: number | null; out: string }> {
	return new Promise(resolve => {
		const child = spawn(process.execPath, [path.join(ROOT, "dist/scripts", script), ...args], { cwd: ROOT, env: { ...process.env, ...env, ...extraEnv } });
		let out = "";
		child.stdout.on("data", c => (out += c));
		child.stderr.on("data", c => (out += c));
		child.on("exit", code => resolve({ code, out }));
		if (input !== undefined) child.stdin.end(input);
	});
}

/** The stack in a process group of its own, as in a terminal, where Ctrl-C signals the whole group. */
function startStack(stackEnv: Record<string, string | undefined>, onOutput: (chunk: string) => void): ChildProcess {
	const child = spawn(process.execPath, [path.join(ROOT, "dist/scripts/stack.js")], { cwd: ROOT, env: stackEnv, stdio: ["ignore", "pipe", "pipe"], detached: true });
	child.stdout?.on("data", c => onOutput(String(c)));
	child.stderr?.on("data", c => onOutput(String(c)));
	return child;
}

/** The processes in `pids` still running. */
function alive(pids: number[]): number[] {
	return pids.filter(pid => {
		try {
			process.kill(pid, 0);
			return true;
		} catch {
			return false;
		}
	});
}

/** Every service pid the stack reported (restarted ones too). */
const servicePids = (out: string) => [...out.matchAll(/\[stack\] \w+ pid (\d+)/g)].map(m => Number(m[1]));

/** The pid the stack reported for a service, the latest one if it was restarted. */
const pidOf = (service: string, out = output) => [...out.matchAll(new RegExp(`\\[stack\\] ${service} pid (\\d+)`, "g"))].map(m => Number(m[1])).at(-1);

beforeAll(async () => {
	[kafka, nats] = await Promise.all([useKafka(), natsUrl()]);
}, SERVER_WAIT_MS);

beforeAll(async () => {
	const [port, grpcPort] = [await freePort(), await freePort()];
	baseUrl = `http://127.0.0.1:${port}`;
	env = {
		TRANSPORTER: nats,
		NAMESPACE: `stack-${crypto.randomBytes(4).toString("hex")}`,
		PORT: String(port),
		KAFKA_BROKERS: kafka.brokers,
		BILLING_GRPC_PORT: String(grpcPort),
		BILLING_GRPC_URL: `127.0.0.1:${grpcPort}`,
		BILLING_RECONCILE_INTERVAL_MS: "500",
		LOG_LEVEL: "warn",
		SEED_URL: baseUrl
	};
	stack = startStack({ ...process.env, ...env }, chunk => (output += chunk));
	await eventually(async () => ((await request(baseUrl, "GET", "/ready")).status === 200 ? true : undefined), 120_000, "the stack to be ready");
	// The gateway builds its routes shortly after it sees each service: wait until every one answers (401, not 404).
	await eventually(async () => {
		const statuses = await Promise.all(["/patients", "/doctors", "/appointments", "/billing/accounts", "/analytics/registrations", "/audit"].map(p => request(baseUrl, "GET", p)));
		return statuses.every(r => r.status === 401) ? true : undefined;
	}, 30_000, "the gateway's routes");
}, 150_000);

afterAll(async () => {
	try {
		if (!stack || stack.exitCode !== null) return;
		const exited = new Promise(resolve => stack.once("exit", resolve));
		stack.kill("SIGINT");
		await exited;
	} finally {
		kafka?.release();
	}
}, 60_000);

describe("npm run stack", () => {
	test("every service runs as its own process and node", async () => {
		for (const service of ["auth", "audit", "patients", "billing", "analytics", "doctors", "appointments", "fhir", "api"]) expect(pidOf(service)).toBeDefined();
		const ready = await request(baseUrl, "GET", "/ready");
		expect(ready.body.checks).toMatchObject({ transporter: "up", "patients.kafka": "up", "patients.grpc:billing": "up", "billing.kafka": "up" });
	});

	test("a full scenario completes, with billing killed and restarted midway, and nothing is lost", async () => {
		const token = await adminLogin(baseUrl);
		const api = (method: string, p: string, body?: unknown) => request(baseUrl, method, p, body, bearer(token));
		const today = new Date().toISOString().slice(0, 10);
		const countToday = async () => (await api("GET", `/analytics/registrations?from=${today}&to=${today}`)).body.total as number;
		const registeredBefore = await countToday();

		const doctor = await createDoctor(api, { consultationFee: 9_000, availability: EVERY_DAY.map(window => ({ ...window, start: "00:00", end: "24:00" })) });
		const first = await createPatient(api);
		const { slots } = (await api("GET", `/doctors/${doctor.id}/slots?date=${new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10)}`)).body;
		const appointment = (await api("POST", "/appointments", { doctorId: doctor.id, patientId: first.id, start: slots[10].start })).body;
		expect((await api("POST", `/appointments/${appointment.id}/arrive`)).status).toBe(200);

		// Billing dies mid-run.
		const billingPid = pidOf("billing")!;
		process.kill(billingPid, "SIGKILL");
		await eventually(async () => ((await request(baseUrl, "GET", "/ready")).status === 503 ? true : undefined), 15_000, "billing to be missed");

		// The clinic goes on: the visit is fulfilled and a new patient registers while billing is away.
		expect((await api("POST", `/appointments/${appointment.id}/fulfil`)).status).toBe(200);
		const second = await createPatient(api);

		// The stack starts billing again; the Kafka event and the appointments' retry catch up.
		await eventually(async () => (pidOf("billing") !== billingPid ? true : undefined), 15_000, "billing to be restarted");
		await eventually(async () => ((await request(baseUrl, "GET", "/ready")).status === 200 ? true : undefined), 60_000, "the stack to be ready again");
		const account = async (patientId: string) => (await api("GET", `/billing/accounts?patientId=${patientId}`)).body.rows?.[0];
		const secondAccount = await eventually(() => account(second.id), 60_000, "the second patient's account");
		expect(secondAccount.patientId).toBe(second.id);
		const firstAccount = await account(first.id);
		const ledger = await eventually(async () => {
			const res = await api("GET", `/billing/accounts/${firstAccount.id}/transactions`);
			return res.body.total === 1 ? res.body : undefined;
		}, 60_000, "the consultation charge");
		expect(ledger.rows[0]).toMatchObject({ type: "CHARGE", amount: 9_000, reference: `appointment:${appointment.id}` });
		await eventually(async () => ((await countToday()) === registeredBefore + 2 ? true : undefined), 60_000, "both registrations counted");
	}, 240_000);
});

describe("npm run seed", () => {
	test("loads doctors with availability, patients, appointments in every state, and payments, through the API", async () => {
		const { code, out } = await run("seed.js");
		expect([code, code === 0 ? "" : out]).toEqual([0, ""]);
		const result = JSON.parse(out.trim().split("\n").at(-1)!);
		expect(result.doctors).toBe(22);
		expect(result.patients).toBe(30);
		expect(Object.keys(result.appointments).sort()).toEqual(["arrived", "booked", "cancelled", "fulfilled", "noshow"]);
		expect(result.payments).toBeGreaterThan(0);
		const token = await adminLogin(baseUrl);
		const doctors = await request(baseUrl, "GET", "/doctors?specialization=Cardiology", undefined, bearer(token));
		expect(doctors.body.total).toBeGreaterThanOrEqual(2);
	}, 180_000);

	test("a second run adds nothing; sizes are options", async () => {
		const token = await adminLogin(baseUrl);
		const totals = async () =>
			Promise.all(["/doctors", "/patients", "/appointments", "/billing/accounts"].map(async p => (await request(baseUrl, "GET", `${p}?pageSize=1`, undefined, bearer(token))).body.total));
		const before = await totals();
		const again = await run("seed.js");
		expect(again.code).toBe(0);
		expect(JSON.parse(again.out.trim().split("\n").at(-1)!).added).toEqual({ doctors: 0, patients: 0, appointments: 0, payments: 0 });
		expect(await totals()).toEqual(before);

		const larger = await run("seed.js", undefined, {}, ["--patients", "120", "--appointments", "30"]);
		expect(larger.code).toBe(0);
		const result = JSON.parse(larger.out.trim().split("\n").at(-1)!);
		expect(result).toMatchObject({ patients: 120, added: { patients: 90, appointments: 5 } });
		// Not a terminal: progress comes as lines, a tenth at a time.
		expect(larger.out).toContain("seed: patients 120/120");
	}, 180_000);

	test("with MedSync away, says which URL it tried and what to do", async () => {
		const nowhere = `http://127.0.0.1:${await freePort()}`;
		const { code, out } = await run("seed.js", undefined, { SEED_URL: nowhere });
		expect(code).toBe(1);
		expect(out).toContain(`MedSync does not answer at ${nowhere} (ECONNREFUSED): start it (npm start, or npm run stack), or set SEED_URL`);
	});
});

describe("npm run repl", () => {
	test("joins the cluster: nodes, services, actions, call, emit and the outbox and audit-set-aside commands work", async () => {
		const input = ["nodes", "services", "actions", "call patients.outboxStatus", "emit demo.ping", "outbox", "audit-set-aside", "audit-set-aside replay", "quit", ""];
		// A metrics port already taken (here, the gateway's) is no concern of the REPL's, which serves no metrics.
		const { code, out } = await run("repl.js", input.join("\n"), { METRICS_PORT: new URL(baseUrl).port });
		expect(code).toBe(0);
		// Ten nodes: the nine services and the REPL itself, each named after what it runs.
		expect(out.match(/│ ONLINE /g)?.length ?? out.match(/ONLINE/g)?.length).toBeGreaterThanOrEqual(10);
		for (const name of ["appointments", "billing", "patients", "doctors", "analytics", "auth", "audit", "fhir", "api"]) expect(out).toMatch(new RegExp(`${name}-[\\w.-]+-${pidOf(name)}`));
		expect(out).toContain("patients.outboxStatus");
		expect(out).toContain(">> Emit 'demo.ping'");
		expect(out).toMatch(/"transport": "kafka /);
		expect(out).toMatch(/"pending": \d+/);
		// The gateway node answers for its journal: nothing set aside, and so nothing to replay.
		expect(out).toMatch(/"count": 0,\s+"records": \[\]/);
		expect(out).toMatch(/"replayed": 0,\s+"stored": 0,\s+"setAside": 0/);
	}, 60_000);

	test("audit-backlog and kafka-lag answer for each gateway and each consumer group, by partition", async () => {
		const { code, out } = await run("repl.js", ["audit-backlog", "kafka-lag", "quit", ""].join("\n"));
		expect(code).toBe(0);
		expect(out).toMatch(new RegExp(`"api-[\\w.-]+-${pidOf("api")}": \\{\\s+"pending": \\d+,\\s+"oldestSeconds": \\d+,\\s+"setAside": 0`));
		// Billing, analytics and appointments consume the patient topic, each in its own group; patients consumes nothing.
		for (const service of ["billing", "analytics", "appointments"]) {
			expect(out).toMatch(new RegExp(`"${service}-[\\w.-]+-${pidOf(service)}": \\[\\s+\\{\\s+"group": "[\\w.-]*${service}",\\s+"topic": "[\\w.-]+",\\s+"partitions": \\{\\s+"0": (\\d+|null)`));
		}
		expect(out).not.toMatch(/"patients-[\w.-]+-\d+": \[/);
	}, 60_000);

	test("outbox replay sends the events again, which consumers apply once; a bad replay is refused by name", async () => {
		const token = await adminLogin(baseUrl);
		const today = new Date().toISOString().slice(0, 10);
		const countToday = async () => (await request(baseUrl, "GET", `/analytics/registrations?from=${today}&to=${today}`, undefined, bearer(token))).body.total as number;
		const registered = await countToday();
		const { code, out } = await run("repl.js", ["outbox replay --failed", "outbox replay --from 1", "outbox replay --from x", "outbox replay", "quit", ""].join("\n"));
		expect(code).toBe(0);
		// Nothing failing; every event published so far (registrations, updates, merges of the earlier tests) goes again.
		expect(out).toMatch(/"failed": true,\s+"requeued": 0\s/);
		expect(Number(/"from": "1",\s+"requeued": (\d+)/.exec(out)?.[1])).toBeGreaterThan(0);
		expect(out).toContain("The 'from' field must be an outbox id");
		expect(out).toContain("Usage: outbox | outbox replay --failed | outbox replay --from <outbox id>");
		// Published again and read by every consumer group, without a second count.
		await eventually(async () => (/"pending": 0,/.test((await run("repl.js", "outbox\nquit\n")).out) ? true : undefined), 60_000, "the outbox to drain");
		await eventually(async () => {
			const lag = (await run("repl.js", "kafka-lag\nquit\n")).out;
			return /"total": \d+/.test(lag) && !/"total": [1-9]/.test(lag) ? true : undefined;
		}, 60_000, "the consumers to catch up");
		expect(await countToday()).toBe(registered);
	}, 180_000);

	test("a patient read from the REPL is in the audit trail under the operator's OS user and host", async () => {
		const token = await adminLogin(baseUrl);
		const api = (method: string, p: string, body?: unknown) => request(baseUrl, method, p, body, bearer(token));
		const patient = await createPatient(api);
		const { code, out } = await run("repl.js", [`call patients.get --id ${patient.id}`, "quit", ""].join("\n"));
		expect(code).toBe(0);
		expect(out).toContain(patient.mrn);
		const operator = `${os.userInfo().username}@${os.hostname()}`;
		const record = await eventually(async () => {
			const trail = await api("GET", `/audit?patientId=${patient.id}`);
			return trail.body.rows.find((r: { action: string; operator: string | null }) => r.action === "patients.get" && r.operator !== null);
		}, 30_000, "the operator's read in the audit trail");
		expect(record).toMatchObject({ action: "patients.get", resource: "patient", patientId: patient.id, outcome: "success", status: 200, userId: null, operator });
		// The gateway's own records name its user and no operator.
		const created = (await api("GET", `/audit?patientId=${patient.id}`)).body.rows.find((r: { action: string }) => r.action === "patients.create");
		expect(created).toMatchObject({ operator: null, userId: expect.any(String) });
	}, 60_000);
});

describe("Ctrl-C", () => {
	test("stops every service process, then the stack itself", async () => {
		const pids = servicePids(output);
		const exited = new Promise<number | null>(resolve => stack.once("exit", code => resolve(code)));
		process.kill(-stack.pid!, "SIGINT");
		expect(await exited).toBe(0);
		expect(alive(pids)).toEqual([]);
	}, 60_000);

	test("with the embedded PostgreSQL and a node slow to stop, leaves no process behind", async () => {
		// The embedded server's package ends its process at the first SIGINT, within 10 s: the stack must still stop its children first.
		const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-stack-"));
		fs.chmodSync(dataDir, 0o755);
		const [port, grpcPort, postgresPort] = [await freePort(), await freePort(), await freePort()];
		const { DATABASE_URL: _, ...inherited } = process.env;
		let out = "";
		const embedded = startStack(
			{
				...inherited,
				...env,
				NAMESPACE: `stack-${crypto.randomBytes(4).toString("hex")}`,
				PORT: String(port),
				BILLING_GRPC_PORT: String(grpcPort),
				BILLING_GRPC_URL: `127.0.0.1:${grpcPort}`,
				DATA_DIR: dataDir,
				EMBEDDED_POSTGRES_PORT: String(postgresPort)
			},
			chunk => (out += chunk)
		);
		try {
			await eventually(async () => ((await request(`http://127.0.0.1:${port}`, "GET", "/ready")).status === 200 ? true : undefined), 120_000, "the stack to be ready");
			const postmaster = Number(fs.readFileSync(path.join(dataDir, "postgres", "postmaster.pid"), "utf8").split("\n")[0]);
			const pids = [...servicePids(out), postmaster];
			// The nine services and the postmaster.
			expect(pids).toHaveLength(10);
			// A node slow to stop (here: frozen) must not outlive the stack, which kills what has not stopped in time.
			process.kill(pidOf("analytics", out)!, "SIGSTOP");
			const exited = new Promise<number | null>(resolve => embedded.once("exit", code => resolve(code)));
			process.kill(-embedded.pid!, "SIGINT");
			expect(await exited).toBe(0);
			expect(alive(pids)).toEqual([]);
			expect(out).toMatch(/\[stack\] stopped/);
		} finally {
			// Whatever is left of the group, should the test fail.
			try {
				process.kill(-embedded.pid!, "SIGKILL");
			} catch {
				// none left
			}
		}
	}, 180_000);
});
