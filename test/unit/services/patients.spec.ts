import crypto from "node:crypto";
import { type ServiceError, status } from "@grpc/grpc-js";
import type { Service, ServiceSchema } from "moleculer";
import { config } from "../../../lib/infra/config";
import { todayIn } from "../../../lib/domain/dates";
import { isValidMrn } from "../../../lib/domain/mrn";
import type { GrpcClientVars } from "../../../mixins/grpc-client.mixin";
import { type BillingRequest, type BillingResponse } from "../../../proto/generated/billing_service";
import { PatientEvent } from "../../../proto/generated/patient_event";
import PatientsService from "../../../services/patients.service";
import {
	type PatientRow,
	type RegistrationRow,
	insertPatientWithEvent,
	lockedPatientById,
	lockedPatientRecords,
	nextMrnSerial,
	registrationByKey,
	requeueFailingOutbox,
	requeueSentOutbox,
	setBillingAccount,
	softDeletePatientWithEvent,
	updatePatientWithEvent
} from "../../../services/patients/queries";
import { patientBody, patientRow } from "../../helpers/fixtures";
import { failure } from "../../helpers/expect";
import { createWithDatabase, declared, eventRecorder, expectDeclared, refusedFields, unitBroker } from "../../helpers/service-broker";
import { StubDatabase } from "../../helpers/stub-database";

/**
 * Registration on a broker: the patients service with its database a stub,
 * billing's gRPC client a stub, and a listener for its events. The service's
 * own start (the outbox relay, on a LISTEN connection of its own, and the
 * billing reconciler) is PostgreSQL's part, left out here: the integration
 * suites (patients.api.test.ts, kafka.test.ts) run it.
 */

const NO_EVENT = { eventId: "", topic: "", key: "", eventType: "", payload: new Uint8Array(), traceContext: null };
const UPDATE = updatePatientWithEvent(
	{ id: "", version: 0, name: "", email: "", address: "", dateOfBirth: "", registerDate: "", phone: null, gender: null },
	NO_EVENT,
	null,
	null
);
const SOFT_DELETE = softDeletePatientWithEvent("", NO_EVENT, null, null);
const INSERT = insertPatientWithEvent(
	{ id: "", mrn: "", name: "", email: "", address: "", dateOfBirth: "", registerDate: "", phone: null, gender: null },
	NO_EVENT,
	null,
	null
);
let insertFails: Error | undefined;
/** The registration a retry key already made, if any: the insert then writes no row, as ON CONFLICT DO NOTHING does. */
let registered: RegistrationRow | undefined;
/** The live patient a change or a delete locks. */
let current: PatientRow | undefined;
const db = new StubDatabase()
	.answer(nextMrnSerial, () => [{ serial: "1000041" }])
	.answer(INSERT, values => {
		if (insertFails) throw insertFails;
		if (registered && values[10]) return [];
		const [id, mrn, name, email, address, dateOfBirth, registerDate, phone, gender] = values as string[];
		const now = new Date();
		return [{ id, mrn, name, email, address, dateOfBirth, registerDate, phone, gender, billingAccountId: null, version: 1, createdAt: now, updatedAt: now } as PatientRow];
	})
	.answer(registrationByKey("", ""), () => (registered ? [registered] : []))
	.answer(lockedPatientById(""), () => (current ? [current] : []))
	// The If-Match guard is PostgreSQL's: here, the write finds no row whenever the version is not one If-Match allows.
	.answer(UPDATE, values => (values[8] && !(values[8] as number[]).includes(current!.version) ? [] : [{ ...current!, version: current!.version + 1 }]))
	.answer(SOFT_DELETE, values => (values[1] && !(values[1] as number[]).includes(current!.version) ? [] : [{ ...current!, version: current!.version + 1 }]));

/** What billing answers over gRPC: an account id, or a failure. */
let billingAnswer: (request: BillingRequest) => BillingResponse | ServiceError;
const billingAsked: BillingRequest[] = [];
const billing = {
	createBillingAccount(request: BillingRequest, _metadata: unknown, _options: unknown, callback: (err: ServiceError | null, response?: BillingResponse) => void) {
		billingAsked.push(request);
		const answer = billingAnswer(request);
		if ("code" in answer) callback(answer);
		else callback(null, answer);
	},
	close() {}
};

const { schema: recorder, events } = eventRecorder("patient.*");
const broker = unitBroker();
const service = createWithDatabase(broker, { ...(PatientsService as ServiceSchema), started() {}, stopped() {} }, db);
broker.createService(recorder);

beforeAll(async () => {
	await broker.start();
	const clients = (service as Service & GrpcClientVars).grpcClients;
	clients.billing.close();
	clients.billing = billing as never;
});
afterAll(() => broker.stop());
beforeEach(() => {
	events.length = 0;
	billingAsked.length = 0;
	insertFails = undefined;
	registered = undefined;
	current = undefined;
	billingAnswer = () => ({ accountId: "acc-1", status: "ACTIVE" });
});

