import type { ServiceSchema } from "moleculer";
import { Client } from "pg";
import AnalyticsService from "../../services/analytics.service";
import AppointmentsService from "../../services/appointments.service";
import BillingService from "../../services/billing.service";
import DoctorsService from "../../services/doctors.service";
import PatientsService from "../../services/patients.service";
import { config } from "../../lib/infra/config";
import { databaseName, withDatabase } from "../../lib/infra/postgres";
import { type TestCluster, adminLogin, bearer, request, startCluster } from "../helpers/cluster";
import { createDoctor, createPatient } from "../helpers/fixtures";
import { eventually } from "../helpers/node-process";
import { SERVER_WAIT_MS, type TestKafka, useKafka } from "../helpers/servers";

/**
 * Issue 14's merge from end to end, through the gateway and a real Kafka
 * broker: the patients service retires the duplicate and publishes
 * PATIENT_MERGED; appointments, billing and analytics each follow it from the
 * topic. Nothing here publishes an event by hand.
 */
let kafka: TestKafka;
let cluster: TestCluster;
let token: string;
let patientsDb: Client;

const api = (method: string, path: string, body?: unknown) => request(cluster.baseUrl, method, path, body, bearer(token));
const inDays = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);

beforeAll(async () => {
	kafka = await useKafka();
}, SERVER_WAIT_MS);

beforeAll(async () => {
	config.kafkaBrokers = [kafka.brokers];
	cluster = await startCluster([PatientsService, BillingService, DoctorsService, AppointmentsService, AnalyticsService] as ServiceSchema[]);
	token = await adminLogin(cluster.baseUrl);
	patientsDb = new Client({ connectionString: withDatabase(process.env.DATABASE_URL!, databaseName("patients")) });
	await patientsDb.connect();
}, 120_000);

afterAll(async () => {
	await patientsDb?.end();
	await cluster?.stop();
	kafka?.release();
});

/** The patient's billing account, once billing has opened it. */
const accountOf = (patientId: string) =>
	eventually(async () => {
		const { body } = await api("GET", `/billing/accounts?patientId=${patientId}`);
		return body.rows?.[0];
	}, 15_000, `the billing account of ${patientId}`);

async function book(doctorId: string, patientId: string, start: string): Promise<{ id: string }> {
	const res = await api("POST", "/appointments", { doctorId, patientId, start });
	expect(res.status).toBe(201);
	return res.body;
}

test("two duplicates with appointments and ledger entries become one survivor with all appointments, the exact balance, one event and the audit entry", async () => {
	const [duplicate, survivor] = [await createPatient(api), await createPatient(api)];
	const doctor = await createDoctor(api);
	const [duplicateAccount, survivorAccount] = [await accountOf(duplicate.id), await accountOf(survivor.id)];

	// Each has appointments; the duplicate's fulfilled visit raises a charge on its account.
	const day = inDays(21);
	const visits = [await book(doctor.id, duplicate.id, `${day}T09:00:00Z`), await book(doctor.id, duplicate.id, `${day}T10:00:00Z`), await book(doctor.id, survivor.id, `${day}T11:00:00Z`)];
	const post = (accountId: string, body: unknown) => api("POST", `/billing/accounts/${accountId}/transactions`, body);
	expect((await post(duplicateAccount.id, { type: "CHARGE", amount: 12_345 })).status).toBe(201);
	expect((await post(duplicateAccount.id, { type: "PAYMENT", amount: 2_000 })).status).toBe(201);
	expect((await post(survivorAccount.id, { type: "CHARGE", amount: 999 })).status).toBe(201);
	const balance = async (accountId: string) => (await api("GET", `/billing/accounts/${accountId}`)).body.balance as number;
	const before = { duplicate: await balance(duplicateAccount.id), survivor: await balance(survivorAccount.id) };
	expect(before).toEqual({ duplicate: 10_345, survivor: 999 });

	const merged = await api("POST", `/patients/${duplicate.id}/merge`, { into: survivor.id });
	expect(merged.status).toBe(200);
	expect(merged.body).toMatchObject({ id: survivor.id, merged: { id: duplicate.id } });
	// Repeatable without harm: the same answer, and nothing more is written.
	const again = await api("POST", `/patients/${duplicate.id}/merge`, { into: survivor.id });
	expect([again.status, again.body]).toEqual([200, merged.body]);

	// Appointments follow the survivor.
	const appointmentsOf = async (patientId: string) => (await api("GET", `/appointments?patientId=${patientId}&pageSize=100`)).body;
	await eventually(async () => ((await appointmentsOf(survivor.id)).total === 3 ? true : undefined), 30_000, "the appointments to move");
	expect((await appointmentsOf(survivor.id)).rows.map((a: { id: string }) => a.id).sort()).toEqual(visits.map(v => v.id).sort());
	expect((await appointmentsOf(duplicate.id)).total).toBe(0);

	// The ledger follows: the merged account is closed at zero, the survivor's holds both balances, exactly.
	await eventually(async () => ((await api("GET", `/billing/accounts/${duplicateAccount.id}`)).body.status === "CLOSED" ? true : undefined), 30_000, "the merged account to close");
	expect(await balance(duplicateAccount.id)).toBe(0);
	expect(await balance(survivorAccount.id)).toBe(before.duplicate + before.survivor);
	const transfers = async (accountId: string) =>
		(await api("GET", `/billing/accounts/${accountId}/transactions?pageSize=100`)).body.rows.filter((t: { type: string }) => t.type === "TRANSFER");
	expect((await transfers(duplicateAccount.id)).map((t: { amount: number }) => t.amount)).toEqual([-before.duplicate]);
	expect((await transfers(survivorAccount.id)).map((t: { amount: number }) => t.amount)).toEqual([before.duplicate]);

	// One event, however often the merge was asked for.
	const { rows: events } = await patientsDb.query("SELECT event_type FROM outbox WHERE key = $1 AND event_type = 'PATIENT_MERGED'", [duplicate.id]);
	expect(events).toHaveLength(1);

	// Analytics counted it.
	await eventually(async () => ((await api("GET", "/analytics/registrations")).body.merged >= 1 ? true : undefined), 30_000, "analytics to count the merge");

	// The merge is in the audit trail, under the duplicate, with who made it.
	await eventually(async () => {
		const { body } = await api("GET", `/audit?patientId=${duplicate.id}&pageSize=100`);
		return body.rows.some((r: { action: string; outcome: string; role: string }) => r.action === "patients.merge" && r.outcome === "success" && r.role === "ADMIN") ? true : undefined;
	}, 15_000, "the merge's audit record");

	// Reads of the duplicate point at the survivor; a new visit cannot be booked for it.
	const read = await fetch(`${cluster.baseUrl}/patients/${duplicate.id}`, { headers: bearer(token), redirect: "manual" });
	expect([read.status, read.headers.get("location")]).toEqual([301, `/patients/${survivor.id}`]);
	const late = await api("POST", "/appointments", { doctorId: doctor.id, patientId: duplicate.id, start: `${inDays(22)}T09:00:00Z` });
	expect(late.status).toBe(422);
	expect(late.body.data).toEqual([expect.objectContaining({ field: "patientId", message: expect.stringContaining(survivor.id) })]);
});
