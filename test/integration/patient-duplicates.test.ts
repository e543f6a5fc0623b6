import crypto from "node:crypto";
import { Client } from "pg";
import type { ServiceSchema } from "moleculer";
import PatientsService from "../../services/patients.service";
import BillingService from "../../services/billing.service";
import { patientMigrations } from "../../migrations/patients";
import { migrate } from "../../lib/infra/migrations";
import { databaseName, ensureDatabase, withDatabase } from "../../lib/infra/postgres";
import { Database } from "../../lib/infra/database";
import { REGISTERED_TWICE, explainDuplicateSearch, loadSyntheticPatients } from "../../lib/tooling/duplicate-search";
import { findDuplicates } from "../../services/patients/duplicates";
import { type TestCluster, type TestUser, adminLogin, bearer, createUser, request, startCluster } from "../helpers/cluster";
import { createPatient, uniqueEmail } from "../helpers/fixtures";
import { eventually } from "../helpers/node-process";

let cluster: TestCluster;
let db: Client;
let adminToken: string;
let viewer: TestUser;
let doctor: TestUser;

/** A request as an admin, who may do anything with patients. */
const api = (method: string, path: string, body?: unknown) => request(cluster.baseUrl, method, path, body, bearer(adminToken));

interface Candidate {
	patient: { id: string };
	score: number;
	reasons: { kind: string; weight: number; similarity?: number }[];
}

const candidateIds = (body: { candidates: Candidate[] }) => body.candidates.map(c => c.patient.id);

beforeAll(async () => {
	cluster = await startCluster([PatientsService as ServiceSchema, BillingService as ServiceSchema]);
	adminToken = await adminLogin(cluster.baseUrl);
	viewer = await createUser(cluster.baseUrl, adminToken, "VIEWER");
	doctor = await createUser(cluster.baseUrl, adminToken, "DOCTOR");
	db = new Client({ connectionString: withDatabase(process.env.DATABASE_URL!, databaseName("patients")) });
	await db.connect();
});

afterAll(async () => {
	await db?.end();
	await cluster?.stop();
});

