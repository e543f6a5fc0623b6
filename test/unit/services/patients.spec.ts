import { type ServiceError, status } from "@grpc/grpc-js";
import type { Service, ServiceSchema } from "moleculer";
import { config } from "../../../lib/infra/config";
import { todayIn } from "../../../lib/domain/dates";
import { isValidMrn } from "../../../lib/domain/mrn";
import type { GrpcClientVars } from "../../../mixins/grpc-client.mixin";
import { type BillingRequest, type BillingResponse } from "../../../proto/generated/billing_service";
import { PatientEvent } from "../../../proto/generated/patient_event";
import PatientsService from "../../../services/patients.service";
import { type PatientRow, insertPatientWithEvent, nextMrnSerial, setBillingAccount } from "../../../services/patients/queries";
import { patientBody } from "../../helpers/fixtures";
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

const INSERT = insertPatientWithEvent(
	{ id: "", mrn: "", name: "", email: "", address: "", dateOfBirth: "", registerDate: "", phone: null, gender: null },
	{ eventId: "", topic: "", key: "", eventType: "", payload: new Uint8Array() },
	null,
	null
);
let insertFails: Error | undefined;
const db = new StubDatabase()
	.answer(nextMrnSerial, () => [{ serial: "1000041" }])
	.answer(INSERT, values => {
		if (insertFails) throw insertFails;
		const [id, mrn, name, email, address, dateOfBirth, registerDate, phone, gender] = values as string[];
		const now = new Date();
		return [{ id, mrn, name, email, address, dateOfBirth, registerDate, phone, gender, billingAccountId: null, createdAt: now, updatedAt: now } as PatientRow];
	});

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
	billingAnswer = () => ({ accountId: "acc-1", status: "ACTIVE" });
});

function register(body: Record<string, unknown>) {
	const meta: Record<string, unknown> = {};
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
		const [eventId, topic, key, eventType, payload, versionKind, author] = statements[1].values.slice(-8);
		expect({ topic, key, eventType }).toEqual({ topic: config.patientTopic, key: patient.id, eventType: "PATIENT_CREATED" });
		expect(PatientEvent.decode(payload as Buffer)).toMatchObject({ patientId: patient.id, name: body.name, email: body.email, eventType: "PATIENT_CREATED", eventId });
		// Its version 1, in the same statement; no caller here, so no author.
		expect([versionKind, author]).toEqual(["created", null]);
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

test("clerks register and change patients, doctors read them, only admins delete; every call is audited as the patient's", () => {
	const clerks = ["ADMIN", "RECEPTIONIST"];
	expectDeclared(broker, "patients", "patient", { create: clerks, replace: clerks, update: clerks, list: [...clerks, "DOCTOR"], get: [...clerks, "DOCTOR"], remove: ["ADMIN"] });
	expect(declared(broker, "patients.outboxStatus")).toEqual({});
});
