import { Client } from "pg";
import type { ServiceSchema } from "moleculer";
import PatientsService from "../../services/patients.service";
import BillingService from "../../services/billing.service";
import { databaseName, withDatabase } from "../../lib/infra/postgres";
import { isValidMrn } from "../../lib/domain/mrn";
import { todayIn } from "../../lib/domain/dates";
import { type PatientFilter, patientPage } from "../../services/patients/queries";
import { type TestCluster, adminLogin, bearer, request, startCluster } from "../helpers/cluster";
import { createPatient, patientBody } from "../helpers/fixtures";
import { eventRecorder } from "../helpers/service-broker";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let cluster: TestCluster;
let db: Client;
let adminToken: string;
const { schema: recorder, events } = eventRecorder("patient.*");

/** A request as an admin, who may do anything with patients. */
const api = (method: string, path: string, body?: unknown) => request(cluster.baseUrl, method, path, body, bearer(adminToken));

/** Asserts a 422 whose data names exactly these fields (in any order). */
function expectInvalid(res: { status: number; body: any }, fields: string[]) {
	expect(res.status).toBe(422);
	expect(res.body).toMatchObject({ name: "ValidationError", code: 422, type: "VALIDATION_ERROR" });
	const named = res.body.data.map((e: { field?: string; actual?: string; type: string }) =>
		e.type === "objectStrict" ? e.actual : e.field
	);
	expect([...new Set(named)].sort()).toEqual([...fields].sort());
	for (const field of fields) expect(res.body.message).toContain(field);
}

beforeAll(async () => {
	cluster = await startCluster([PatientsService as ServiceSchema, BillingService as ServiceSchema, recorder]);
	adminToken = await adminLogin(cluster.baseUrl);
	db = new Client({ connectionString: withDatabase(process.env.DATABASE_URL!, databaseName("patients")) });
	await db.connect();
});

afterAll(async () => {
	await db?.end();
	await cluster?.stop();
});

