import crypto from "node:crypto";
import { Client } from "pg";
import type { ServiceSchema } from "moleculer";
import PatientsService from "../../services/patients.service";
import BillingService from "../../services/billing.service";
import { databaseName, withDatabase } from "../../lib/infra/postgres";
import { type TestCluster, adminLogin, bearer, createUser, request, startCluster } from "../helpers/cluster";
import { createPatient, patientBody, patientFieldsOf } from "../helpers/fixtures";
import { eventRecorder } from "../helpers/service-broker";
import { eventually } from "../helpers/node-process";
import { decodePatientEvent } from "../../lib/domain/patient-events";

/**
 * Issue 14 for the patient registry, through the gateway on a real
 * PostgreSQL: versions and If-Match (no lost updates), Idempotency-Key on
 * registration (safe retries), each patient's history, and merging a
 * duplicate into its survivor.
 */

let cluster: TestCluster;
let db: Client;
let adminToken: string;
const { schema: recorder, events } = eventRecorder("patient.*");

/** A request as an admin, with any further headers (If-Match, Idempotency-Key). */
const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
	request(cluster.baseUrl, method, path, body, { ...bearer(adminToken), ...headers });

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

/** The patient's outbox events, oldest first. */
async function outboxOf(patientId: string): Promise<string[]> {
	const { rows } = await db.query("SELECT event_type FROM outbox WHERE key = $1 ORDER BY id", [patientId]);
	return rows.map(r => r.event_type);
}

/** The audit records of `patientId` for `action`, once there are `count`. */
const audited = (patientId: string, action: string, count: number) =>
	eventually(async () => {
		const trail = await api("GET", `/audit?patientId=${patientId}&pageSize=100`);
		const rows = trail.body.rows.filter((r: { action: string }) => r.action === action);
		return rows.length >= count ? rows : undefined;
	}, 15_000, `${count} audit record(s) of ${action}`);

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

