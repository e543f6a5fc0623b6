import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { hash } from "@node-rs/argon2";
import { Client } from "pg";
import { chromium } from "playwright-core";
import { eventually, freePort } from "../lib/tooling/network";
import { NODE_FLAGS } from "../lib/infra/node-flags";
import { PROJECT_ROOT } from "../lib/infra/paths";
import { withDatabase } from "../lib/infra/postgres";

/**
 * `npm run bench [-- --quick]`: MedSync against a bare Node.js + pg server doing
 * the same queries, in the same run, in two topologies (one process; a process
 * per service over NATS). Writes bench/results.md and bench/results.png.
 */

const QUICK = process.argv.includes("--quick");
/** `--only=<scenario prefix>[,<prefix>…]` (`events` for the event latency): some scenarios, in the single topology, for a profiling round; writes no results. */
const ONLY = process.argv.find(a => a.startsWith("--only="))?.slice("--only=".length);
/** `--profile`: MedSync runs under `--cpu-prof` (bench/profiles/), and PostgreSQL's wait events are sampled. */
const PROFILE = process.argv.includes("--profile");
const PROFILE_DIR = path.join(PROJECT_ROOT, "bench/profiles");
/** Seconds per measurement; `--duration=<s>` for a longer profiling round. */
const DURATION = Number(process.argv.find(a => a.startsWith("--duration="))?.slice("--duration=".length) ?? (QUICK ? 3 : 10));
/** Seconds of load before each measurement, so JIT, pools and consumer groups are warm: a service's steady state, not its first seconds. */
const WARMUP = QUICK ? 1 : 3;
const FIXTURE_PATIENTS = QUICK ? 10_000 : 100_000;
const EVENT_CREATES = QUICK ? 200 : 1000;
const POOL = 10;
const DIST = path.join(PROJECT_ROOT, "dist");
const SERVER = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const NATS = process.env.TRANSPORTER ?? "nats://127.0.0.1:4222";
const ADMIN = { email: "admin@bench.medsync.local", password: `Bench-${crypto.randomBytes(9).toString("hex")}` };
const RUN = crypto.randomBytes(3).toString("hex");
const SYLLABLES = ["ka", "lo", "mi", "ra", "to", "ne", "sa", "vi", "du", "pe", "jo", "li", "ma", "ro", "ti", "na", "se", "vo", "de", "pa"];

interface LoadResult {
	requests: number;
	rps: number;
	p50: number;
	p99: number;
	errors: number;
	loadCpuMs: number;
	/** CPU time per request, in ms: the server's own processes, PostgreSQL's, the Kafka broker's, the load generator's. */
	cpu?: { server: number; postgres: number; kafka: number; load: number };
}
interface Row {
	topology: string;
	scenario: string;
	medsync: LoadResult;
	baseline: LoadResult;
	baselineName: string;
}

const log = (line: string) => console.log(`[bench] ${line}`);
const execFileAsync = promisify(execFile);
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms));

async function http(url: string, method = "GET", body?: unknown, token?: string): Promise<{ status: number; body: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
	for (let attempt = 1; ; attempt++) {
		try {
			return await httpOnce(url, method, body, token);
		} catch (err) {
			// A keep-alive socket the server closed between requests: try a fresh one.
			if (attempt >= 3) throw new Error(`${method} ${url}: ${(err as Error).message} (${String((err as { cause?: unknown }).cause)})`, { cause: err });
			await sleep(200);
		}
	}
}