describe("POST /patients", () => {
	test("creates a patient: 201, Location, generated id and mrn, register date today", async () => {
		const input = patientBody({ phone: "+44 20 7946 0958", gender: "female" });
		const res = await api("POST", "/patients", input);
		expect(res.status).toBe(201);
		expect(res.body).toMatchObject({ ...input, registerDate: todayIn("UTC") });
		expect(res.body.id).toMatch(UUID);
		expect(isValidMrn(res.body.mrn)).toBe(true);
		expect(res.headers.get("location")).toBe(`/patients/${res.body.id}`);
		expect(Object.keys(res.body).sort()).toEqual(
			["id", "mrn", "name", "email", "address", "dateOfBirth", "registerDate", "phone", "gender", "billingAccountId", "version", "createdAt", "updatedAt"].sort()
		);
	});

	test("keeps a given register date and stores optional fields as null when absent", async () => {
		const patient = await createPatient(api, { registerDate: "2020-01-31" });
		expect(patient.registerDate).toBe("2020-01-31");
		expect(patient.phone).toBeNull();
		expect(patient.gender).toBeNull();
	});

	test("a duplicate email, in any case, is 409 naming the field", async () => {
		const first = await createPatient(api);
		const res = await api("POST", "/patients", patientBody({ email: first.email.toUpperCase() }));
		expect(res.status).toBe(409);
		expect(res.body).toMatchObject({ name: "ConflictError", code: 409, type: "CONFLICT", data: { field: "email" } });
	});

	test("two simultaneous creates with one email: one 201, one 409, never a 500", async () => {
		const input = patientBody();
		const results = await Promise.all([api("POST", "/patients", input), api("POST", "/patients", input)]);
		expect(results.map(r => r.status).sort()).toEqual([201, 409]);
	});

	test("concurrent creates get distinct, valid MRNs", async () => {
		const results = await Promise.all(Array.from({ length: 12 }, () => api("POST", "/patients", patientBody())));
		const mrns = results.map(r => r.body.mrn);
		expect(results.every(r => r.status === 201)).toBe(true);
		expect(new Set(mrns).size).toBe(12);
		expect(mrns.every(isValidMrn)).toBe(true);
	});

	test("malformed JSON is 400", async () => {
		const res = await api("POST", "/patients", '{"name": "Ada",');
		expect(res.status).toBe(400);
		expect(res.body).toMatchObject({ code: 400, type: "INVALID_JSON", message: expect.any(String) });
	});

	test("a body over the size limit is 413", async () => {
		const res = await api("POST", "/patients", patientBody({ address: "x".repeat(200 * 1024) }));
		expect(res.status).toBe(413);
		expect(res.body).toMatchObject({ code: 413, type: "PAYLOAD_TOO_LARGE" });
	});

	test("missing required fields are 422 naming each", async () => {
		expectInvalid(await api("POST", "/patients", {}), ["name", "email", "address", "dateOfBirth"]);
	});

	test("wrong types are 422 naming each field", async () => {
		const res = await api("POST", "/patients", patientBody({ name: 42, dateOfBirth: 19840615, gender: true, phone: ["1"] }));
		expectInvalid(res, ["name", "dateOfBirth", "gender", "phone"]);
	});

	test("unknown fields are 422 naming them", async () => {
		expectInvalid(await api("POST", "/patients", patientBody({ isAdmin: true })), ["isAdmin"]);
	});

	test("blank, too long and malformed values are 422", async () => {
		expectInvalid(await api("POST", "/patients", patientBody({ name: "   " })), ["name"]);
		expectInvalid(await api("POST", "/patients", patientBody({ name: "n".repeat(101) })), ["name"]);
		expectInvalid(await api("POST", "/patients", patientBody({ email: "not-an-email" })), ["email"]);
		expectInvalid(await api("POST", "/patients", patientBody({ gender: "robot" })), ["gender"]);
		expectInvalid(await api("POST", "/patients", patientBody({ phone: "call me maybe" })), ["phone"]);
	});

	test("impossible and future dates are 422", async () => {
		expectInvalid(await api("POST", "/patients", patientBody({ dateOfBirth: "2023-02-30" })), ["dateOfBirth"]);
		expectInvalid(await api("POST", "/patients", patientBody({ dateOfBirth: "1990-13-01" })), ["dateOfBirth"]);
		expectInvalid(await api("POST", "/patients", patientBody({ dateOfBirth: "15/06/1984" })), ["dateOfBirth"]);
		expectInvalid(await api("POST", "/patients", patientBody({ dateOfBirth: "2999-01-01" })), ["dateOfBirth"]);
		expectInvalid(await api("POST", "/patients", patientBody({ registerDate: "2021-04-31" })), ["registerDate"]);
		expect((await api("POST", "/patients", patientBody({ dateOfBirth: "2024-02-29" }))).status).toBe(201);
	});

	test("SQL-looking strings are stored verbatim and harm nothing", async () => {
		const name = "Robert'); DROP TABLE patients;--";
		const patient = await createPatient(api, { name, address: "1' OR '1'='1" });
		expect(patient.name).toBe(name);
		const fetched = await api("GET", `/patients/${patient.id}`);
		expect(fetched.body).toMatchObject({ name, address: "1' OR '1'='1" });
		const { rowCount } = await db.query("SELECT 1 FROM patients LIMIT 1");
		expect(rowCount).toBe(1);
	});

	test("unicode names round-trip and are searchable case-insensitively", async () => {
		const patient = await createPatient(api, { name: "Zoë Ñúñez-李小龙 😀" });
		expect(patient.name).toBe("Zoë Ñúñez-李小龙 😀");
		const res = await api("GET", `/patients?search=${encodeURIComponent("ZOË ÑÚ")}`);
		expect(res.body.rows.map((p: { id: string }) => p.id)).toContain(patient.id);
	});
});

