import crypto from "node:crypto";
import path from "node:path";
import { Consumer, type Message, Producer } from "@platformatic/kafka";
import type { ServiceSchema } from "moleculer";
import { Client } from "pg";
import protobuf from "protobufjs";
import AnalyticsService from "../../services/analytics.service";
import BillingService from "../../services/billing.service";
import PatientsService from "../../services/patients.service";
import { config } from "../../lib/infra/config";
import { todayIn } from "../../lib/domain/dates";
import { databaseName, withDatabase } from "../../lib/infra/postgres";
import { dlqTopic } from "../../mixins/kafka.mixin";
import { PatientEvent } from "../../proto/generated/patient_event";
import { type TestCluster, adminLogin, bearer, request, startCluster } from "../helpers/cluster";
import { createPatient, patientBody } from "../helpers/fixtures";
import { eventually } from "../helpers/node-process";
import { SERVER_WAIT_MS, type TestKafka, useKafka } from "../helpers/servers";

/**
 * The patient event on a real Kafka broker: KAFKA_BROKERS, or one the run starts
 * with scripts/kafka.sh (test/helpers/servers.ts). Billing's gRPC address points
 * nowhere here, so every billing account in this suite comes from the Kafka event.
 */
let kafka: TestKafka;
let brokers: string[];
let cluster: TestCluster;
let token: string;
let patientsDb: Client;

const api = (method: string, path: string, body?: unknown) => request(cluster.baseUrl, method, path, body, bearer(token));

async function accountOf(patientId: string) {
	const res = await api("GET", `/billing/accounts?patientId=${patientId}`);
	return res.body.rows?.[0];
}

async function registrationsToday(): Promise<number> {
	const today = todayIn(config.clinicTimezone);
	const res = await api("GET", `/analytics/registrations?from=${today}&to=${today}`);
	return res.body.total;
}

/** Reads a topic from the start with a group of its own, until `until` says it has seen enough. */
async function readTopic(topic: string, until: (messages: Message<Buffer, Buffer, Buffer, Buffer>[]) => boolean, timeoutMs = 30_000) {
	const consumer = new Consumer({ groupId: `observer-${crypto.randomUUID()}`, clientId: "test-observer", bootstrapBrokers: brokers });
	const seen: Message<Buffer, Buffer, Buffer, Buffer>[] = [];
	const stream = await consumer.consume({ topics: [topic], mode: "earliest", autocommit: false });
	const timer = setTimeout(() => consumer.close(true, () => {}), timeoutMs);
	try {
		for await (const message of stream as AsyncIterable<Message<Buffer, Buffer, Buffer, Buffer>>) {
			seen.push(message);
			if (until(seen)) break;
		}
	} finally {
		clearTimeout(timer);
		await new Promise<void>(resolve => consumer.close(true, () => resolve()));
	}
	return seen;
}

async function produceRaw(value: Buffer, key: string) {
	const producer = new Producer({ clientId: "test-producer", bootstrapBrokers: brokers });
	try {
		await producer.send({ messages: [{ topic: config.patientTopic, key: Buffer.from(key), value }] });
	} finally {
		await producer.close();
	}
}

beforeAll(async () => {
	kafka = await useKafka();
	brokers = [kafka.brokers];
}, SERVER_WAIT_MS);

beforeAll(async () => {
	config.kafkaBrokers = brokers;
	config.billingGrpcUrl = "127.0.0.1:1";
	config.billingGrpcDeadlineMs = 100;
	cluster = await startCluster([PatientsService as ServiceSchema, BillingService as ServiceSchema, AnalyticsService as ServiceSchema]);
	token = await adminLogin(cluster.baseUrl);
	patientsDb = new Client({ connectionString: withDatabase(process.env.DATABASE_URL!, databaseName("patients")) });
	await patientsDb.connect();
}, 120_000);

afterAll(async () => {
	await patientsDb?.end();
	await cluster?.stop();
	kafka?.release();
});