describe("Idempotency-Key on POST /patients", () => {
	const key = () => `registration-${crypto.randomUUID()}`;

	test("a registration retried with its key gets the same 201, and there is one patient, one event, one billing account", async () => {
		const body = patientBody();
		const headers = { "idempotency-key": key() };
		const first = await api("POST", "/patients", body, headers);
		expect(first.status).toBe(201);
		const retried = await api("POST", "/patients", body, headers);
		expect(retried.status).toBe(201);
		expect(retried.body).toEqual(first.body);
		expect(retried.headers.get("location")).toBe(first.headers.get("location"));
		expect(retried.headers.get("etag")).toBe('W/"1"');

		const { rows } = await db.query("SELECT id FROM patients WHERE lower(email) = lower($1)", [body.email]);
		expect(rows).toEqual([{ id: first.body.id }]);
		expect(await outboxOf(first.body.id)).toEqual(["PATIENT_CREATED"]);
		expect(events.filter(e => e.payload.id === first.body.id).map(e => e.name)).toEqual(["patient.created"]);
		// Billing has read the one event too (over the service broker here), and still holds one account.
		await eventually(async () => ((await db.query("SELECT 1 FROM outbox WHERE key = $1 AND sent_at IS NOT NULL", [first.body.id])).rowCount ? true : undefined));
		const accounts = await api("GET", `/billing/accounts?patientId=${first.body.id}`);
		expect(accounts.body.rows.map((a: { id: string }) => a.id)).toEqual([first.body.billingAccountId]);
	});

	test("the first answer is repeated even after the patient changed", async () => {
		const body = patientBody();
		const headers = { "idempotency-key": key() };
		const first = await api("POST", "/patients", body, headers);
		await api("PATCH", `/patients/${first.body.id}`, { address: "Changed Since 1" });
		const retried = await api("POST", "/patients", body, headers);
		expect([retried.status, retried.headers.get("etag")]).toEqual([201, 'W/"1"']);
		expect(retried.body).toEqual(first.body);
	});

	test("the same key with another body is 422 naming the header, and registers nothing", async () => {
		const headers = { "idempotency-key": key() };
		const first = await api("POST", "/patients", patientBody(), headers);
		const other = patientBody();
		const res = await api("POST", "/patients", other, headers);
		expect(res.status).toBe(422);
		expect(res.body).toMatchObject({ name: "IdempotencyKeyReusedError", code: 422, type: "IDEMPOTENCY_KEY_REUSED", data: { field: "Idempotency-Key" } });
		expect((await db.query("SELECT 1 FROM patients WHERE lower(email) = lower($1)", [other.email])).rowCount).toBe(0);
		expect(await outboxOf(first.body.id)).toEqual(["PATIENT_CREATED"]);
	});

	test("two attempts with one key at once register one patient and both get its 201", async () => {
		const body = patientBody();
		const headers = { "idempotency-key": key() };
		const answers = await Promise.all([api("POST", "/patients", body, headers), api("POST", "/patients", body, headers), api("POST", "/patients", body, headers)]);
		expect(answers.map(a => a.status)).toEqual([201, 201, 201]);
		expect(new Set(answers.map(a => a.body.id)).size).toBe(1);
		const { rows } = await db.query("SELECT id FROM patients WHERE lower(email) = lower($1)", [body.email]);
		expect(rows).toHaveLength(1);
		expect(await outboxOf(rows[0].id)).toEqual(["PATIENT_CREATED"]);
	});

	test("a registration that failed leaves its key unused", async () => {
		const taken = await createPatient(api);
		const headers = { "idempotency-key": key() };
		expect((await api("POST", "/patients", patientBody({ email: taken.email }), headers)).status).toBe(409);
		const body = patientBody();
		const registered = await api("POST", "/patients", body, headers);
		expect(registered.status).toBe(201);
		expect((await api("POST", "/patients", body, headers)).body).toEqual(registered.body);
	});

	test("keys are each caller's own: another caller's same key registers its own patient", async () => {
		const clerk = await createUser(cluster.baseUrl, adminToken, "RECEPTIONIST");
		const sharedKey = key();
		const mine = await api("POST", "/patients", patientBody(), { "idempotency-key": sharedKey });
		const theirs = await request(cluster.baseUrl, "POST", "/patients", patientBody(), { ...bearer(clerk.token), "idempotency-key": sharedKey });
		expect([mine.status, theirs.status]).toEqual([201, 201]);
		expect(theirs.body.id).not.toBe(mine.body.id);
	});

	test("without a key a repeat is a new registration (409 for its email); a malformed key is 400", async () => {
		const body = patientBody();
		expect((await api("POST", "/patients", body)).status).toBe(201);
		expect((await api("POST", "/patients", body)).status).toBe(409);
		const res = await api("POST", "/patients", patientBody(), { "idempotency-key": "two words" });
		expect(res.status).toBe(400);
		expect(res.body).toMatchObject({ data: { header: "Idempotency-Key" } });
	});
});