describe("GET /patients/:id", () => {
	test("returns the patient", async () => {
		const patient = await createPatient(api);
		const res = await api("GET", `/patients/${patient.id}`);
		expect(res.status).toBe(200);
		expect(res.body).toEqual(patient);
	});

	test("an unknown id is 404", async () => {
		const res = await api("GET", "/patients/00000000-0000-4000-8000-000000000000");
		expect(res.status).toBe(404);
		expect(res.body).toMatchObject({ name: "NotFoundError", code: 404, type: "NOT_FOUND" });
	});

	test("a malformed id is 404, not 400 or 500", async () => {
		for (const id of ["123", "not-a-uuid", "'; DROP TABLE patients;--"]) {
			const res = await api("GET", `/patients/${encodeURIComponent(id)}`);
			expect(res.status).toBe(404);
		}
	});
});

describe("PUT /patients/:id", () => {
	test("replaces the record, clears omitted optional fields and keeps the register date", async () => {
		const patient = await createPatient(api, { phone: "555-0100", gender: "male", registerDate: "2019-05-05" });
		const replacement = patientBody({ name: "Replaced Name" });
		const res = await api("PUT", `/patients/${patient.id}`, replacement);
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ ...replacement, id: patient.id, mrn: patient.mrn, phone: null, gender: null, registerDate: "2019-05-05" });
		expect(Date.parse(res.body.updatedAt)).toBeGreaterThanOrEqual(Date.parse(patient.updatedAt));
	});

	test("changes the register date only when the body gives it", async () => {
		const patient = await createPatient(api);
		const res = await api("PUT", `/patients/${patient.id}`, patientBody({ registerDate: "2018-08-08" }));
		expect(res.body.registerDate).toBe("2018-08-08");
	});

	test("requires every required field (422) and refuses a taken email (409)", async () => {
		const a = await createPatient(api);
		const b = await createPatient(api);
		expectInvalid(await api("PUT", `/patients/${a.id}`, { name: "Only Name" }), ["email", "address", "dateOfBirth"]);
		const clash = await api("PUT", `/patients/${a.id}`, patientBody({ email: b.email }));
		expect(clash.status).toBe(409);
	});

	test("an unknown or malformed id is 404", async () => {
		expect((await api("PUT", "/patients/00000000-0000-4000-8000-000000000000", patientBody())).status).toBe(404);
		expect((await api("PUT", "/patients/nope", patientBody())).status).toBe(404);
	});
});

describe("PATCH /patients/:id", () => {
	test("updates only the given fields", async () => {
		const patient = await createPatient(api, { phone: "555-0101" });
		const res = await api("PATCH", `/patients/${patient.id}`, { address: "New Street 5" });
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ ...patient, address: "New Street 5", version: 2, updatedAt: expect.any(String) });
	});

	test("may clear an optional field with null", async () => {
		const patient = await createPatient(api, { phone: "555-0102" });
		const res = await api("PATCH", `/patients/${patient.id}`, { phone: null });
		expect(res.body.phone).toBeNull();
	});

	test("validates what it is given (422) and refuses a taken email (409)", async () => {
		const a = await createPatient(api);
		const b = await createPatient(api);
		expectInvalid(await api("PATCH", `/patients/${a.id}`, { dateOfBirth: "2023-02-30", colour: "red" }), ["dateOfBirth", "colour"]);
		expectInvalid(await api("PATCH", `/patients/${a.id}`, { name: null }), ["name"]);
		expect((await api("PATCH", `/patients/${a.id}`, { email: b.email.toUpperCase() })).status).toBe(409);
	});

	test("an unknown id is 404", async () => {
		expect((await api("PATCH", "/patients/00000000-0000-4000-8000-000000000000", { name: "X" })).status).toBe(404);
	});

	test("updatedAt moves when a field changes, and only then; a delete moves it too", async () => {
		const patient = await createPatient(api);
		const unchanged = await api("PATCH", `/patients/${patient.id}`, { address: patient.address, phone: null });
		expect(unchanged.status).toBe(200);
		expect(unchanged.body).toEqual(patient);
		const changed = await api("PATCH", `/patients/${patient.id}`, { address: "Elsewhere 2" });
		expect(Date.parse(changed.body.updatedAt)).toBeGreaterThan(Date.parse(patient.updatedAt));
		expect((await api("GET", `/patients/${patient.id}`)).body).toEqual(changed.body);
		await api("DELETE", `/patients/${patient.id}`);
		const { rows } = await db.query("SELECT updated_at > $2 AS moved FROM patients WHERE id = $1", [patient.id, changed.body.updatedAt]);
		expect(rows).toEqual([{ moved: true }]);
	});
});