const CALLER = { id: "7b0c9a52-4d55-4c1e-9d6a-1f0e2b3c4d5e", email: "clerk@test.medsync.local", role: "RECEPTIONIST", sessionId: "s-1" };

function register(body: Record<string, unknown>, meta: Record<string, unknown> = {}) {
	return { meta, answer: broker.call<any, object>("patients.create", body, { meta }) };
}


describe("patients.create", () => {
	test("writes the patient and its PATIENT_CREATED event in one statement, opens the billing account, answers 201 and announces patient.created", async () => {
		const body = patientBody({ gender: "female" });
		const sent = db.statements.length;
		const { meta, answer } = register({ ...body });
		const patient = await answer;

		expect(patient).toMatchObject({ ...body, registerDate: todayIn(config.clinicTimezone), phone: null, billingAccountId: "acc-1" });
		expect(isValidMrn(patient.mrn)).toBe(true);
		expect(meta).toMatchObject({ $statusCode: 201, $location: `/patients/${patient.id}` });

		const statements = db.statements.slice(sent);
		expect(statements.map(s => s.text)).toEqual([nextMrnSerial.text, INSERT.text, setBillingAccount("", "").text]);
		const [eventId, topic, key, eventType, payload, versionKind, author, , traceContext] = statements[1].values.slice(-9);
		expect({ topic, key, eventType }).toEqual({ topic: config.patientTopic, key: patient.id, eventType: "PATIENT_CREATED" });
		expect(PatientEvent.decode(payload as Buffer)).toMatchObject({ patientId: patient.id, name: body.name, email: body.email, eventType: "PATIENT_CREATED", eventId });
		// Its version 1, in the same statement; no caller here, so no author.
		expect([versionKind, author]).toEqual(["created", null]);
		// Tracing is off: the event carries no trace.
		expect(traceContext).toBeNull();
		expect(statements[2].values).toEqual(["acc-1", patient.id]);

		expect(billingAsked).toEqual([{ patientId: patient.id, name: body.name, email: body.email }]);
		expect(events).toEqual([{ name: "patient.created", payload: patient }]);
	});

	test("with billing away the patient is registered all the same, the account left to the reconciler", async () => {
		billingAnswer = () => Object.assign(new Error("billing is away"), { code: status.INTERNAL }) as ServiceError;
		const sent = db.statements.length;
		const patient = await register(patientBody()).answer;
		expect(patient.billingAccountId).toBeNull();
		expect(db.statements.slice(sent).map(s => s.text)).toEqual([nextMrnSerial.text, INSERT.text]);
		expect(events).toEqual([{ name: "patient.created", payload: patient }]);
	});

	test("a taken email is 409 naming the field; nothing is announced, billing is not asked", async () => {
		insertFails = Object.assign(new Error("duplicate key value violates unique constraint"), { code: "23505", constraint: "patients_email_key" });
		expect(await failure(register(patientBody()).answer)).toMatchObject({ code: 409, data: { field: "email" } });
		expect(events).toEqual([]);
		expect(billingAsked).toEqual([]);
	});

	test("the params name every field missing, malformed or unknown, before anything is written", async () => {
		const sent = db.statements.length;
		expect((await refusedFields(register({ name: "Ada" }).answer)).sort()).toEqual(["address", "dateOfBirth", "email"]);
		expect(await refusedFields(register(patientBody({ dateOfBirth: "1990-02-30" })).answer)).toEqual(["dateOfBirth"]);
		expect(await refusedFields(register(patientBody({ gender: "robot" })).answer)).toEqual(["gender"]);
		expect(await refusedFields(register(patientBody({ colour: "red" })).answer)).toEqual(["colour"]);
		expect(db.statements).toHaveLength(sent);
	});
});

describe("patients.create with an Idempotency-Key", () => {
	test("stores the caller, the key and the request's fingerprint with the patient", async () => {
		const sent = db.statements.length;
		await register(patientBody(), { user: CALLER, idempotencyKey: "k-1" }).answer;
		const [user, key, fingerprint] = db.sent(INSERT).at(-1)!.values.slice(9, 12);
		expect([user, key]).toEqual([CALLER.id, "k-1"]);
		expect(fingerprint).toMatch(/^[0-9a-f]{64}$/);
		expect(db.statements.length - sent).toBe(3);
	});

	test("a repeat answers the first registration (201, its version 1), announces nothing and asks billing nothing", async () => {
		const body = patientBody();
		await register(body, { user: CALLER, idempotencyKey: "k-2" }).answer;
		const fingerprint = db.sent(INSERT).at(-1)!.values[11] as string;
		const first = patientRow({ version: 1 });
		registered = { fingerprint, billingAccountId: "acc-9", record: { ...first, createdAt: first.createdAt.toISOString(), updatedAt: first.updatedAt.toISOString(), deletedAt: null } };
		events.length = 0;
		billingAsked.length = 0;

		const { meta, answer } = register(body, { user: CALLER, idempotencyKey: "k-2" });
		expect(await answer).toEqual({ ...first, billingAccountId: "acc-9", createdAt: first.createdAt.toISOString(), updatedAt: first.updatedAt.toISOString() });
		expect(meta).toMatchObject({ $statusCode: 201, $location: `/patients/${first.id}`, $responseHeaders: { ETag: 'W/"1"' } });
		expect(events).toEqual([]);
		expect(billingAsked).toEqual([]);
	});

	test("the same key with another body is 422, and nothing is announced", async () => {
		const first = patientRow({ version: 1 });
		registered = { fingerprint: "0".repeat(64), billingAccountId: null, record: { ...first, createdAt: first.createdAt.toISOString(), updatedAt: first.updatedAt.toISOString(), deletedAt: null } };
		expect(await failure(register(patientBody(), { user: CALLER, idempotencyKey: "k-3" }).answer)).toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED" });
		expect(events).toEqual([]);
	});
});