async function httpOnce(url: string, method: string, body?: unknown, token?: string) {
	const res = await fetch(url, {
		method,
		headers: { "content-type": "application/json", ...(token && { authorization: `Bearer ${token}` }) },
		body: body === undefined ? undefined : JSON.stringify(body)
	});
	const text = await res.text();
	return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function load(options: Record<string, unknown>): Promise<LoadResult> {
	// Options go by file: a list of slots is too long for a command line.
	const file = path.join(os.tmpdir(), `medsync-load-${process.pid}.json`);
	fs.writeFileSync(file, JSON.stringify({ duration: DURATION, ...options }));
	const { stdout } = await execFileAsync(process.execPath, [path.join(DIST, "bench/load.js"), file], { encoding: "utf8", maxBuffer: 64 << 20 });
	return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

/**
 * What PostgreSQL's backends for this run are doing, sampled every 20 ms while
 * `during` runs: the share of samples per state, wait event and statement.
 */
async function sampleWaits<T>(databasePrefix: string, during: Promise<T>): Promise<{ result: T; waits: [string, number][] }> {
	const db = new Client({ connectionString: SERVER });
	await db.connect();
	const tally = new Map<string, number>();
	// Many more backends than pools allow means connections opened and closed under load.
	const backends = new Set<number>();
	let samples = 0;
	let done = false;
	const finished = during.finally(() => (done = true));
	while (!done) {
		const { rows } = await db.query(
			`SELECT pid, state, coalesce(wait_event_type || ':' || wait_event, 'on CPU') AS wait, left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS query
			 FROM pg_stat_activity WHERE datname LIKE $1 AND pid <> pg_backend_pid()`,
			[`${databasePrefix}%`]
		);
		samples++;
		for (const r of rows) {
			backends.add(r.pid);
			const key = r.state === "active" ? `active, ${r.wait}: ${r.query}` : `${r.state}${r.state === "idle" ? "" : `: ${r.query}`}`;
			tally.set(key, (tally.get(key) ?? 0) + 1);
		}
		await sleep(20);
	}
	await db.end();
	const waits = [...tally].map(([k, n]) => [k, n / samples] as [string, number]).sort((a, b) => b[1] - a[1]).slice(0, 12);
	waits.push([`distinct backends seen (${samples} samples)`, backends.size]);
	return { result: await finished, waits };
}

/** CPU seconds (user + system) each of the given processes has used so far; a process gone is left out. */
function cpuByPid(pids: number[]): Map<number, number> {
	const seconds = new Map<number, number>();
	for (const pid of pids) {
		try {
			// Fields after the command name, which may hold spaces: utime and stime are the 12th and 13th.
			const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
			seconds.set(pid, (Number(fields[11]) + Number(fields[12])) / 100);
		} catch {
			// exited
		}
	}
	return seconds;
}

/** CPU seconds used between two readings: a process that started since counts from zero; one that ended is missed. */
function cpuSpent(before: Map<number, number>, after: Map<number, number>): number {
	let spent = 0;
	for (const [pid, seconds] of after) spent += seconds - (before.get(pid) ?? 0);
	return spent;
}

function pidsWhere(match: (comm: string, cmdline: string) => boolean): number[] {
	return fs
		.readdirSync("/proc")
		.filter(p => /^\d+$/.test(p))
		.filter(p => {
			try {
				return match(fs.readFileSync(`/proc/${p}/comm`, "utf8").trim(), fs.readFileSync(`/proc/${p}/cmdline`, "utf8"));
			} catch {
				return false;
			}
		})
		.map(Number);
}

const postgresPids = () => pidsWhere(comm => comm === "postgres");
const kafkaPids = () => pidsWhere((comm, cmdline) => comm === "java" && cmdline.includes("kafka.Kafka"));

/** PostgreSQL's processes by what they serve: a database (from the process title), or a background job. */
function postgresCpuByRole(): Map<string, number> {
	const byRole = new Map<string, number>();
	for (const pid of postgresPids()) {
		try {
			const title = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
			const role = /^postgres: (?:\S+: )?(?:\S+ (\S+) \S+ |)(.*?)\s*$/.exec(title);
			const key = role?.[1] ?? role?.[2]?.split(" ")[0] ?? "postmaster";
			byRole.set(key, (byRole.get(key) ?? 0) + (cpuByPid([pid]).get(pid) ?? 0));
		} catch {
			// exited
		}
	}
	return byRole;
}

/**
 * A load generator that stops leaves work in flight (a login's hash, a create's
 * events): a pause lets it finish, so it does not land on the next measurement.
 */
const settle = () => sleep(1000);

/** Warms up, then runs a load and adds what it cost in CPU, per request, to its result. The warm-up's answers count as errors too. */
async function measuredLoad(options: Record<string, unknown>, serverPids: () => number[]): Promise<LoadResult> {
	await settle();
	const warm = await load({ ...options, duration: WARMUP });
	// A free slot is booked once: the measured run takes the ones the warm-up left, past those still in flight when it stopped.
	if (Array.isArray(options.slots)) options = { ...options, slots: options.slots.slice(warm.requests + Number(options.connections)) };
	const reading = () => ({ server: cpuByPid(serverPids()), postgres: cpuByPid(postgresPids()), kafka: cpuByPid(kafkaPids()) });
	const before = reading();
	const rolesBefore = PROFILE ? postgresCpuByRole() : undefined;
	const result = await load(options);
	if (rolesBefore) {
		const spent = [...postgresCpuByRole()].map(([role, cpu]) => [role, cpu - (rolesBefore.get(role) ?? 0)] as const).filter(([, cpu]) => cpu > 0);
		log(`  PostgreSQL CPU ms per request, by database or job: ${spent.sort((a, b) => b[1] - a[1]).map(([role, cpu]) => `${role} ${((1000 * cpu) / Math.max(1, result.requests)).toFixed(2)}`).join(", ")}`);
	}
	const after = reading();
	const perRequest = (seconds: number) => (1000 * seconds) / Math.max(1, result.requests);
	return {
		...result,
		errors: result.errors + warm.errors,
		cpu: {
			server: perRequest(cpuSpent(before.server, after.server)),
			postgres: perRequest(cpuSpent(before.postgres, after.postgres)),
			kafka: perRequest(cpuSpent(before.kafka, after.kafka)),
			load: result.loadCpuMs / Math.max(1, result.requests)
		}
	};
}

/** Peak resident set size (VmHWM) of a process, in MB. */
function peakRssMb(pid: number): number {
	const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
	return Math.round(Number(/VmHWM:\s+(\d+)/.exec(status)![1]) / 1024);
}

function start(args: string[], env: Record<string, string>): { child: ChildProcess; output: () => string } {
	const child = spawn(process.execPath, args, { cwd: PROJECT_ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
	let output = "";
	child.stdout!.on("data", c => (output = (output + c).slice(-200_000)));
	child.stderr!.on("data", c => (output = (output + c).slice(-200_000)));
	return { child, output: () => output };
}

async function stop(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
	if (child.exitCode !== null || child.signalCode !== null) return;
	const exited = new Promise(resolve => child.once("exit", resolve));
	child.kill(signal);
	await exited;
}

async function loadFixtures(patientsDb: string): Promise<string[]> {
	const db = new Client({ connectionString: patientsDb });
	db.on("error", err => log(`fixture connection: ${err.message}`));
	await db.connect();
	// Fixtures go straight into the table (100,000 API calls would be the bench itself); they count as billed already.
	await db.query(
		`INSERT INTO patients (id, mrn, name, email, address, date_of_birth, register_date, billing_account_id)
		 SELECT gen_random_uuid(), '9' || lpad(i::text, 7, '0'),
		        initcap(($1::text[])[1 + i % 20] || ($1::text[])[1 + (i / 20) % 20]) || ' Fixture' || i,
		        'fixture' || i || '@bench.example', i || ' Fixture Road',
		        DATE '1940-01-01' + (i % 25000), DATE '2010-01-01' + (i % 5000), gen_random_uuid()
		 FROM generate_series(1, $2::int) AS i`,
		[SYLLABLES, FIXTURE_PATIENTS]
	);
	await db.query("ANALYZE patients");
	const { rows } = await db.query("SELECT id FROM patients WHERE email LIKE 'fixture%' ORDER BY random() LIMIT 2000");
	await db.end();
	return rows.map(r => r.id);
}

async function benchTopology(topology: "single" | "distributed", rows: Row[], memory: Record<string, number>, events: Record<string, number | string>): Promise<void> {
	const prefix = `medsync_bench_${RUN}_${topology === "single" ? "one" : "many"}`;
	const port = await freePort();
	const grpcPort = await freePort();
	const base = `http://127.0.0.1:${port}`;
	const env: Record<string, string> = {
		PORT: String(port),
		DATABASE_URL: SERVER,
		DATABASE_PREFIX: prefix,
		DATABASE_POOL_MAX: String(POOL),
		KAFKA_BROKERS: process.env.KAFKA_BROKERS ?? "127.0.0.1:9092",
		KAFKA_PATIENT_TOPIC: `patient.bench-${RUN}-${topology}`,
		KAFKA_GROUP_PREFIX: `bench-${RUN}-${topology}-`,
		BILLING_GRPC_PORT: String(grpcPort),
		BILLING_GRPC_URL: `127.0.0.1:${grpcPort}`,
		ADMIN_EMAIL: ADMIN.email,
		ADMIN_PASSWORD: ADMIN.password,
		METRICS_PORT: "off",
		LOG_LEVEL: "warn",
		DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), "medsync-bench-")),
		NAMESPACE: `bench-${RUN}-${topology}`,
		...(topology === "distributed" && { TRANSPORTER: NATS })
	};
	log(`${topology}: starting MedSync`);
	// The newest pid per service: the stack restarts a service that dies.
	const servicePids = (): Record<string, number> =>
		topology === "single" ? { "all services": system.child.pid! } : Object.fromEntries([...system.output().matchAll(/\[stack\] (\w+) pid (\d+)/g)].map(m => [m[1], Number(m[2])]));
	const system =
		topology === "single"
			? start([...NODE_FLAGS, ...profilerFlags(), path.join(PROJECT_ROOT, "node_modules/moleculer/bin/moleculer-runner.js"), "--config", path.join(DIST, "moleculer.config.js")], { ...env, SERVICEDIR: path.join(DIST, "services") })
			: start([path.join(DIST, "scripts/stack.js")], env);
	try {
		await eventually(async () => ((await http(`${base}/ready`)).status === 200 ? true : undefined), 120_000, "MedSync to be ready");
		const token = (await http(`${base}/auth/login`, "POST", ADMIN)).body.token as string;
		log(`${topology}: ready; loading ${FIXTURE_PATIENTS} fixture patients`);
		const ids = await loadFixtures(withDatabase(SERVER, `${prefix}_patients`));

		const baselinePort = await freePort();
		const baseline = start([path.join(DIST, "bench/baseline.js"), String(baselinePort), withDatabase(SERVER, `${prefix}_patients`), String(POOL), await hash("baseline-password")], {});
		const bare = `http://127.0.0.1:${baselinePort}`;
		await eventually(async () => ((await fetch(`${bare}/patients/${ids[0]}`)).ok ? true : undefined), 120_000, "the baseline");
		const medsyncPids = () => Object.values(servicePids());

		const byId = ids.map(id => `/patients/${id}`);
		const searches = SYLLABLES.flatMap(a => SYLLABLES.slice(0, 5).map(b => `/patients?search=${a}${b}`));
		const wanted = (name: string) => !ONLY || ONLY.split(",").some(prefix => name.startsWith(prefix));
		const scenario = async (name: string, baselineName: string, medsync: Record<string, unknown>, bareOptions: Record<string, unknown>) => {
			if (!wanted(name)) return;
			log(`${topology}: ${name}`);
			const measured = measuredLoad({ ...medsync, token }, medsyncPids);
			let result: LoadResult;
			if (PROFILE) {
				const sampled = await sampleWaits(prefix, measured);
				result = sampled.result;
				log(`${topology}: PostgreSQL backends during ${name} (share of samples):`);
				for (const [what, share] of sampled.waits) log(`  ${share.toFixed(2)}  ${what}`);
			} else {
				result = await measured;
			}
			rows.push({ topology, scenario: name, baselineName, medsync: result, baseline: await measuredLoad(bareOptions, () => [baseline.child.pid!]) });
		};
		await scenario("GET /patients/:id", "same SELECT", { url: base, method: "GET", connections: 64, paths: byId }, { url: bare, method: "GET", connections: 64, paths: byId });
		await scenario(`GET /patients?search= (${FIXTURE_PATIENTS.toLocaleString("en")} patients)`, "same statement", { url: base, method: "GET", connections: 64, paths: searches }, { url: bare, method: "GET", connections: 64, paths: searches });
		await scenario("POST /patients (gRPC + outbox)", "bare INSERT", { url: `${base}/patients`, method: "POST", connections: 16, body: "patient" }, { url: `${bare}/patients`, method: "POST", connections: 16, body: "patient" });

		const doctors = [];
		for (let d = 0; d < (wanted("POST /appointments") ? 4 : 0); d++) {
			const res = await http(`${base}/doctors`, "POST", {
				name: `Dr Bench ${d}`,
				email: `dr.bench.${d}@bench.example`,
				specialization: "Internal Medicine",
				address: "1 Bench Street",
				joiningDate: "2020-01-01",
				slotMinutes: 5,
				availability: ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"].map(day => ({ day, start: "00:00", end: "24:00" }))
			}, token);
			doctors.push(res.body);
		}
		const slots: { doctorId: string; patientId: string; start: string }[] = [];
		for (const [d, doctor] of doctors.entries()) {
			const from = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
			const to = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);
			const { slots: free } = (await http(`${base}/doctors/${doctor.id}/slots?from=${from}&to=${to}`, "GET", undefined, token)).body;
			free.forEach((s: { start: string }, i: number) => slots.push({ doctorId: doctor.id, patientId: ids[(i * 4 + d) % ids.length], start: s.start }));
		}
		await scenario("POST /appointments (distinct free slots)", "bare INSERT", { url: `${base}/appointments`, method: "POST", connections: 16, body: "appointment", slots }, { url: `${bare}/patients`, method: "POST", connections: 16, body: "patient" });
		await scenario("POST /auth/login", "argon2id verify", { url: `${base}/auth/login`, method: "POST", connections: 8, body: "login", login: ADMIN }, { url: `${bare}/login`, method: "POST", connections: 8, body: "login", login: {} });

		const created = rows.find(r => r.topology === topology && r.scenario.startsWith("POST /patients"))?.medsync.requests ?? 0;
		const patientsDb = new Client({ connectionString: withDatabase(SERVER, `${prefix}_patients`) });
		await patientsDb.connect();
		const unbilled = await eventually(async () => {
			const { rows: r } = await patientsDb.query("SELECT count(*)::int AS n FROM patients WHERE email LIKE 'bench.%' AND billing_account_id IS NULL");
			return r[0].n === 0 ? 0 : undefined;
		}, 120_000, "every created patient's billing account").catch(() => -1);
		events[`${topology}: created patients without a billing account`] = unbilled;
		events[`${topology}: patients created under load`] = created;

		if (topology === "single" && wanted("events")) {
			log(`${topology}: event latency over ${EVENT_CREATES} creates`);
			await settle();
			const from = new Date();
			for (let i = 0; i < EVENT_CREATES; i += 10) {
				await Promise.all(Array.from({ length: 10 }, (_, k) => http(`${base}/patients`, "POST", { name: `Event ${i + k}`, email: `event.${RUN}.${i + k}@example.org`, address: "x", dateOfBirth: "1990-01-01" }, token)));
			}
			const billing = new Client({ connectionString: withDatabase(SERVER, `${prefix}_billing`) });
			await billing.connect();
			const { rows: outbox } = await patientsDb.query("SELECT event_id, created_at, sent_at FROM outbox WHERE key IN (SELECT id::text FROM patients WHERE email LIKE 'event.%') AND event_type = 'PATIENT_CREATED' AND created_at >= $1", [from]);
			const consumed = await eventually(async () => {
				const { rows: r } = await billing.query("SELECT event_id, processed_at FROM processed_events WHERE event_id = ANY($1::uuid[])", [outbox.map(o => o.event_id)]);
				return r.length === outbox.length ? r : undefined;
			}, 120_000, "billing to consume every event");
			const at = new Map(consumed.map(r => [r.event_id, new Date(r.processed_at).getTime()]));
			const percentile = (values: number[], p: number) => values.sort((a, b) => a - b)[Math.floor(values.length * p)];
			const latencies = outbox.map(o => at.get(o.event_id)! - new Date(o.created_at).getTime());
			events["Kafka event latency p50 (ms)"] = percentile(latencies, 0.5);
			events["Kafka event latency p99 (ms)"] = percentile(latencies, 0.99);
			// Where the time goes: commit → published by the relay, then published → consumed by billing.
			const relayed = await eventually(async () => {
				const { rows: r } = await patientsDb.query("SELECT event_id, created_at, sent_at FROM outbox WHERE event_id = ANY($1::uuid[]) AND sent_at IS NOT NULL", [outbox.map(o => o.event_id)]);
				return r.length === outbox.length ? r : undefined;
			}, 120_000, "the relay to mark every event sent");
			const toRelay = relayed.map(o => new Date(o.sent_at).getTime() - new Date(o.created_at).getTime());
			const toConsumer = relayed.map(o => at.get(o.event_id)! - new Date(o.sent_at).getTime());
			events["  of which commit → relayed, p50 / p99 (ms)"] = `${percentile(toRelay, 0.5)} / ${percentile(toRelay, 0.99)}`;
			events["  of which relayed → consumed by billing, p50 / p99 (ms)"] = `${percentile(toConsumer, 0.5)} / ${percentile(toConsumer, 0.99)}`;
			await billing.end();
		}
		await patientsDb.end();

		for (const [name, pid] of Object.entries(servicePids())) memory[`${topology}: ${name}`] = peakRssMb(pid);
		memory[`${topology}: baseline`] = peakRssMb(baseline.child.pid!);
		await stop(baseline.child);
	} catch (err) {
		const logFile = path.join(os.tmpdir(), `medsync-bench-${topology}.log`);
		fs.writeFileSync(logFile, system.output());
		log(`${topology} failed; MedSync's output is in ${logFile}`);
		throw err;
	} finally {
		await stop(system.child, topology === "single" ? "SIGTERM" : "SIGINT");
	}
}