describe("DELETE /patients/:id", () => {
	test("soft-deletes: 204, hidden from reads and lists, but the row stays", async () => {
		const patient = await createPatient(api);
		const res = await api("DELETE", `/patients/${patient.id}`);
		expect(res.status).toBe(204);
		expect(res.body).toBeUndefined();

		expect((await api("GET", `/patients/${patient.id}`)).status).toBe(404);
		expect((await api("PATCH", `/patients/${patient.id}`, { name: "Ghost" })).status).toBe(404);
		expect((await api("DELETE", `/patients/${patient.id}`)).status).toBe(404);
		const list = await api("GET", `/patients?search=${encodeURIComponent(patient.email)}`);
		expect(list.body.total).toBe(0);

		const { rows } = await db.query("SELECT name, deleted_at FROM patients WHERE id = $1", [patient.id]);
		expect(rows).toHaveLength(1);
		expect(rows[0].name).toBe(patient.name);
		expect(rows[0].deleted_at).toBeInstanceOf(Date);
	});

	test("a deleted patient's email can be registered again", async () => {
		const patient = await createPatient(api);
		await api("DELETE", `/patients/${patient.id}`);
		const again = await api("POST", "/patients", patientBody({ email: patient.email }));
		expect(again.status).toBe(201);
		expect(again.body.mrn).not.toBe(patient.mrn);
	});

	test("an unknown id is 404", async () => {
		expect((await api("DELETE", "/patients/00000000-0000-4000-8000-000000000000")).status).toBe(404);
	});
});