describe("If-Match on patients.update and patients.remove", () => {
	test("a version If-Match allows is written, with the caller as its author, and answered with its ETag", async () => {
		current = patientRow();
		const meta: Record<string, unknown> = { user: CALLER, ifMatch: [3] };
		const patient = await broker.call<any, object>("patients.update", { id: current.id, address: "New Road 1" }, { meta });
		expect(patient.version).toBe(4);
		expect(meta.$responseHeaders).toEqual({ ETag: 'W/"4"' });
		const update = db.sent(UPDATE).at(-1)!;
		expect(update.values[8]).toEqual([3]);
		expect(update.values.slice(-4)).toEqual(["updated", CALLER.id, 3, null]);
		expect(events.map(e => e.name)).toEqual(["patient.updated"]);
	});

	test("a stale If-Match is 412 naming the current version; nothing is announced", async () => {
		current = patientRow();
		expect(await failure(broker.call("patients.update", { id: current.id, address: "Late Road 1" }, { meta: { ifMatch: [2] } }))).toMatchObject({
			code: 412,
			type: "PRECONDITION_FAILED",
			data: { currentVersion: 3 }
		});
		expect(await failure(broker.call("patients.remove", { id: current.id }, { meta: { ifMatch: [1] } }))).toMatchObject({ code: 412 });
		expect(db.transactions.slice(-2)).toEqual(["rolled back", "rolled back"]);
		expect(events).toEqual([]);
	});
});

describe("patients.merge", () => {
	test("into itself is 409 before anything is read or written", async () => {
		const id = crypto.randomUUID();
		const sent = db.statements.length;
		expect(await failure(broker.call("patients.merge", { id, into: id }))).toMatchObject({ code: 409, data: { field: "into" } });
		expect(db.statements).toHaveLength(sent);
	});

	test("an unknown survivor is 422 naming into; a malformed one is refused by the params", async () => {
		const duplicate = patientRow();
		db.answer(lockedPatientRecords([]), () => [{ ...duplicate, deletedAt: null, mergedInto: null }]);
		expect(await refusedFields(broker.call("patients.merge", { id: duplicate.id, into: crypto.randomUUID() }))).toEqual(["into"]);
		expect(await refusedFields(broker.call("patients.merge", { id: duplicate.id, into: "nobody" }))).toEqual(["into"]);
		expect(events).toEqual([]);
	});
});

test("clerks register and change patients, doctors read them and their history, only admins delete and merge; every call is audited as the patient's", () => {
	const clerks = ["ADMIN", "RECEPTIONIST"];
	const readers = [...clerks, "DOCTOR"];
	expectDeclared(broker, "patients", "patient", {
		create: clerks,
		replace: clerks,
		update: clerks,
		list: readers,
		get: readers,
		history: readers,
		historyVersion: readers,
		remove: ["ADMIN"],
		merge: ["ADMIN"]
	});
	expect(declared(broker, "patients.outboxStatus")).toEqual({});
	expect(declared(broker, "patients.outboxReplay")).toEqual({});
});

describe("patients.outboxReplay", () => {
	test("replays the failing events, or the events from an outbox id on, and says which", async () => {
		db.answer(requeueFailingOutbox, [{ requeued: 2 }]).answer(requeueSentOutbox("1"), [{ requeued: 7 }]);
		expect(await broker.call("patients.outboxReplay", { failed: true })).toEqual({ failed: true, requeued: 2 });
		expect(await broker.call("patients.outboxReplay", { from: "42" })).toEqual({ from: "42", requeued: 7 });
		expect(db.sent(requeueSentOutbox("1")).at(-1)!.values).toEqual(["42"]);
	});

	test("takes either failed or from, and from must be an outbox id", async () => {
		const sentBefore = db.statements.length;
		expect(await refusedFields(broker.call("patients.outboxReplay", {}))).toEqual(["from"]);
		expect(await refusedFields(broker.call("patients.outboxReplay", { failed: true, from: "3" }))).toEqual(["from"]);
		expect(await refusedFields(broker.call("patients.outboxReplay", { failed: false }))).toEqual(["from"]);
		for (const from of ["0", "-1", "x", "1; DROP TABLE outbox", "9".repeat(19)]) expect(await refusedFields(broker.call("patients.outboxReplay", { from }))).toEqual(["from"]);
		expect(db.statements.length).toBe(sentBefore);
	});
});
