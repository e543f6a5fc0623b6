import crypto from "node:crypto";
import type { ServiceSchema } from "moleculer";
import { Producer } from "@platformatic/kafka";
import { Client } from "pg";
import AppointmentsService from "../../services/appointments.service";
import BillingService from "../../services/billing.service";
import DoctorsService from "../../services/doctors.service";
import PatientsService from "../../services/patients.service";
import { config } from "../../lib/infra/config";
import { databaseName, withDatabase } from "../../lib/infra/postgres";
import { PatientEvent } from "../../proto/generated/patient_event";
import { type TestCluster, adminLogin, bearer, request, startCluster } from "../helpers/cluster";
import { createDoctor, createPatient, patientEvent } from "../helpers/fixtures";
import { eventually } from "../helpers/node-process";
import { SERVER_WAIT_MS, type TestKafka, useKafka } from "../helpers/servers";

/**
 * Appointments follow a merged patient, through a real Kafka broker: the
 * PATIENT_MERGED event is published here as the patients service's outbox
 * would (key: the merged patient), and the appointments service's consumer
 * moves the merged patient's appointments to the survivor.
 */
let kafka: TestKafka;
let cluster: TestCluster;
let token: string;
let appointmentsDb: Client;

const api = (method: string, path: string, body?: unknown) => request(cluster.baseUrl, method, path, body, bearer(token));
const inDays = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);

/** Publishes the event on the patient topic, keyed by its patient unless `key` says otherwise. */
async function publish(event: PatientEvent, key = event.patientId): Promise<void> {
	const producer = new Producer({ clientId: "test-merge-producer", bootstrapBrokers: [kafka.brokers] });
	try {
		await producer.send({ messages: [{ topic: config.patientTopic, key: Buffer.from(key), value: Buffer.from(PatientEvent.encode(event).finish()) }] });
	} finally {
		await producer.close();
	}
}

/** Waits until the appointments service has recorded the event as applied. */
const applied = (eventId: string) =>
	eventually(async () => {
		const { rows } = await appointmentsDb.query("SELECT 1 FROM processed_events WHERE event_id = $1", [eventId]);
		return rows.length ? true : undefined;
	}, 30_000, `event ${eventId} applied`);

async function book(doctorId: string, patientId: string, start: string) {
	const res = await api("POST", "/appointments", { doctorId, patientId, start });
	expect(res.status).toBe(201);
	return res.body;
}

const appointmentsOf = async (patientId: string) => (await api("GET", `/appointments?patientId=${patientId}&pageSize=100`)).body;

beforeAll(async () => {
	kafka = await useKafka();
}, SERVER_WAIT_MS);

beforeAll(async () => {
	config.kafkaBrokers = [kafka.brokers];
	cluster = await startCluster([PatientsService, BillingService, DoctorsService, AppointmentsService] as ServiceSchema[]);
	token = await adminLogin(cluster.baseUrl);
	appointmentsDb = new Client({ connectionString: withDatabase(process.env.DATABASE_URL!, databaseName("appointments")) });
	await appointmentsDb.connect();
}, 120_000);

afterAll(async () => {
	await appointmentsDb?.end();
	await cluster?.stop();
	kafka?.release();
});

test("PATIENT_MERGED moves every appointment to the survivor; an overlapping one is cancelled as booked twice; a redelivery changes nothing", async () => {
	const [merged, survivor] = [await createPatient(api), await createPatient(api)];
	const [d1, d2] = [await createDoctor(api), await createDoctor(api)];
	const day = inDays(20);
	const survivors = await book(d1.id, survivor.id, `${day}T09:00:00Z`);
	// The same visit booked twice, with another doctor: it overlaps the survivor's.
	const twice = await book(d2.id, merged.id, `${day}T09:15:00Z`);
	const later = await book(d1.id, merged.id, `${day}T11:00:00Z`);
	const done = await book(d2.id, merged.id, `${inDays(21)}T10:00:00Z`);
	await api("POST", `/appointments/${done.id}/arrive`);
	await api("POST", `/appointments/${done.id}/fulfil`);

	const merge = patientEvent("PATIENT_MERGED", { patientId: merged.id, mergedInto: survivor.id });
	await publish(merge);
	await applied(merge.eventId);

	expect((await appointmentsOf(merged.id)).total).toBe(0);
	const moved = await appointmentsOf(survivor.id);
	const byId = Object.fromEntries(moved.rows.map((a: { id: string }) => [a.id, a]));
	expect(moved.total).toBe(4);
	expect(byId[survivors.id]).toEqual(survivors);
	expect(byId[twice.id]).toMatchObject({ patientId: survivor.id, status: "cancelled", version: 2, cancellationReason: expect.stringMatching(/^Booked twice: .*merged into/) });
	expect(byId[later.id]).toMatchObject({ patientId: survivor.id, status: "booked", version: 2, start: later.start });
	expect(byId[done.id]).toMatchObject({ patientId: survivor.id, status: "fulfilled", version: 4 });

	const history = (await api("GET", `/appointments/${twice.id}/history`)).body;
	expect(history.patientId).toBe(survivor.id);
	expect(history.rows[0]).toMatchObject({ version: 2, status: "cancelled", patientId: survivor.id, changedBy: null, cause: "patient-merged" });
	expect((await api("GET", `/appointments/${later.id}/history`)).body.rows[0]).toMatchObject({
		version: 2,
		status: "booked",
		patientId: survivor.id,
		changedBy: null,
		cause: "patient-merged",
		reason: `Patient ${merged.id} was merged into ${survivor.id}`
	});

	// The same event again: applied once already, so even an appointment the merged record got since stays where it is.
	const since = await book(d1.id, merged.id, `${day}T15:00:00Z`);
	await publish(merge);
	// A merge of two patients without appointments, under the merged patient's key, is handled after the redelivery: once it is applied, so is that.
	const next = patientEvent("PATIENT_MERGED", { mergedInto: crypto.randomUUID() });
	await publish(next, merged.id);
	await applied(next.eventId);
	expect((await appointmentsOf(survivor.id)).rows).toEqual(moved.rows);
	expect((await appointmentsOf(merged.id)).rows.map((a: { id: string }) => a.id)).toEqual([since.id]);
	expect((await api("GET", `/appointments/${twice.id}/history`)).body.total).toBe(history.total);
});
