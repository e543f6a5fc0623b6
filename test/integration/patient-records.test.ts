import { Client } from "pg";
import type { ServiceSchema } from "moleculer";
import PatientsService from "../../services/patients.service";
import BillingService from "../../services/billing.service";
import { databaseName, withDatabase } from "../../lib/infra/postgres";
import { type TestCluster, adminLogin, bearer, request, startCluster } from "../helpers/cluster";
import { createPatient, patientBody, patientFieldsOf } from "../helpers/fixtures";

/**
 * Issue 14 for the patient registry, through the gateway on a real
 * PostgreSQL: versions and If-Match (no lost updates).
 */

let cluster: TestCluster;
let db: Client;
let adminToken: string;

/** A request as an admin, with any further headers (If-Match, Idempotency-Key). */
const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
	request(cluster.baseUrl, method, path, body, { ...bearer(adminToken), ...headers });

beforeAll(async () => {
	cluster = await startCluster([PatientsService as ServiceSchema, BillingService as ServiceSchema]);
	adminToken = await adminLogin(cluster.baseUrl);
	db = new Client({ connectionString: withDatabase(process.env.DATABASE_URL!, databaseName("patients")) });
	await db.connect();
});

afterAll(async () => {
	await db?.end();
	await cluster?.stop();
});

/** The patient's outbox events, oldest first. */
async function outboxOf(patientId: string): Promise<string[]> {
	const { rows } = await db.query("SELECT event_type FROM outbox WHERE key = $1 ORDER BY id", [patientId]);
	return rows.map(r => r.event_type);
}

describe("versions and If-Match", () => {
	test("a patient is version 1 when registered, sent as its ETag by the 201, GET, PUT and PATCH", async () => {
		const created = await api("POST", "/patients", patientBody());
		expect(created.status).toBe(201);
		expect(created.body.version).toBe(1);
		expect(created.headers.get("etag")).toBe('W/"1"');
		const read = await api("GET", `/patients/${created.body.id}`);
		expect(read.headers.get("etag")).toBe('W/"1"');
		const patched = await api("PATCH", `/patients/${created.body.id}`, { address: "2 Road" });
		expect([patched.body.version, patched.headers.get("etag")]).toEqual([2, 'W/"2"']);
		const id = patched.body.id;
		const replaced = await api("PUT", `/patients/${id}`, { ...patientFieldsOf(patched.body), address: "3 Road" });
		expect([replaced.body.version, replaced.headers.get("etag")]).toEqual([3, 'W/"3"']);
		expect((await api("GET", `/patients/${id}`)).headers.get("etag")).toBe('W/"3"');
	});

	test("a change that changes nothing keeps the version", async () => {
		const patient = await createPatient(api);
		const same = await api("PATCH", `/patients/${patient.id}`, { address: patient.address }, { "if-match": 'W/"1"' });
		expect(same.status).toBe(200);
		expect(same.body).toEqual(patient);
		expect(same.headers.get("etag")).toBe('W/"1"');
	});

	test("two clients read the same patient: the first PATCH wins, the second (old ETag) is 412 and writes nothing", async () => {
		const patient = await createPatient(api);
		const [first, second] = await Promise.all([api("GET", `/patients/${patient.id}`), api("GET", `/patients/${patient.id}`)]);
		const etag = first.headers.get("etag")!;
		expect(second.headers.get("etag")).toBe(etag);

		const won = await api("PATCH", `/patients/${patient.id}`, { address: "First Client Street 1" }, { "if-match": etag });
		expect(won.status).toBe(200);
		expect(won.headers.get("etag")).toBe('W/"2"');
		const lost = await api("PATCH", `/patients/${patient.id}`, { address: "Second Client Street 2" }, { "if-match": second.headers.get("etag")! });
		expect(lost.status).toBe(412);
		expect(lost.body).toMatchObject({ name: "PreconditionFailedError", code: 412, type: "PRECONDITION_FAILED", data: { currentVersion: 2 } });

		const now = await api("GET", `/patients/${patient.id}`);
		expect(now.body).toEqual(won.body);
		// Registration and the one change that won: the refused one announced nothing.
		expect(await outboxOf(patient.id)).toEqual(["PATIENT_CREATED", "PATIENT_UPDATED"]);
	});

	test("PUT with a stale ETag is 412 and writes nothing; the current one, or a list holding it, is applied", async () => {
		const patient = await createPatient(api);
		await api("PATCH", `/patients/${patient.id}`, { address: "Moved Street 1" });
		const { id } = patient;
		const fields = patientFieldsOf(patient);
		const stale = await api("PUT", `/patients/${id}`, { ...fields, name: "Stale Writer" }, { "if-match": 'W/"1"' });
		expect(stale.status).toBe(412);
		expect((await api("GET", `/patients/${id}`)).body).toMatchObject({ name: patient.name, address: "Moved Street 1", version: 2 });
		const fresh = await api("PUT", `/patients/${id}`, { ...fields, name: "Fresh Writer" }, { "if-match": 'W/"1", "2"' });
		expect(fresh.status).toBe(200);
		expect(fresh.body).toMatchObject({ name: "Fresh Writer", version: 3 });
	});

	test("If-Match * or none applies to any version; a tag that is no version of ours is 412", async () => {
		const patient = await createPatient(api);
		expect((await api("PATCH", `/patients/${patient.id}`, { address: "Any 1" }, { "if-match": "*" })).status).toBe(200);
		expect((await api("PATCH", `/patients/${patient.id}`, { address: "Any 2" })).status).toBe(200);
		expect((await api("PATCH", `/patients/${patient.id}`, { address: "Any 3" }, { "if-match": '"abc"' })).status).toBe(412);
		expect((await api("GET", `/patients/${patient.id}`)).body).toMatchObject({ address: "Any 2", version: 3 });
	});

	test("a malformed If-Match is 400 naming the header, and writes nothing", async () => {
		const patient = await createPatient(api);
		const res = await api("PATCH", `/patients/${patient.id}`, { address: "Nowhere 0" }, { "if-match": "1" });
		expect(res.status).toBe(400);
		expect(res.body).toMatchObject({ code: 400, data: { header: "If-Match" } });
		expect((await api("GET", `/patients/${patient.id}`)).body).toEqual(patient);
	});

	test("DELETE with a stale ETag is 412 and the patient stays; with the current one it deletes", async () => {
		const patient = await createPatient(api);
		await api("PATCH", `/patients/${patient.id}`, { address: "Moved Street 2" });
		const stale = await api("DELETE", `/patients/${patient.id}`, undefined, { "if-match": 'W/"1"' });
		expect(stale.status).toBe(412);
		expect((await api("GET", `/patients/${patient.id}`)).status).toBe(200);
		expect((await api("DELETE", `/patients/${patient.id}`, undefined, { "if-match": 'W/"2"' })).status).toBe(204);
		expect((await api("GET", `/patients/${patient.id}`)).status).toBe(404);
		expect(await outboxOf(patient.id)).toEqual(["PATIENT_CREATED", "PATIENT_UPDATED", "PATIENT_DELETED"]);
	});

	test("an unknown patient is 404 whatever the If-Match", async () => {
		const missing = "00000000-0000-4000-8000-000000000000";
		expect((await api("PATCH", `/patients/${missing}`, { address: "X 1" }, { "if-match": 'W/"1"' })).status).toBe(404);
		expect((await api("DELETE", `/patients/${missing}`, undefined, { "if-match": 'W/"1"' })).status).toBe(404);
	});
});