/** Node flags for the single-process MedSync: a CPU profile per run under `--profile`. */
function profilerFlags(): string[] {
	if (!PROFILE) return [];
	const name = `${(ONLY ?? "all").replace(/[^\w]+/g, "-").replace(/^-|-$/g, "")}-${new Date().toISOString().replace(/[:.]/g, "-")}.cpuprofile`;
	return ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${name}`];
}

function cpuCell(result: LoadResult): string {
	const c = result.cpu;
	return c ? [c.server, c.postgres, c.kafka, c.load].map(ms => ms.toFixed(2)).join(" / ") : "";
}

function ratio(row: Row): number {
	return row.medsync.rps / row.baseline.rps;
}

function markdown(rows: Row[], memory: Record<string, number>, events: Record<string, number | string>): string {
	const cpu = os.cpus()[0]?.model ?? "unknown CPU";
	const lines = [
		"# MedSync benchmark",
		"",
		`Run ${new Date().toISOString()} on ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}${QUICK ? " (quick run: 3 s per scenario, 10,000 fixture patients)" : ""}.`,
		"The baseline is a bare Node.js HTTP server doing the same PostgreSQL work with the same pool size; the ratio is MedSync's throughput over the baseline's, measured in the same run.",
		"",
		"CPU ms/req is the CPU time per request of the server's processes / PostgreSQL / the Kafka broker / the load generator: on two shared cores, what a request costs all of them together decides the throughput.",
		"",
		"| Topology | Scenario | MedSync req/s | p50 ms | p99 ms | errors | CPU ms/req | Baseline | req/s | p99 ms | CPU ms/req | Ratio |",
		"|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
		...rows.map(r => `| ${r.topology} | ${r.scenario} | ${r.medsync.rps.toFixed(0)} | ${r.medsync.p50} | ${r.medsync.p99} | ${r.medsync.errors} | ${cpuCell(r.medsync)} | ${r.baselineName} | ${r.baseline.rps.toFixed(0)} | ${r.baseline.p99} | ${cpuCell(r.baseline)} | ${ratio(r).toFixed(2)}× |`),
		"",
		"## Events and correctness",
		"",
		...Object.entries(events).map(([k, v]) => `- ${k}: ${v}`),
		"",
		"## Peak RSS (MB)",
		"",
		...Object.entries(memory).map(([k, v]) => `- ${k}: ${v}`),
		"",
		"## Targets (all services in one process)",
		""
	];
	const single = (prefix: string) => rows.find(r => r.topology === "single" && r.scenario.startsWith(prefix))!;
	const targets: [string, boolean, string][] = [
		["GET /patients/:id ≥ 0.5× baseline throughput", ratio(single("GET /patients/:id")) >= 0.5, `${ratio(single("GET /patients/:id")).toFixed(2)}×`],
		["POST /patients ≥ 0.3× a bare insert", ratio(single("POST /patients")) >= 0.3, `${ratio(single("POST /patients")).toFixed(2)}×`],
		["read p99 < 50 ms at 64 connections", single("GET /patients/:id").medsync.p99 < 50 && single("GET /patients?search").medsync.p99 < 50, `${single("GET /patients/:id").medsync.p99} / ${single("GET /patients?search").medsync.p99} ms`],
		["Kafka event latency p99 < 250 ms", Number(events["Kafka event latency p99 (ms)"]) < 250, `${events["Kafka event latency p99 (ms)"]} ms`],
		["peak RSS < 400 MB", memory["single: all services"] < 400, `${memory["single: all services"]} MB`]
	];
	lines.push("| Target | Met | Measured |", "|---|---|---|", ...targets.map(([t, ok, v]) => `| ${t} | ${ok ? "✔" : "✘"} | ${v} |`), "");
	lines.push("![Throughput and p99 per scenario](results.png)", "");
	// The history of what was tried and what it did lives beside this file, written by hand.
	const changes = path.join(PROJECT_ROOT, "bench/changes.md");
	if (fs.existsSync(changes)) lines.push(fs.readFileSync(changes, "utf8"));
	return lines.join("\n");
}

async function chart(rows: Row[], file: string): Promise<void> {
	const width = 1100;
	const rowHeight = 34;
	const maxRps = Math.max(...rows.flatMap(r => [r.medsync.rps, r.baseline.rps]));
	const maxP99 = Math.max(...rows.map(r => r.medsync.p99), 1);
	const bars = rows
		.map((r, i) => {
			const y = 60 + i * rowHeight;
			const w = (v: number) => Math.max(1, (v / maxRps) * 420);
			return `<text x="10" y="${y + 14}" font-size="12">${r.topology} · ${r.scenario.replace(/&/g, "&amp;").replace(/</g, "&lt;")}</text>
