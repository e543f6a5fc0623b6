import type { Client } from "pg";
import { duplicateCandidates, duplicateSearchSettings } from "../../services/patients/duplicate-queries";
import { DUPLICATE_WEIGHTS, MIN_DUPLICATE_SCORE, NAME_SIMILARITY_FLOOR } from "../../services/patients/duplicates";

/**
 * For the duplicate search's benchmark and its test of the plan: many
 * patients straight into a patients database (what the API would take minutes
 * to register), some registered twice as a desk would, on a table big enough
 * for the planner to choose as it would in a clinic; and the plan of the search.
 */

const FIRST = ["Amira", "Ben", "Chen", "Dana", "Elif", "Farah", "Goran", "Hana", "Ivan", "Jonas", "Kemal", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Samir", "Tara", "Uma", "Victor",
	"Maria", "Mark", "Martin", "Anna", "John", "Joan", "Sara", "Sean", "Laura", "Luis", "Emma", "Emil", "Olga", "Oscar", "Ines", "Igor", "Yara", "Yusuf"];
const SYLLABLES = ["ka", "lo", "mi", "ra", "to", "ne", "sa", "vi", "du", "pe", "jo", "li", "ma", "ro", "ti", "na", "se", "vo", "de", "pa",
	"ber", "kov", "son", "sch", "ett", "ang", "wic", "mur", "hal", "dri"];

/** The condition that picks the patients `loadSyntheticPatients` registered a second time. */
export const REGISTERED_TWICE = "mrn LIKE '9%' AND mrn::int % 100 = 0";

/**
 * `count` patients (MRNs 9…), then one in a hundred of them again (MRNs 8…):
 * every other one with two letters of the name swapped and the same birth
 * date, the rest with the same name, the phone written another way and a
 * second email; then ANALYZE. Names come from 40 first names and 27,000
 * three-syllable surnames, birth dates from 90 years; four in five have a
 * phone. The same every time (a fixed seed).
 */
export async function loadSyntheticPatients(db: Client, count: number): Promise<void> {
	await db.query("SELECT setseed(0.14)");
	await db.query(
		`INSERT INTO patients (id, mrn, name, email, address, date_of_birth, register_date, phone)
		 SELECT gen_random_uuid(), '9' || lpad(i::text, 7, '0'), first || ' ' || last,
		        lower(first || '.' || last) || i || '@example.org', i || ' Fixture Road',
		        DATE '1930-01-01' + floor(random() * 33000)::int, DATE '2010-01-01' + i % 5000,
		        CASE WHEN i % 5 <> 1 THEN '+44 7' || lpad(floor(random() * 1e9)::bigint::text, 9, '0') END
		 FROM (SELECT i, ($1::text[])[1 + floor(random() * array_length($1, 1))::int] AS first,
		              initcap(($2::text[])[1 + floor(random() * 30)::int] || ($2::text[])[1 + floor(random() * 30)::int] || ($2::text[])[1 + floor(random() * 30)::int]) AS last
		       FROM generate_series(1, $3::int) AS i) AS g`,
		[FIRST, SYLLABLES, count]
	);
	await db.query(
		`INSERT INTO patients (id, mrn, name, email, address, date_of_birth, register_date, phone)
		 SELECT gen_random_uuid(), '8' || lpad(n::text, 7, '0'),
		        CASE WHEN n % 2 = 0 THEN left(name, length(name) - 3) || substr(name, length(name) - 1, 1) || substr(name, length(name) - 2, 1) || right(name, 1) ELSE name END,
		        'again' || n || '@example.net', address,
		        CASE WHEN n % 2 = 0 THEN date_of_birth ELSE date_of_birth + 400 END, register_date,
		        CASE WHEN n % 2 = 0 THEN NULL ELSE replace(phone, ' ', '-') END
		 FROM (SELECT row_number() OVER () AS n, * FROM patients WHERE ${REGISTERED_TWICE}) AS originals`
	);
	await db.query("ANALYZE patients");
}

/**
 * The plan of the duplicate search for patient `id`, as the pool would run it:
 * under its setting, prepared, and planned blind to the values, as a prepared
 * statement may settle on after five runs (`generic`); `analyze` runs it.
 */
export async function explainDuplicateSearch(db: Client, id: string, { generic = true, analyze = false } = {}): Promise<string[]> {
	const statement = duplicateCandidates({ id, weights: DUPLICATE_WEIGHTS, nameFloor: NAME_SIMILARITY_FLOOR, minScore: MIN_DUPLICATE_SCORE, limit: 10 });
	const settings = duplicateSearchSettings(MIN_DUPLICATE_SCORE / DUPLICATE_WEIGHTS.name);
	await db.query("BEGIN");
	try {
		if (generic) await db.query("SET LOCAL plan_cache_mode = force_generic_plan");
		await db.query(settings.text, settings.values);
		await db.query(`PREPARE duplicate_search AS ${statement.text}`);
		// EXPLAIN takes no bound values: they go in as literals.
		const values = statement.values.map(v => db.escapeLiteral(String(v))).join(", ");
		const { rows } = await db.query(`EXPLAIN (COSTS OFF${analyze ? ", ANALYZE, TIMING OFF" : ""}) EXECUTE duplicate_search(${values})`);
		return rows.map(r => r["QUERY PLAN"] as string);
	} finally {
		await db.query("ROLLBACK");
		await db.query("DEALLOCATE duplicate_search");
	}
}