describe("history", () => {
	test("every change is a version, newest first: who, when, what kind, and the whole record after it, deletion included", async () => {
		const clerk = await createUser(cluster.baseUrl, adminToken, "RECEPTIONIST");
		const asClerk = (method: string, path: string, body?: unknown) => request(cluster.baseUrl, method, path, body, bearer(clerk.token));
		const created = (await api("POST", "/patients", patientBody({ phone: "555-0199" }))).body;
		const patched = (await asClerk("PATCH", `/patients/${created.id}`, { address: "History Lane 2" })).body;
		// Changes nothing: no version.
		await asClerk("PATCH", `/patients/${created.id}`, { address: "History Lane 2" });
		const replaced = (await api("PUT", `/patients/${created.id}`, { ...patientFieldsOf(patched), name: "Renamed Patient", phone: undefined })).body;
		expect((await api("DELETE", `/patients/${created.id}`)).status).toBe(204);
		const adminId = (await api("GET", "/auth/me")).body.id;

		const history = await api("GET", `/patients/${created.id}/history`);
		expect(history.status).toBe(200);
		expect(history.body).toMatchObject({ total: 4, page: 1, pageSize: 20, totalPages: 1 });
		const [deleted, third, second, first] = history.body.rows;
		expect(history.body.rows.map((v: { version: number; kind: string; changedBy: string }) => [v.version, v.kind, v.changedBy])).toEqual([
			[4, "deleted", adminId],
			[3, "updated", adminId],
			[2, "updated", clerk.id],
			[1, "created", adminId]
		]);
		// The registration's record is the patient as registered (its billing account came after).
		expect(first.record).toEqual({ ...created, billingAccountId: null, deletedAt: null, mergedInto: null });
		expect(second.record).toEqual({ ...patched, billingAccountId: expect.anything(), deletedAt: null, mergedInto: null });
		expect(third.record).toEqual({ ...replaced, deletedAt: null, mergedInto: null });
		expect(third.record.phone).toBeNull();
		expect(deleted.record).toMatchObject({ ...replaced, version: 4, updatedAt: expect.any(String), deletedAt: deleted.record.updatedAt });
		for (const v of history.body.rows) expect(v.changedAt).toBe(v.record.updatedAt);
		expect(Date.parse(deleted.changedAt)).toBeGreaterThanOrEqual(Date.parse(third.changedAt));

		// One version, and the history of a deleted patient stays readable.
		const one = await api("GET", `/patients/${created.id}/history/2`);
		expect(one.status).toBe(200);
		expect(one.body).toEqual(second);
	});

	test("pages like every list; an unknown patient or version is 404, a malformed version 422", async () => {
		const patient = await createPatient(api);
		for (const address of ["Page 1", "Page 2", "Page 3", "Page 4"]) await api("PATCH", `/patients/${patient.id}`, { address });
		const page = await api("GET", `/patients/${patient.id}/history?page=2&pageSize=2`);
		expect(page.body).toMatchObject({ total: 5, page: 2, pageSize: 2, totalPages: 3 });
		expect(page.body.rows.map((v: { version: number }) => v.version)).toEqual([3, 2]);
		expect((await api("GET", `/patients/${patient.id}/history?page=9`)).body).toMatchObject({ rows: [], total: 5 });

		expect((await api("GET", "/patients/00000000-0000-4000-8000-000000000000/history")).status).toBe(404);
		expect((await api("GET", "/patients/not-a-uuid/history")).status).toBe(404);
		expect((await api("GET", `/patients/${patient.id}/history/6`)).status).toBe(404);
		const malformed = await api("GET", `/patients/${patient.id}/history/first`);
		expect(malformed.status).toBe(422);
		expect(malformed.body.data.map((e: { field: string }) => e.field)).toEqual(["version"]);
		expect((await api("GET", `/patients/${patient.id}/history?pageSize=101`)).status).toBe(422);
	});

	test("a version is written with its change, or not at all: a refused change adds none", async () => {
		const patient = await createPatient(api);
		const taken = await createPatient(api);
		expect((await api("PATCH", `/patients/${patient.id}`, { email: taken.email })).status).toBe(409);
		expect((await api("PATCH", `/patients/${patient.id}`, { address: "Stale 1" }, { "if-match": 'W/"7"' })).status).toBe(412);
		expect((await api("GET", `/patients/${patient.id}/history`)).body.total).toBe(1);
	});

	test("is for patient readers, and each read is in the audit trail", async () => {
		const patient = await createPatient(api);
		const viewer = await createUser(cluster.baseUrl, adminToken, "VIEWER");
		const doctor = await createUser(cluster.baseUrl, adminToken, "DOCTOR");
		expect((await request(cluster.baseUrl, "GET", `/patients/${patient.id}/history`, undefined, bearer(viewer.token))).status).toBe(403);
		expect((await request(cluster.baseUrl, "GET", `/patients/${patient.id}/history/1`, undefined, bearer(viewer.token))).status).toBe(403);
		expect((await request(cluster.baseUrl, "GET", `/patients/${patient.id}/history`, undefined, bearer(doctor.token))).status).toBe(200);
		expect((await request(cluster.baseUrl, "GET", `/patients/${patient.id}/history/1`, undefined, bearer(doctor.token))).status).toBe(200);

		const reads = await audited(patient.id, "patients.history", 2);
		expect(reads).toEqual(expect.arrayContaining([
			expect.objectContaining({ userId: doctor.id, outcome: "success", status: 200, resource: "patient" }),
			expect.objectContaining({ userId: viewer.id, outcome: "denied", status: 403 })
		]));
		const versionReads = await audited(patient.id, "patients.historyVersion", 2);
		expect(versionReads).toEqual(expect.arrayContaining([expect.objectContaining({ userId: doctor.id, outcome: "success" })]));
	});
});