<rect x="330" y="${y}" width="${w(r.baseline.rps)}" height="10" fill="#bbb"/><rect x="330" y="${y + 12}" width="${w(r.medsync.rps)}" height="10" fill="#2b6cb0"/>
<text x="${335 + w(Math.max(r.baseline.rps, r.medsync.rps))}" y="${y + 20}" font-size="11">${r.medsync.rps.toFixed(0)} / ${r.baseline.rps.toFixed(0)} req/s</text>
<rect x="880" y="${y + 6}" width="${Math.max(1, (r.medsync.p99 / maxP99) * 180)}" height="10" fill="#c05621"/><text x="${885 + (r.medsync.p99 / maxP99) * 180}" y="${y + 15}" font-size="11">${r.medsync.p99} ms</text>`;
		})
		.join("\n");
	const height = 80 + rows.length * rowHeight;
	const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="25" font-size="16" font-weight="bold">MedSync vs bare baseline: throughput (blue MedSync, grey baseline) and MedSync p99 (orange)</text>
${bars}</svg>`;
	const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"] });
	const page = await browser.newPage({ viewport: { width, height } });
	await page.setContent(`<html><body style="margin:0">${svg}</body></html>`);
	await page.screenshot({ path: file });
	await browser.close();
}

async function main(): Promise<void> {
	if (!process.env.KAFKA_BROKERS) {
		const started = spawnSync(path.join(PROJECT_ROOT, "scripts/kafka.sh"), ["start"], { stdio: "inherit" });
		if (started.status !== 0) throw new Error("Kafka is needed for the event latency: scripts/kafka.sh start failed");
	}
	const rows: Row[] = [];
	const memory: Record<string, number> = {};
	const events: Record<string, number | string> = {};
	try {
		await benchTopology("single", rows, memory, events);
		if (!ONLY) await benchTopology("distributed", rows, memory, events);
	} finally {
		const admin = new Client({ connectionString: SERVER });
		await admin.connect();
		const { rows: dbs } = await admin.query("SELECT datname FROM pg_database WHERE datname LIKE $1", [`medsync_bench_${RUN}%`]);
		for (const { datname } of dbs) await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
		await admin.end();
	}
	const errors = rows.reduce((n, r) => n + r.medsync.errors, 0);
	if (ONLY) {
		for (const r of rows) {
			log(`${r.scenario}: ${r.medsync.rps.toFixed(0)} req/s, p50 ${r.medsync.p50} ms, p99 ${r.medsync.p99} ms, ${r.medsync.errors} errors, CPU ms/req ${cpuCell(r.medsync)}; baseline ${r.baseline.rps.toFixed(0)} req/s, CPU ms/req ${cpuCell(r.baseline)} (${ratio(r).toFixed(2)}×)`);
		}
		for (const [k, v] of Object.entries({ ...events, ...Object.fromEntries(Object.entries(memory).map(([k, v]) => [`peak RSS, ${k} (MB)`, v])) })) log(`${k}: ${v}`);
		if (PROFILE) log(`CPU profile in ${PROFILE_DIR}; summarise it with: node dist/bench/profile-summary.js <file>`);
		return;
	}
	const report = markdown(rows, memory, events);
	fs.writeFileSync(path.join(PROJECT_ROOT, "bench/results.md"), report);
	await chart(rows, path.join(PROJECT_ROOT, "bench/results.png"));
	console.log(report);
	if (errors > 0 || Object.entries(events).some(([k, v]) => k.includes("without a billing account") && v !== 0)) {
		console.error(`[bench] correctness check failed: ${errors} non-2xx answers`);
		process.exit(1);
	}
}

main().catch(err => {
	console.error(`[bench] ${(err as Error).stack ?? err}`);
	process.exit(1);
});
