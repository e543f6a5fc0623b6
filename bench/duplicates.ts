import crypto from "node:crypto";
import fs from "node:fs";
import { Client } from "pg";
import { patientMigrations } from "../migrations/patients";
import { Database } from "../lib/infra/database";
import { migrate } from "../lib/infra/migrations";
import { withDatabase } from "../lib/infra/postgres";
import { REGISTERED_TWICE, explainDuplicateSearch, loadSyntheticPatients } from "../lib/tooling/duplicate-search";
import { findDuplicates } from "../services/patients/duplicates";

/**
 * `npm run bench:duplicates [-- --patients=100000 --lookups=500]`: how fast
 * `GET /patients/:id/duplicates` finds candidates among many patients. It
 * loads a throwaway patients database (every migration, then the patients of
 * `loadSyntheticPatients`, one in a hundred registered twice), then
 * times the work the action does (`findDuplicates`: its transaction and
 * statements, on a pool of its own) for patients picked at random, one after
 * another, and the same with PostgreSQL forbidden its indexes, for contrast.
 * Prints each one's latency and the plan's shape. The gateway's own cost is
 * what `npm run bench` measures for `GET /patients/:id`.
 */

const arg = (name: string, fallback: number) => Number(process.argv.find(a => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback);
const PATIENTS = arg("patients", 100_000);
const LOOKUPS = arg("lookups", 500);
const WARMUP = 50;
const SERVER = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const DATABASE = `medsync_bench_duplicates_${crypto.randomBytes(3).toString("hex")}`;

const log = (line: string) => console.log(`[bench:duplicates] ${line}`);

function percentile(sorted: number[], p: number): number {
	return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

/** CPU seconds the other backends on this database have used (PostgreSQL on this machine): the pool's. */
async function backendCpuSeconds(db: Client): Promise<number> {
	const { rows } = await db.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
	let seconds = 0;
	for (const { pid } of rows) {
		try {
			// Fields after the command name, which may hold spaces: utime and stime are the 12th and 13th, in ticks.
			const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
			seconds += (Number(fields[11]) + Number(fields[12])) / 100;
		} catch {
			// PostgreSQL on another host, or a backend that exited.
		}
	}
	return seconds;
}

interface Timing {
	p50: number;
	p99: number;
	mean: number;
	/** PostgreSQL's CPU time per lookup, in ms: what the latencies mean on a machine that other work shares. */
	cpu: number;
}

async function time(db: Client, ids: string[], warmup: number, lookup: (id: string) => Promise<unknown>): Promise<Timing> {
	for (const id of ids.slice(0, warmup)) await lookup(id);
	const measured = ids.slice(warmup);
	const cpuBefore = await backendCpuSeconds(db);
	const ms: number[] = [];
	for (const id of measured) {
		const start = process.hrtime.bigint();
		await lookup(id);
		ms.push(Number(process.hrtime.bigint() - start) / 1e6);
	}
	const cpu = ((await backendCpuSeconds(db)) - cpuBefore) * 1000 / measured.length;
	ms.sort((a, b) => a - b);
	return { p50: percentile(ms, 50), p99: percentile(ms, 99), mean: ms.reduce((a, b) => a + b, 0) / ms.length, cpu };
}

const summary = (t: Timing) => `p50 ${t.p50.toFixed(2)} ms, p99 ${t.p99.toFixed(2)} ms, mean ${t.mean.toFixed(2)} ms, PostgreSQL CPU ${t.cpu.toFixed(2)} ms a lookup`;

/** The scans of a plan, in order: what each reason was found through. */
async function planShape(db: Client, id: string, generic: boolean): Promise<string[]> {
	const plan = await explainDuplicateSearch(db, id, { generic, analyze: true });
	return plan.filter(line => /Scan/.test(line)).map(line => line.replace(/^[\s->]+/, "").replace(/\s*\(actual.*$/, ""));
}

async function main(): Promise<void> {
	const admin = new Client({ connectionString: SERVER });
	await admin.connect();
	await admin.query(`CREATE DATABASE ${DATABASE}`);
	const url = withDatabase(SERVER, DATABASE);
	const db = new Client({ connectionString: url });
	const pool = new Database(url);
	try {
		await migrate(url, patientMigrations);
		await db.connect();
		log(`loading ${PATIENTS.toLocaleString("en")} patients`);
		await loadSyntheticPatients(db, PATIENTS);
		// Half of the lookups are for a patient registered again, half for any patient.
		const { rows } = await db.query<{ id: string }>(
			`SELECT id FROM ((SELECT id FROM patients WHERE ${REGISTERED_TWICE} ORDER BY random() LIMIT $1)
			 UNION ALL (SELECT id FROM patients ORDER BY random() LIMIT $1)) AS picked ORDER BY random()`,
			[Math.ceil((LOOKUPS + WARMUP) / 2)]
		);
		const [{ n }] = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM patients")).rows;
		log(`${n.toLocaleString("en")} patients; ${LOOKUPS} lookups, one at a time, after ${WARMUP} to warm up`);

		let found = 0;
		const indexed = await time(db, rows.map(r => r.id), WARMUP, async id => (found += (await findDuplicates(pool, id, 10)).candidates.length));
		log(`with the indexes: ${summary(indexed)}; ${(found / rows.length).toFixed(2)} candidates a lookup`);
		for (const generic of [false, true]) log(`plan (${generic ? "generic" : "custom"}): ${(await planShape(db, rows[0].id, generic)).join("; ")}`);

		await db.query("ALTER DATABASE " + DATABASE + " SET enable_indexscan = off");
		await db.query("ALTER DATABASE " + DATABASE + " SET enable_bitmapscan = off");
		const scanning = new Database(url);
		try {
			const scanned = await time(db, rows.slice(0, 55).map(r => r.id), 5, id => findDuplicates(scanning, id, 10));
			log(`without them (enable_indexscan and enable_bitmapscan off, 50 lookups): ${summary(scanned)}`);
		} finally {
			await scanning.end();
		}
	} finally {
		await pool.end();
		await db.end().catch(() => {});
		await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
		await admin.end();
	}
}

main().catch(err => {
	console.error(err);
	process.exitCode = 1;
});