describe("PATIENT_CREATED_EVENT on Kafka", () => {
	test("a created patient's event sits on the topic, keyed by patient id, and decodes with the .proto file", async () => {
		const patient = await createPatient(api);
		const messages = await readTopic(config.patientTopic, seen => seen.some(m => m.key.toString() === patient.id));
		const message = messages.find(m => m.key.toString() === patient.id)!;

		// protobufjs, straight from the .proto file, with the original's field names (keepCase).
		const root = new protobuf.Root().loadSync(path.resolve(__dirname, "../../proto/patient_event.proto"), { keepCase: true });
		const PatientEventType = root.lookupType("patient.events.PatientEvent");
		const decoded = PatientEventType.toObject(PatientEventType.decode(message.value)) as Record<string, string>;
		expect(decoded).toEqual({
			patientId: patient.id,
			name: patient.name,
			email: patient.email,
			event_type: "PATIENT_CREATED",
			event_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
			occurred_at: expect.any(String)
		});
		expect(Date.parse(decoded.occurred_at)).toBeGreaterThan(Date.now() - 60_000);
	});

	test("a merge's PATIENT_MERGED sits on the topic, keyed by the merged patient, naming the survivor in merged_into", async () => {
		const duplicate = await createPatient(api);
		const survivor = await createPatient(api);
		expect((await api("POST", `/patients/${duplicate.id}/merge`, { into: survivor.id })).status).toBe(200);
		const isMerge = (m: Message<Buffer, Buffer, Buffer, Buffer>) => m.key.toString() === duplicate.id && PatientEvent.decode(m.value).eventType === "PATIENT_MERGED";
		const message = (await readTopic(config.patientTopic, seen => seen.some(isMerge))).find(isMerge)!;

		const root = new protobuf.Root().loadSync(path.resolve(__dirname, "../../proto/patient_event.proto"), { keepCase: true });
		const PatientEventType = root.lookupType("patient.events.PatientEvent");
		expect(PatientEventType.toObject(PatientEventType.decode(message.value))).toMatchObject({
			patientId: duplicate.id,
			email: duplicate.email,
			event_type: "PATIENT_MERGED",
			merged_into: survivor.id
		});
		expect(Object.fromEntries([...message.headers].map(([k, v]) => [k.toString(), v.toString()]))).toMatchObject({ "event-type": "PATIENT_MERGED" });
	});

	test("billing opens the account from the event, and the patient learns its id; the log reports the latency", async () => {
		const latencies: number[] = [];
		for (let i = 0; i < 10; i++) {
			const patient = await createPatient(api);
			const committed = performance.now();
			expect(patient.billingAccountId).toBeNull(); // gRPC is unreachable in this suite
			await eventually(async () => ((await accountOf(patient.id)) ? true : undefined), 30_000, "the account");
			latencies.push(performance.now() - committed);
			const refreshed = await eventually(async () => {
				const res = await api("GET", `/patients/${patient.id}`);
				return res.body.billingAccountId ? res.body : undefined;
			}, 10_000, "billingAccountId");
			expect(refreshed.billingAccountId).toBe((await accountOf(patient.id)).id);
		}
		latencies.sort((a, b) => a - b);
		console.log(
			`Commit → billing account via Kafka over ${latencies.length} creates: p50 ${latencies[Math.floor(latencies.length / 2)].toFixed(0)} ms, max ${latencies[latencies.length - 1].toFixed(0)} ms (includes the test's polling)`
		);
	});

	test("analytics counts registrations per day", async () => {
		const before = await registrationsToday();
		await createPatient(api);
		await createPatient(api);
		await eventually(async () => ((await registrationsToday()) === before + 2 ? true : undefined), 30_000, "the count");
		const res = await api("GET", "/analytics/registrations");
		expect(res.body.days).toHaveLength(30);
		expect(res.body.days.at(-1)).toEqual({ date: todayIn(config.clinicTimezone), count: before + 2 });
	});

	test("the same event delivered twice is counted once", async () => {
		const patient = await createPatient(api);
		await eventually(async () => ((await accountOf(patient.id)) ? true : undefined), 30_000, "the account");
		const counted = await registrationsToday();
		const { rows } = await patientsDb.query("SELECT payload FROM outbox WHERE key = $1 AND event_type = 'PATIENT_CREATED'", [patient.id]);
		await produceRaw(rows[0].payload, patient.id);
		await produceRaw(rows[0].payload, patient.id);
		// A later event, so we know the consumers are past the duplicates.
		const marker = await createPatient(api);
		await eventually(async () => ((await accountOf(marker.id)) ? true : undefined), 30_000, "the marker's account");
		await eventually(async () => ((await registrationsToday()) === counted + 1 ? true : undefined), 30_000, "the marker's count");
		expect((await api("GET", `/billing/accounts?patientId=${patient.id}`)).body.total).toBe(1);
	});

	test("a poison message goes to the dead-letter topic, and the consumers go on", async () => {
		const poisonKey = `poison-${crypto.randomUUID()}`;
		await produceRaw(Buffer.from("this is not a PatientEvent"), poisonKey);
		const after = await createPatient(api);
		await eventually(async () => ((await accountOf(after.id)) ? true : undefined), 30_000, "an account after the poison");

		const dead = await readTopic(dlqTopic(config.patientTopic), seen => seen.filter(m => m.key.toString() === poisonKey).length >= 2);
		const groups = dead
			.filter(m => m.key.toString() === poisonKey)
			.map(m => {
				const headers = Object.fromEntries([...m.headers].map(([k, v]) => [k.toString(), v.toString()]));
				expect(headers["x-error"]).toBeTruthy();
				expect(m.value.toString()).toBe("this is not a PatientEvent");
				return headers["x-consumer-group"];
			});
		expect(groups.sort()).toEqual([`${config.kafkaGroupPrefix}analytics`, `${config.kafkaGroupPrefix}billing`]);
	});

	test("a rolled-back create publishes nothing", async () => {
		const patient = await createPatient(api);
		const { rows: before } = await patientsDb.query("SELECT count(*)::int AS n FROM outbox");
		// The same email again: the insert fails and the transaction, event included, rolls back.
		const clash = await api("POST", "/patients", patientBody({ email: patient.email }));
		expect(clash.status).toBe(409);
		const { rows: after } = await patientsDb.query("SELECT count(*)::int AS n FROM outbox");
		expect(after[0].n).toBe(before[0].n);
	});
});