describe("POST /patients/:id/merge", () => {
	/** The PATIENT_MERGED events in the outbox for `patientId`, decoded. */
	async function mergedEvents(patientId: string) {
		const { rows } = await db.query("SELECT key, payload FROM outbox WHERE key = $1 AND event_type = 'PATIENT_MERGED' ORDER BY id", [patientId]);
		return rows.map(row => ({ key: row.key, ...decodePatientEvent(row.payload) }));
	}

	test("retires the duplicate into the survivor: the survivor and its ETag, one PATIENT_MERGED, a 'merged' version, patient.merged", async () => {
		const duplicate = await createPatient(api, { name: "Jon Smith" });
		const survivor = await createPatient(api, { name: "John Smith" });
		const res = await api("POST", `/patients/${duplicate.id}/merge`, { into: survivor.id });
		expect(res.status).toBe(200);
		expect(res.headers.get("etag")).toBe('W/"1"');
		expect(res.body).toEqual({ ...survivor, merged: { id: duplicate.id, mrn: duplicate.mrn, version: 2, mergedAt: expect.any(String) } });

		const [event, ...more] = await mergedEvents(duplicate.id);
		expect(more).toEqual([]);
		expect(event).toMatchObject({ key: duplicate.id, eventType: "PATIENT_MERGED", patientId: duplicate.id, mergedInto: survivor.id, name: "Jon Smith", email: duplicate.email });
		expect(events.filter(e => e.name === "patient.merged" && e.payload.id === duplicate.id).map(e => e.payload)).toEqual([
			expect.objectContaining({ id: duplicate.id, mergedInto: survivor.id, version: 2 })
		]);

		const history = (await api("GET", `/patients/${duplicate.id}/history`)).body;
		expect(history.rows[0]).toMatchObject({ version: 2, kind: "merged", changedBy: (await api("GET", "/auth/me")).body.id });
		expect(history.rows[0].record).toMatchObject({ id: duplicate.id, mergedInto: survivor.id, deletedAt: res.body.merged.mergedAt });

		// The survivor is untouched; the duplicate leaves lists and searches, and frees its email.
		expect((await api("GET", `/patients/${survivor.id}`)).body).toEqual(survivor);
		expect((await api("GET", `/patients?search=${duplicate.mrn}`)).body.total).toBe(0);
		expect((await api("POST", "/patients", patientBody({ email: duplicate.email }))).status).toBe(201);
	});

	test("a read of the merged patient is 301 to the survivor, its body naming it; a client that follows lands there", async () => {
		const duplicate = await createPatient(api);
		const survivor = await createPatient(api);
		await api("POST", `/patients/${duplicate.id}/merge`, { into: survivor.id });
		const moved = await fetch(`${cluster.baseUrl}/patients/${duplicate.id}`, { headers: bearer(adminToken), redirect: "manual" });
		expect(moved.status).toBe(301);
		expect(moved.headers.get("location")).toBe(`/patients/${survivor.id}`);
		expect(await moved.json()).toEqual({ id: duplicate.id, mergedInto: survivor.id });
		const followed = await api("GET", `/patients/${duplicate.id}`);
		expect([followed.status, followed.body]).toEqual([200, survivor]);
	});

	test("changes to the merged patient are 409 naming the survivor; its history still reads", async () => {
		const duplicate = await createPatient(api);
		const survivor = await createPatient(api);
		await api("POST", `/patients/${duplicate.id}/merge`, { into: survivor.id });
		for (const [method, body] of [["PUT", patientBody()], ["PATCH", { address: "Ghost Road 1" }], ["DELETE", undefined]] as const) {
			const res = await api(method, `/patients/${duplicate.id}`, body);
			expect([method, res.status, res.body.data]).toEqual([method, 409, { mergedInto: survivor.id }]);
		}
		expect((await api("GET", `/patients/${duplicate.id}/history/1`)).body.record).toMatchObject({ id: duplicate.id, deletedAt: null });
		expect((await api("GET", `/patients/${duplicate.id}/history`)).body.total).toBe(2);
	});

	test("repeating the same merge answers the same and writes nothing more", async () => {
		const duplicate = await createPatient(api);
		const survivor = await createPatient(api);
		const first = await api("POST", `/patients/${duplicate.id}/merge`, { into: survivor.id });
		const again = await api("POST", `/patients/${duplicate.id}/merge`, { into: survivor.id });
		expect([again.status, again.headers.get("etag")]).toEqual([200, first.headers.get("etag")]);
		expect(again.body).toEqual(first.body);
		expect(await mergedEvents(duplicate.id)).toHaveLength(1);
		expect((await api("GET", `/patients/${duplicate.id}/history`)).body.total).toBe(2);
		expect(events.filter(e => e.name === "patient.merged" && e.payload.id === duplicate.id)).toHaveLength(1);
	});

	test("is refused, writing nothing: into itself or a survivor retired (409), a patient merged elsewhere (409), an unknown survivor (422), an unknown or deleted patient (404)", async () => {
		const [duplicate, survivor, other, gone, mergedAway] = await Promise.all([1, 2, 3, 4, 5].map(() => createPatient(api)));
		await api("DELETE", `/patients/${gone.id}`);
		await api("POST", `/patients/${mergedAway.id}/merge`, { into: other.id });

		const itself = await api("POST", `/patients/${duplicate.id}/merge`, { into: duplicate.id });
		expect([itself.status, itself.body.data]).toEqual([409, { field: "into" }]);
		const intoMerged = await api("POST", `/patients/${duplicate.id}/merge`, { into: mergedAway.id });
		expect([intoMerged.status, intoMerged.body.data]).toEqual([409, { field: "into", mergedInto: other.id }]);
		expect((await api("POST", `/patients/${duplicate.id}/merge`, { into: gone.id })).status).toBe(409);
		const unknown = await api("POST", `/patients/${duplicate.id}/merge`, { into: "00000000-0000-4000-8000-000000000000" });
		expect(unknown.status).toBe(422);
		expect(unknown.body.data.map((e: { field: string }) => e.field)).toEqual(["into"]);
		for (const body of [{}, { into: "not-a-uuid" }, { into: survivor.id, also: 1 }]) expect((await api("POST", `/patients/${duplicate.id}/merge`, body)).status).toBe(422);
		expect((await api("POST", "/patients/00000000-0000-4000-8000-000000000000/merge", { into: survivor.id })).status).toBe(404);
		expect((await api("POST", `/patients/${gone.id}/merge`, { into: survivor.id })).status).toBe(404);
		// Nothing of that was written: the duplicate is still live at version 1, with no merge announced.
		expect((await api("GET", `/patients/${duplicate.id}`)).body).toEqual(duplicate);
		expect(await mergedEvents(duplicate.id)).toEqual([]);

		// Once merged, a merge of it elsewhere is 409 naming where it went.
		await api("POST", `/patients/${duplicate.id}/merge`, { into: survivor.id });
		const elsewhere = await api("POST", `/patients/${duplicate.id}/merge`, { into: other.id });
		expect([elsewhere.status, elsewhere.body.data]).toEqual([409, { mergedInto: survivor.id }]);
	});

	test("two merges of a pair, each way, at once: one wins, the other is 409", async () => {
		const a = await createPatient(api);
		const b = await createPatient(api);
		const answers = await Promise.all([api("POST", `/patients/${a.id}/merge`, { into: b.id }), api("POST", `/patients/${b.id}/merge`, { into: a.id })]);
		expect(answers.map(r => r.status).sort()).toEqual([200, 409]);
		const { rows } = await db.query("SELECT count(*)::int AS n FROM patients WHERE id = ANY($1) AND merged_into IS NOT NULL", [[a.id, b.id]]);
		expect(rows[0].n).toBe(1);
	});

	test("is for admins only, and the merge is in the audit trail", async () => {
		const duplicate = await createPatient(api);
		const survivor = await createPatient(api);
		const clerk = await createUser(cluster.baseUrl, adminToken, "RECEPTIONIST");
		const refused = await request(cluster.baseUrl, "POST", `/patients/${duplicate.id}/merge`, { into: survivor.id }, bearer(clerk.token));
		expect(refused.status).toBe(403);
		expect((await api("POST", `/patients/${duplicate.id}/merge`, { into: survivor.id })).status).toBe(200);
		const trail = await audited(duplicate.id, "patients.merge", 2);
		expect(trail).toEqual(expect.arrayContaining([
			expect.objectContaining({ userId: clerk.id, outcome: "denied", status: 403, resource: "patient" }),
			expect.objectContaining({ role: "ADMIN", outcome: "success", status: 200, resource: "patient" })
		]));
	});
});