describe("GET /patients", () => {
	const tag = `Listtag${Date.now()}`;
	const created: any[] = [];

	beforeAll(async () => {
		const births = ["1950-01-01", "1960-06-15", "1970-12-31", "1980-03-03", "1990-09-09"];
		for (const [i, dateOfBirth] of births.entries()) {
			created.push(await createPatient(api, { name: `${tag} ${String.fromCharCode(69 - i)}`, dateOfBirth, registerDate: `2021-0${i + 1}-01` }));
		}
	});

	test("pages with totals", async () => {
		const res = await api("GET", `/patients?search=${tag}&pageSize=2&page=2&sort=registerDate`);
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ total: 5, page: 2, pageSize: 2, totalPages: 3 });
		expect(res.body.rows.map((p: any) => p.id)).toEqual([created[2].id, created[3].id]);
	});

	test("a page past the end is empty but still counts the matches, with a search and without", async () => {
		const searched = await api("GET", `/patients?search=${tag}&pageSize=2&page=9`);
		expect(searched.status).toBe(200);
		expect(searched.body).toMatchObject({ rows: [], total: 5, page: 9, totalPages: 3 });
		const all = await api("GET", "/patients?pageSize=100&page=100000");
		expect(all.status).toBe(200);
		expect(all.body.rows).toEqual([]);
		expect(all.body.total).toBeGreaterThanOrEqual(5);
	});

	test("defaults to page 1 of 20, newest register date first", async () => {
		const res = await api("GET", `/patients?search=${tag}`);
		expect(res.body).toMatchObject({ page: 1, pageSize: 20, total: 5, totalPages: 1 });
		expect(res.body.rows.map((p: any) => p.registerDate)).toEqual(["2021-05-01", "2021-04-01", "2021-03-01", "2021-02-01", "2021-01-01"]);
	});

	test("sorts by name, either way", async () => {
		const asc = await api("GET", `/patients?search=${tag}&sort=name`);
		expect(asc.body.rows.map((p: any) => p.name.slice(-1))).toEqual(["A", "B", "C", "D", "E"]);
		const desc = await api("GET", `/patients?search=${tag}&sort=-name`);
		expect(desc.body.rows.map((p: any) => p.name.slice(-1))).toEqual(["E", "D", "C", "B", "A"]);
	});

	test("search matches a case-insensitive name prefix, an exact email, or an exact mrn", async () => {
		const byPrefix = await api("GET", `/patients?search=${tag.toLowerCase()}`);
		expect(byPrefix.body.total).toBe(5);
		const byEmail = await api("GET", `/patients?search=${encodeURIComponent(created[1].email.toUpperCase())}`);
		expect(byEmail.body.rows.map((p: any) => p.id)).toEqual([created[1].id]);
		const byMrn = await api("GET", `/patients?search=${created[3].mrn}`);
		expect(byMrn.body.rows.map((p: any) => p.id)).toEqual([created[3].id]);
		const infix = await api("GET", `/patients?search=${tag.slice(3)}`);
		expect(infix.body.total).toBe(0);
	});

	test("LIKE wildcards in a search are literal", async () => {
		const res = await api("GET", `/patients?search=${encodeURIComponent("%")}`);
		expect(res.status).toBe(200);
		expect(res.body.total).toBe(0);
		const underscore = await api("GET", `/patients?search=${encodeURIComponent("_")}`);
		expect(underscore.body.total).toBe(0);
	});

	test("filters by a birth date range, inclusive", async () => {
		const res = await api("GET", `/patients?search=${tag}&bornFrom=1960-06-15&bornTo=1980-03-03&sort=dateOfBirth`);
		expect(res.body.rows.map((p: any) => p.dateOfBirth)).toEqual(["1960-06-15", "1970-12-31", "1980-03-03"]);
	});

	test("bad query parameters are 422 naming each", async () => {
		expectInvalid(await api("GET", "/patients?pageSize=101"), ["pageSize"]);
		expectInvalid(await api("GET", "/patients?page=0"), ["page"]);
		expectInvalid(await api("GET", "/patients?page=abc"), ["page"]);
		expectInvalid(await api("GET", "/patients?sort=password"), ["sort"]);
		expectInvalid(await api("GET", "/patients?bornFrom=2023-02-30"), ["bornFrom"]);
		expectInvalid(await api("GET", "/patients?limit=5"), ["limit"]);
	});

	test("indexes back the search, the birth date range and every sort", async () => {
		// Enough rows that the planner prefers an index to a scan whenever one fits.
		await db.query(`
			INSERT INTO patients (id, mrn, name, email, address, date_of_birth, register_date)
			SELECT gen_random_uuid(), (90000000 + i)::text, 'Bulk ' || i, 'bulk' || i || '@example.org', 'Addr',
			       DATE '1940-01-01' + (i % 25000), DATE '2000-01-01' + (i % 9000)
			FROM generate_series(1, 20000) AS i`);
		await db.query("ANALYZE patients");
		const plan = async (sql: string) => (await db.query(`EXPLAIN ${sql}`)).rows.map(r => r["QUERY PLAN"]).join("\n");
		const live = "SELECT * FROM patients WHERE deleted_at IS NULL";

		expect(await plan(`${live} AND lower(name) LIKE 'bulk 123%'`)).toContain("patients_name_prefix_idx");
		expect(await plan(`${live} AND lower(email) = 'bulk77@example.org'`)).toContain("patients_email_key");
		expect(await plan(`${live} AND mrn = '90000077'`)).toContain("patients_mrn_key");
		expect(await plan(`${live} AND date_of_birth BETWEEN '1960-01-01' AND '1960-02-01'`)).toContain("patients_date_of_birth_idx");
		expect(await plan(`${live} ORDER BY lower(name), id LIMIT 20`)).toContain("patients_name_idx");
		expect(await plan(`${live} ORDER BY register_date DESC, id DESC LIMIT 20`)).toContain("patients_register_date_idx");
		expect(await plan(`${live} ORDER BY date_of_birth, id LIMIT 20`)).toContain("patients_date_of_birth_idx");
		expect(await plan(`${live} ORDER BY created_at DESC, id DESC LIMIT 20`)).toContain("patients_created_at_idx");
		expect(await plan(`${live} ORDER BY mrn LIMIT 20`)).toContain("patients_mrn_key");

		// The list's own statements: a search finds its matches through the indexes before it sorts them, rather than
		// walking the sort order's index in hope of meeting matches early; an unfiltered page walks that index.
		const statementPlan = async (filter: Partial<PatientFilter>) => {
			const { text, values } = patientPage({ sort: "-registerDate", page: 1, pageSize: 20, ...filter });
			return (await db.query(`EXPLAIN ${text}`, values)).rows.map(r => r["QUERY PLAN"]).join("\n");
		};
		const searched = await statementPlan({ search: "bulk 12" });
		expect(searched).toContain("patients_name_prefix_idx");
		expect(searched).not.toContain("patients_register_date_idx");
		expect(await statementPlan({})).toContain("patients_register_date_idx");
	});
});