describe("GET /patients/:id/duplicates", () => {
	test("a typo'd name with the same birth date is a candidate, with its reasons; a stranger born that day and a deleted copy are not", async () => {
		const original = await createPatient(api, { name: "Marguerite Okonkwo", dateOfBirth: "1961-03-09", phone: "+44 20 7946 0101" });
		const typo = await createPatient(api, { name: "Margeurite Okonkow", dateOfBirth: "1961-03-09" });
		const stranger = await createPatient(api, { name: "Bartholomew Quist", dateOfBirth: "1961-03-09" });
		const unrelated = await createPatient(api, { name: "Ingrid Solberg", dateOfBirth: "1977-12-01" });
		const deleted = await createPatient(api, { name: "Marguerite Okonkwo", dateOfBirth: "1961-03-09", phone: "+44 20 7946 0101" });
		expect((await api("DELETE", `/patients/${deleted.id}`)).status).toBe(204);

		const res = await api("GET", `/patients/${original.id}/duplicates`);
		expect(res.status).toBe(200);
		expect(res.body.patient).toBe(original.id);
		expect(candidateIds(res.body)).toEqual([typo.id]);
		const [candidate] = res.body.candidates as Candidate[];
		// The patient as GET /patients/:id gives it.
		expect(candidate.patient).toEqual((await api("GET", `/patients/${typo.id}`)).body);
		const [name, born] = candidate.reasons;
		expect(candidate.reasons.map(r => r.kind)).toEqual(["name", "dateOfBirth"]);
		expect(name.similarity).toBeGreaterThan(0.3);
		expect(name.similarity).toBeLessThan(1);
		expect(name.weight).toBeCloseTo(0.5 * name.similarity!, 3);
		expect(born.weight).toBe(0.2);
		expect(candidate.score).toBeCloseTo(name.weight + born.weight, 6);

		// Each way round; the stranger shares only the birth date (0.2), below the 0.4 a candidate needs.
		expect(candidateIds((await api("GET", `/patients/${typo.id}/duplicates`)).body)).toEqual([original.id]);
		expect(candidateIds((await api("GET", `/patients/${stranger.id}/duplicates`)).body)).toEqual([]);
		expect(candidateIds((await api("GET", `/patients/${unrelated.id}/duplicates`)).body)).toEqual([]);
	});

	test("a second email with the same phone, and the same mailbox written another way, are candidates, best first", async () => {
		const email = uniqueEmail("tobias.fenwick");
		const first = await createPatient(api, { name: "Tobias Fenwick-Hale", email, phone: "+44 20 7946 0202", dateOfBirth: "1990-11-30" });
		// Another email, the same number with other punctuation, another birth date.
		const secondEmail = await createPatient(api, { name: "Tobias Fenwick-Hale", phone: "+44 (20) 7946-0202", dateOfBirth: "1990-03-11" });
		// The same mailbox: another case and a +tag, which the unique email rule lets through.
		const [local, domain] = email.split("@");
		const tagged = await createPatient(api, { name: "TOBIAS FENWICK HALE", email: `${local.toUpperCase()}+clinic@${domain}`, dateOfBirth: "1990-11-30" });

		const res = await api("GET", `/patients/${first.id}/duplicates`);
		expect(res.status).toBe(200);
		expect(candidateIds(res.body)).toEqual([tagged.id, secondEmail.id]);
		const [byMailbox, byPhone] = res.body.candidates as Candidate[];
		// Case and punctuation aside, the same name: similarity 1.
		expect(byMailbox.reasons).toEqual([
			{ kind: "name", similarity: 1, weight: 0.5 },
			{ kind: "dateOfBirth", weight: 0.2 },
			{ kind: "email", weight: 0.15 }
		]);
		expect(byMailbox.score).toBe(0.85);
		expect(byPhone.reasons).toEqual([
			{ kind: "name", similarity: 1, weight: 0.5 },
			{ kind: "phone", weight: 0.15 }
		]);
		expect(byPhone.score).toBe(0.65);

		const best = await api("GET", `/patients/${first.id}/duplicates?limit=1`);
		expect(candidateIds(best.body)).toEqual([tagged.id]);
	});

	test("an unknown or malformed id is 404; a limit out of 1–50 or an unknown parameter is 422 naming it", async () => {
		const patient = await createPatient(api, { name: "Odalys Brennan", dateOfBirth: "1955-05-05" });
		expect((await api("GET", `/patients/${crypto.randomUUID()}/duplicates`)).status).toBe(404);
		expect((await api("GET", "/patients/not-a-patient/duplicates")).status).toBe(404);
		await api("DELETE", `/patients/${patient.id}`);
		expect((await api("GET", `/patients/${patient.id}/duplicates`)).status).toBe(404);

		const live = await createPatient(api, { name: "Odalys Brennan", dateOfBirth: "1955-05-05" });
		for (const query of ["limit=0", "limit=51", "limit=ten", "limit=1.5"]) {
			const res = await api("GET", `/patients/${live.id}/duplicates?${query}`);
			expect([query, res.status]).toEqual([query, 422]);
			expect(res.body.message).toContain("limit");
		}
		const strict = await api("GET", `/patients/${live.id}/duplicates?threshold=0.1`);
		expect(strict.status).toBe(422);
		expect(strict.body.message).toContain("threshold");
		expect((await api("GET", `/patients/${live.id}/duplicates?limit=50`)).status).toBe(200);
	});

	test("is for patient readers only, and every call is audited", async () => {
		const patient = await createPatient(api, { name: "Wilhelmina Achterberg", dateOfBirth: "1949-08-21" });
		const denied = await request(cluster.baseUrl, "GET", `/patients/${patient.id}/duplicates`, undefined, bearer(viewer.token));
		expect(denied.status).toBe(403);
		expect((await request(cluster.baseUrl, "GET", `/patients/${patient.id}/duplicates`, undefined, bearer(doctor.token))).status).toBe(200);
		const rows = await eventually(async () => {
			const trail = await api("GET", `/audit?patientId=${patient.id}`);
			const reads = trail.body.rows.filter((r: { action: string }) => r.action === "patients.duplicates");
			return reads.length >= 2 ? reads : undefined;
		}, 10_000, "the audit records of the duplicate search");
		expect(rows).toContainEqual(expect.objectContaining({ userId: doctor.id, role: "DOCTOR", patientId: patient.id, outcome: "success", status: 200 }));
		expect(rows).toContainEqual(expect.objectContaining({ userId: viewer.id, role: "VIEWER", patientId: patient.id, outcome: "denied", status: 403 }));
	});
});