describe("metrics", () => {
	test("consumer lag is reported per group and topic", async () => {
		const port = (cluster.broker.metrics as any).reporter[0].server.address().port;
		const line = await eventually(async () => {
			const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
			return text.split("\n").find(l => l.startsWith("medsync_kafka_consumer_lag{") && l.includes(`group="${config.kafkaGroupPrefix}billing"`));
		}, 40_000, "the lag gauge");
		expect(line).toContain(`topic="${config.patientTopic}"`);
		expect(Number(line!.split(" ").at(-1))).toBeGreaterThanOrEqual(0);
	}, 60_000);
});

describe("with the broker down", () => {
	// Only a broker this run started may be stopped: a given one (KAFKA_BROKERS) may serve others.
	(process.env.KAFKA_TEST_BROKERS ? test.skip : test)(
		"creates still succeed; once the broker is back every event arrives, once per consumer group, in order per patient",
		async () => {
			const counted = await registrationsToday();
			const patients: { id: string }[] = [];
			// Once no other suite uses the broker (the stack's services would see the outage too).
			await kafka.alone(async broker => {
				await broker.stop();
				try {
					for (let i = 0; i < 3; i++) {
						const patient = await createPatient(api);
						// Two changes each, so order per patient can be checked.
						expect((await api("PATCH", `/patients/${patient.id}`, { address: `Step 1 of ${i}` })).status).toBe(200);
						expect((await api("PATCH", `/patients/${patient.id}`, { address: `Step 2 of ${i}` })).status).toBe(200);
						patients.push(patient);
					}
					const { rows } = await patientsDb.query("SELECT count(*)::int AS n FROM outbox WHERE sent_at IS NULL");
					expect(rows[0].n).toBeGreaterThanOrEqual(9);
				} finally {
					await broker.start();
				}
			});

			for (const patient of patients) {
				await eventually(async () => ((await accountOf(patient.id)) ? true : undefined), 90_000, "accounts after the outage");
			}
			await eventually(async () => ((await registrationsToday()) === counted + 3 ? true : undefined), 60_000, "counts after the outage");

			const ids = new Set(patients.map(p => p.id));
			const messages = await readTopic(config.patientTopic, seen => seen.filter(m => ids.has(m.key.toString())).length >= 9);
			for (const patient of patients) {
				const events = messages.filter(m => m.key.toString() === patient.id).map(m => PatientEvent.decode(m.value));
				expect(events.map(e => e.eventType)).toEqual(["PATIENT_CREATED", "PATIENT_UPDATED", "PATIENT_UPDATED"]);
				expect(new Set(events.map(e => e.eventId)).size).toBe(3);
			}
			// Counted once each, despite the consumers' reconnects.
			expect(await registrationsToday()).toBe(counted + 3);
			for (const patient of patients) expect((await api("GET", `/billing/accounts?patientId=${patient.id}`)).body.total).toBe(1);
		},
		// The outage itself, after as long as the other suites take to be done with the broker.
		SERVER_WAIT_MS + 240_000
	);
});
