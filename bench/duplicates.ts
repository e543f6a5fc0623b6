import crypto from "node:crypto";
import { Client } from "pg";
import { patientMigrations } from "../migrations/patients";
import { Database } from "../lib/infra/database";
import { migrate } from "../lib/infra/migrations";
import { withDatabase } from "../lib/infra/postgres";
import { duplicateCandidates, duplicateSearchSettings } from "../services/patients/duplicate-queries";
import { DUPLICATE_WEIGHTS, MIN_DUPLICATE_SCORE, NAME_SIMILARITY_FLOOR, findDuplicates } from "../services/patients/duplicates";

/**
 * `npm run bench:duplicates [-- --patients=100000 --lookups=500]`: how fast
 * `GET /patients/:id/duplicates` finds candidates among many patients. It
 * loads a throwaway patients database (every migration, then the patients
 * straight into the table, some with a planted duplicate: a typo'd name with
 * the same birth date, or the same name and phone with a second email), then
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

const FIRST = ["Amira", "Ben", "Chen", "Dana", "Elif", "Farah", "Goran", "Hana", "Ivan", "Jonas", "Kemal", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Samir", "Tara", "Uma", "Victor",
	"Maria", "Mark", "Martin", "Anna", "John", "Joan", "Sara", "Sean", "Laura", "Luis", "Emma", "Emil", "Olga", "Oscar", "Ines", "Igor", "Yara", "Yusuf"];
const SYLLABLES = ["ka", "lo", "mi", "ra", "to", "ne", "sa", "vi", "du", "pe", "jo", "li", "ma", "ro", "ti", "na", "se", "vo", "de", "pa",
	"ber", "kov", "son", "sch", "ett", "ang", "wic", "mur", "hal", "dri"];

const log = (line: string) => console.log(`[bench:duplicates] ${line}`);

async function load(db: Client): Promise<void> {
	await db.query("SELECT setseed(0.14)");
	// Names from 40 first names and 27,000 three-syllable surnames; birth dates over 90 years; four in five with a phone.
	await db.query(
		`INSERT INTO patients (id, mrn, name, email, address, date_of_birth, register_date, phone)
		 SELECT gen_random_uuid(), '9' || lpad(i::text, 7, '0'), first || ' ' || last,
		        lower(first || '.' || last) || i || '@example.org', i || ' Fixture Road',
		        DATE '1930-01-01' + floor(random() * 33000)::int, DATE '2010-01-01' + i % 5000,
		        CASE WHEN i % 5 <> 0 THEN '+44 7' || lpad(floor(random() * 1e9)::bigint::text, 9, '0') END
		 FROM (SELECT i, ($1::text[])[1 + floor(random() * array_length($1, 1))::int] AS first,
		              initcap(($2::text[])[1 + floor(random() * 30)::int] || ($2::text[])[1 + floor(random() * 30)::int] || ($2::text[])[1 + floor(random() * 30)::int]) AS last
		       FROM generate_series(1, $3::int) AS i) AS g`,
		[FIRST, SYLLABLES, PATIENTS]
	);
	// One in a hundred registered again: every other one with two letters of the name swapped and the same birth
	// date, the rest with the same name and phone, written another way, and a second email.
	await db.query(
		`INSERT INTO patients (id, mrn, name, email, address, date_of_birth, register_date, phone)
		 SELECT gen_random_uuid(), '8' || lpad(n::text, 7, '0'),
		        CASE WHEN n % 2 = 0 THEN left(name, length(name) - 3) || substr(name, length(name) - 1, 1) || substr(name, length(name) - 2, 1) || right(name, 1) ELSE name END,
		        'again' || n || '@example.net', address,
		        CASE WHEN n % 2 = 0 THEN date_of_birth ELSE date_of_birth + 400 END, register_date,
		        CASE WHEN n % 2 = 0 THEN NULL ELSE replace(phone, ' ', '-') END
		 FROM (SELECT row_number() OVER () AS n, * FROM patients WHERE mrn::int % 100 = 0) AS originals`
	);
	await db.query("ANALYZE patients");
}

function percentile(sorted: number[], p: number): number {
	return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

async function time(ids: string[], warmup: number, lookup: (id: string) => Promise<unknown>): Promise<{ p50: number; p99: number; mean: number }> {
	for (const id of ids.slice(0, warmup)) await lookup(id);
	const ms: number[] = [];
	for (const id of ids.slice(warmup)) {
		const start = process.hrtime.bigint();
		await lookup(id);
		ms.push(Number(process.hrtime.bigint() - start) / 1e6);
	}
	ms.sort((a, b) => a - b);
	return { p50: percentile(ms, 50), p99: percentile(ms, 99), mean: ms.reduce((a, b) => a + b, 0) / ms.length };
}

/** The scans of a plan, in order: what each reason was found through. */
async function planShape(db: Client, id: string, generic: boolean): Promise<string[]> {
	await db.query("BEGIN");
	try {
		// The pool runs a named prepared statement: after five runs PostgreSQL may keep a generic plan, blind to the values.
		if (generic) await db.query("SET LOCAL plan_cache_mode = force_generic_plan");
		const threshold = duplicateSearchSettings(MIN_DUPLICATE_SCORE / DUPLICATE_WEIGHTS.name);
		await db.query(threshold.text, threshold.values);
		const statement = duplicateCandidates({ id, weights: DUPLICATE_WEIGHTS, nameFloor: NAME_SIMILARITY_FLOOR, minScore: MIN_DUPLICATE_SCORE, limit: 10 });
		await db.query(`PREPARE duplicates AS ${statement.text}`);
		// EXPLAIN takes no bound parameters: the values go in as literals.
		const { rows } = await db.query(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE duplicates(${statement.values.map(v => db.escapeLiteral(String(v))).join(", ")})`);
		return rows.map(r => r["QUERY PLAN"] as string).filter(line => /Scan/.test(line)).map(line => line.replace(/^[\s->]+/, "").replace(/\s*\(actual.*$/, ""));
	} finally {
		await db.query("ROLLBACK");
		await db.query("DEALLOCATE ALL");
	}
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
		await load(db);
		// Half of the lookups are for a patient registered again, half for any patient.
		const { rows } = await db.query<{ id: string }>(
			`SELECT id FROM ((SELECT id FROM patients WHERE mrn::int % 100 = 0 ORDER BY random() LIMIT $1)
			 UNION ALL (SELECT id FROM patients ORDER BY random() LIMIT $1)) AS picked ORDER BY random()`,
			[Math.ceil((LOOKUPS + WARMUP) / 2)]
		);
		const [{ n }] = (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM patients")).rows;
		log(`${n.toLocaleString("en")} patients; ${LOOKUPS} lookups, one at a time, after ${WARMUP} to warm up`);

		let found = 0;
		const indexed = await time(rows.map(r => r.id), WARMUP, async id => (found += (await findDuplicates(pool, id, 10)).candidates.length));
		log(`with the indexes: p50 ${indexed.p50.toFixed(2)} ms, p99 ${indexed.p99.toFixed(2)} ms, mean ${indexed.mean.toFixed(2)} ms; ${(found / rows.length).toFixed(2)} candidates a lookup`);
		for (const generic of [false, true]) log(`plan (${generic ? "generic" : "custom"}): ${(await planShape(db, rows[0].id, generic)).join("; ")}`);

		await db.query("ALTER DATABASE " + DATABASE + " SET enable_indexscan = off");
		await db.query("ALTER DATABASE " + DATABASE + " SET enable_bitmapscan = off");
		const scanning = new Database(url);
		try {
			const scanned = await time(rows.slice(0, 55).map(r => r.id), 5, id => findDuplicates(scanning, id, 10));
			log(`without them (enable_indexscan and enable_bitmapscan off, 50 lookups): p50 ${scanned.p50.toFixed(2)} ms, p99 ${scanned.p99.toFixed(2)} ms`);
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