/** A throwaway patients database with every migration applied, and a connection to it. */
async function throwawayPatientsDatabase(tag: string): Promise<{ url: string; client: Client }> {
	const server = process.env.DATABASE_URL!;
	const name = `${process.env.DATABASE_PREFIX}_${tag}_${crypto.randomBytes(3).toString("hex")}`;
	await ensureDatabase(server, name);
	const url = withDatabase(server, name);
	const client = new Client({ connectionString: url });
	await client.connect();
	return { url, client };
}

describe("the duplicate search on 10,000 patients", () => {
	let url: string;
	let client: Client;
	let pool: Database;

	beforeAll(async () => {
		({ url, client } = await throwawayPatientsDatabase("patients_many"));
		await migrate(url, patientMigrations);
		await loadSyntheticPatients(client, 10_000);
		pool = new Database(url);
	}, 60_000);

	afterAll(async () => {
		await pool?.end();
		await client?.end();
	});

	test("each reason is found through its own index, never by reading the table", async () => {
		const [{ id }] = (await client.query(`SELECT id FROM patients WHERE ${REGISTERED_TWICE} AND phone IS NOT NULL LIMIT 1`)).rows;
		const plan = (await explainDuplicateSearch(client, id)).join("\n");
		expect(plan).toMatch(/Bitmap Index Scan on patients_name_trgm_idx\n\s+Index Cond: \(\(name\)::text % \(\$\d+\)::text\)/);
		expect(plan).toMatch(/Index Scan using patients_date_of_birth_idx on patients[^\n]*\n\s+Index Cond: \(date_of_birth = \$\d+\)/);
		expect(plan).toMatch(/Index Scan using patients_phone_digits_idx on patients[^\n]*\n\s+Index Cond: \(phone_digits = \$\d+\)/);
		expect(plan).toMatch(/Index Scan using patients_email_mailbox_idx on patients[^\n]*\n\s+Index Cond: \(email_mailbox = \$\d+\)/);
		expect(plan).not.toMatch(/Seq Scan/);
	});

	test("finds each patient registered twice", async () => {
		// The second registration kept the first one's address, which no other patient has.
		const { rows } = await client.query(
			"SELECT original.id AS original, again.id AS again FROM patients again JOIN patients original ON original.address = again.address AND original.mrn LIKE '9%' WHERE again.mrn LIKE '8%'"
		);
		expect(rows.length).toBe(100);
		for (const { original, again } of rows) {
			const { candidates } = await findDuplicates(pool, original, 10);
			expect([original, candidates.map(c => c.patient.id)]).toEqual([original, expect.arrayContaining([again])]);
		}
	});
});

describe("patients migration 5", () => {
	test("normalises the phones and emails of patients registered before it", async () => {
		const { url, client: old } = await throwawayPatientsDatabase("patients_v5");
		try {
			await migrate(url, patientMigrations.filter(m => m.version < 5));
			// What the old schema took: any phone text, an email with spaces around it.
			await old.query(
				`INSERT INTO patients (id, mrn, name, email, address, date_of_birth, register_date, phone) VALUES
					(gen_random_uuid(), '10000008', 'A', ' Jane.Doe+Desk@Example.ORG ', 'x', '1980-01-01', '2020-01-01', '+44 (20) 7946-0101'),
					(gen_random_uuid(), '10000016', 'B', 'b@example.org', 'x', '1980-01-01', '2020-01-01', '--'),
					(gen_random_uuid(), '10000024', 'C', 'c@example.org', 'x', '1980-01-01', '2020-01-01', NULL)`
			);
			expect(await migrate(url, patientMigrations)).toEqual(patientMigrations.filter(m => m.version >= 5).map(m => m.version));
			const { rows } = await old.query("SELECT mrn, phone_digits, email_mailbox FROM patients ORDER BY mrn");
			expect(rows).toEqual([
				{ mrn: "10000008", phone_digits: "442079460101", email_mailbox: "jane.doe@example.org" },
				{ mrn: "10000016", phone_digits: null, email_mailbox: "b@example.org" },
				{ mrn: "10000024", phone_digits: null, email_mailbox: "c@example.org" }
			]);
		} finally {
			await old.end();
		}
	});
});