describe("gateway", () => {
	test("an unknown route is 404 in the common error shape", async () => {
		const res = await api("GET", "/nowhere");
		expect(res.status).toBe(404);
		expect(Object.keys(res.body).sort()).toEqual(expect.arrayContaining(["code", "message", "name", "type"]));
	});

	test("answers CORS preflights", async () => {
		const res = await fetch(`${cluster.baseUrl}/patients`, {
			method: "OPTIONS",
			headers: { Origin: "https://clinic.example", "Access-Control-Request-Method": "POST" }
		});
		expect(res.status).toBe(204);
		expect(res.headers.get("access-control-allow-origin")).toBe("*");
		expect(res.headers.get("access-control-allow-methods")).toContain("PATCH");
	});
});

describe("broker events", () => {
	test("patient.created, patient.updated and patient.deleted carry the patient", async () => {
		const patient = await createPatient(api);
		await api("PATCH", `/patients/${patient.id}`, { address: "Moved 1" });
		await api("DELETE", `/patients/${patient.id}`);
		const mine = events.filter(e => e.payload.id === patient.id);
		expect(mine.map(e => e.name)).toEqual(["patient.created", "patient.updated", "patient.deleted"]);
		expect(mine[0].payload).toEqual(patient);
		expect(mine[1].payload.address).toBe("Moved 1");
		expect(mine[2].payload.id).toBe(patient.id);
	});
});

describe("health", () => {
	test("/health answers without a token", async () => {
		const res = await request(cluster.baseUrl, "GET", "/health");
		expect(res.status).toBe(200);
		expect(res.body).toMatchObject({ status: "ok" });
	});

	test("/ready reports each dependency, and is 503 while a service it waits for is missing", async () => {
		const res = await request(cluster.baseUrl, "GET", "/ready");
		// This suite runs patients, billing, auth and audit, but no doctors, appointments or analytics.
		expect(res.status).toBe(503);
		expect(res.body.checks).toMatchObject({
			transporter: "up",
			"patients.database": "up",
			"patients.grpc:billing": "up",
			"billing.database": "up",
			"auth.database": "up",
			"audit.database": "up",
			// Routed: its paths answer. A service the gateway has no routes to yet keeps the gateway unready.
			"patients.routes": "up",
			doctors: expect.stringMatching(/^down/),
			"doctors.routes": expect.stringMatching(/^down/)
		});
	});
});

describe("metrics", () => {
	test("the node's Prometheus endpoint reports requests per action and the outbox depth", async () => {
		const reporter = (cluster.broker.metrics as any).reporter[0];
		const port = reporter.server.address().port;
		await api("GET", "/patients?pageSize=1");
		const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
		expect(text).toMatch(/moleculer_request_total\{[^}]*action="patients\.list"[^}]*\} \d+/);
		expect(text).toMatch(/moleculer_request_time[^\n]*action="patients\.list"/);
		expect(text).toMatch(/medsync_outbox_pending(\{[^}]*\})? \d+/);
	});
});
