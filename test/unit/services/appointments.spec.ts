import crypto from "node:crypto";
import type { Context, ServiceSchema } from "moleculer";
import { NotFoundError } from "../../../lib/infra/errors";
import { config } from "../../../lib/infra/config";
import { FALLBACK_EVENT } from "../../../mixins/kafka.mixin";
import { PatientEvent } from "../../../proto/generated/patient_event";
import AppointmentsService from "../../../services/appointments.service";
import { eventually } from "../../../lib/tooling/network";
import {
	type AppointmentRow,
	type Status,
	appointmentById,
	changeStatus,
	insertAppointment,
	cancelFutureOfPatient,
	lockKeys,
	markCharged,
	moveToSurvivor,
	unchargedAppointments
} from "../../../services/appointments/queries";
import { appointmentRow, EVERY_DAY, patientEvent } from "../../helpers/fixtures";
import { failure } from "../../helpers/expect";
import { createWithDatabase, declared, eventRecorder, expectDeclared, refusedFields, unitBroker } from "../../helpers/service-broker";
import { StubDatabase } from "../../helpers/stub-database";

/**
 * The appointments service on a broker: its database a stub, and stubs for
 * the neighbours it asks (patients and doctors when booking, billing when a
 * visit is fulfilled). The integration suite (appointments.test.ts) runs the
 * same rules on PostgreSQL, where the database itself refuses collisions.
 */

/** The appointment each test works on: what the database holds, and whether a step's UPDATE finds it in a state it allows. */
let stored: AppointmentRow;
const db = new StubDatabase()
	.answer(appointmentById(""), ([id]) => (id === stored.id ? [stored] : []))
	.answer(changeStatus("", [], "booked", null), ([id, to, from, reason, ifMatch]) => {
		if (id !== stored.id || !(from as Status[]).includes(stored.status)) return [];
		if (ifMatch && !(ifMatch as number[]).includes(stored.version)) return [];
		stored = { ...stored, status: to as Status, cancellationReason: (reason as string | null) ?? stored.cancellationReason, version: stored.version + 1 };
		return [stored];
	});

const doctor = { id: crypto.randomUUID(), timezone: "UTC", slotMinutes: 30, consultationFee: 7_500, availability: EVERY_DAY };
const knownPatient = crypto.randomUUID();
const { schema: recorder, events } = eventRecorder("appointment.*");
const charges: unknown[] = [];

const broker = unitBroker();
createWithDatabase(broker, AppointmentsService as ServiceSchema, db);
broker.createService({
	name: "doctors",
	actions: {
		get: (ctx: Context<{ id: string }>) => {
			if (ctx.params.id !== doctor.id) throw new NotFoundError("Doctor", ctx.params.id);
			return doctor;
		}
	}
});
broker.createService({
	name: "patients",
	actions: {
		get: (ctx: Context<{ id: string }>) => {
			if (ctx.params.id !== knownPatient) throw new NotFoundError("Patient", ctx.params.id);
			return { id: knownPatient };
		}
	}
});
broker.createService({
	name: "billing",
	actions: {
		chargeAppointment: (ctx: Context) => {
			charges.push(ctx.params);
			return { charged: true };
		}
	}
});
broker.createService(recorder);

beforeAll(() => broker.start());
afterAll(() => broker.stop());
beforeEach(() => {
	events.length = 0;
	charges.length = 0;
});

/** Takes `step` (the action's name) on an appointment stored in `status`; the answer, or the error. */
async function step(status: Status, action: string, params: Record<string, unknown> = {}): Promise<any> {
	stored = appointmentRow(status);
	return broker.call(`appointments.${action}`, { id: stored.id, ...params }).catch((err: unknown) => err);
}

describe("the lifecycle", () => {
	test("each step from the states it allows: booked → arrived → fulfilled, booked → noshow, booked or arrived → cancelled", async () => {
		const allowed: [Status, string, Status][] = [
			["booked", "arrive", "arrived"],
			["arrived", "fulfil", "fulfilled"],
			["booked", "noShow", "noshow"],
			["booked", "cancel", "cancelled"],
			["arrived", "cancel", "cancelled"]
		];
		for (const [from, action, to] of allowed) {
			const answer = await step(from, action, action === "cancel" ? { reason: "Feeling better" } : {});
			expect([from, action, answer]).toEqual([from, action, expect.objectContaining({ id: stored.id, status: to })]);
		}
	});

	test("every other step is 409 naming the state it found", async () => {
		const refused: [Status, string][] = [
			["booked", "fulfil"],
			["arrived", "arrive"],
			["arrived", "noShow"],
			...(["fulfilled", "noshow", "cancelled"] as Status[]).flatMap(from => ["arrive", "fulfil", "noShow", "cancel"].map(action => [from, action] as [Status, string]))
		];
		for (const [from, action] of refused) {
			const err = await step(from, action, action === "cancel" ? { reason: "x" } : {});
			expect([from, action, err]).toEqual([from, action, expect.objectContaining({ code: 409, data: { status: from } })]);
			expect(stored.status).toBe(from);
		}
		expect(events).toEqual([]);
	});

	test("an unknown appointment is 404; a malformed id too, without a statement", async () => {
		stored = appointmentRow("booked");
		expect(await failure(broker.call("appointments.arrive", { id: crypto.randomUUID() }))).toMatchObject({ code: 404 });
		const sent = db.statements.length;
		expect(await failure(broker.call("appointments.arrive", { id: "no-such-id" }))).toMatchObject({ code: 404 });
		// (The charge timer's statement may come meanwhile.)
		expect(db.statements.slice(sent).filter(s => s.text !== unchargedAppointments().text)).toEqual([]);
	});

	test("a step honours If-Match: a stale version is 412 naming the current one, and the status stays; the right one passes and sends the new ETag", async () => {
		stored = appointmentRow("booked", { version: 3 });
		const stale = await failure(broker.call("appointments.arrive", { id: stored.id }, { meta: { ifMatch: [2] } }));
		expect(stale).toMatchObject({ code: 412, data: { currentVersion: 3 } });
		expect(stored).toMatchObject({ status: "booked", version: 3 });
		const meta: Record<string, any> = { ifMatch: [2, 3] };
		expect(await broker.call("appointments.arrive", { id: stored.id }, { meta })).toMatchObject({ status: "arrived", version: 4 });
		expect(meta.$responseHeaders).toEqual({ ETag: 'W/"4"' });
		// A step its state does not allow stays a 409 when the version is right.
		expect(await failure(broker.call("appointments.arrive", { id: stored.id }, { meta: { ifMatch: [4] } }))).toMatchObject({ code: 409 });
	});

	test("a cancellation needs a reason, kept on the appointment", async () => {
		expect(await refusedFields(broker.call("appointments.cancel", { id: crypto.randomUUID() }))).toEqual(["reason"]);
		expect(await refusedFields(broker.call("appointments.cancel", { id: crypto.randomUUID(), reason: "" }))).toEqual(["reason"]);
		expect(await step("booked", "cancel", { reason: "Doctor leaving" })).toMatchObject({ status: "cancelled", cancellationReason: "Doctor leaving" });
	});

	test("cancelling and fulfilling are announced; arriving and no-shows are not", async () => {
		const arrived = await step("booked", "arrive");
		const noShow = await step("booked", "noShow");
		const cancelled = await step("booked", "cancel", { reason: "x" });
		const fulfilled = await step("arrived", "fulfil");
		expect(events).toEqual([
			{ name: "appointment.cancelled", payload: cancelled },
			{ name: "appointment.fulfilled", payload: fulfilled }
		]);
		expect([arrived, noShow]).toEqual([expect.objectContaining({ status: "arrived" }), expect.objectContaining({ status: "noshow" })]);
	});

	test("a fulfilled visit is charged its fee through billing, and marked charged once billing answers", async () => {
		const fulfilled = await step("arrived", "fulfil");
		// Asked after the answer, not awaited by it.
		await eventually(async () => (db.sent(markCharged(fulfilled.id)).some(s => s.values[0] === fulfilled.id) ? true : undefined), 5000, "the charge");
		expect(charges).toEqual([{ appointmentId: fulfilled.id, patientId: fulfilled.patientId, consultationFee: 7_500 }]);
	});
});

describe("appointments.book", () => {
	const start = "2031-03-03T09:00:00Z";
	const INSERT = insertAppointment({ id: "", patientId: "", doctorId: "", span: { start: 0, end: 0 }, timezone: "", consultationFee: 0, reason: null });

	test("a patient or a doctor that does not exist is 422 naming each; nothing is written", async () => {
		const err = await failure(broker.call("appointments.book", { patientId: crypto.randomUUID(), doctorId: crypto.randomUUID(), start }));
		expect(err).toMatchObject({ code: 422 });
		expect((err.data as { field: string }[]).map(e => e.field).sort()).toEqual(["doctorId", "patientId"]);
		expect(db.sent(INSERT)).toEqual([]);
	});

	test("outside the doctor's availability, or in the past, is 422 naming start", async () => {
		for (const when of ["2031-03-03T07:30:00Z", "2020-01-06T09:00:00Z"]) {
			const err = await failure(broker.call("appointments.book", { patientId: knownPatient, doctorId: doctor.id, start: when }));
			expect([when, err]).toEqual([when, expect.objectContaining({ code: 422, data: [expect.objectContaining({ field: "start" })] })]);
		}
	});

	test("a booking takes the doctor's and the patient's locks, then writes the visit in one transaction, answers 201 and announces it", async () => {
		db.answer(INSERT, ([id, patientId, doctorId, startAt, endAt]) => [
			appointmentRow("booked", { id: id as string, patientId: patientId as string, doctorId: doctorId as string, startAt: startAt as Date, endAt: endAt as Date })
		]);
		const sent = db.statements.length;
		const meta: Record<string, unknown> = {};
		const booked = await broker.call<{ id: string; start: string; durationMinutes: number }, object>(
			"appointments.book",
			{ patientId: knownPatient, doctorId: doctor.id, start, reason: "Check-up" },
			{ meta }
		);
		const written = db.statements.slice(sent).filter(s => s.text === INSERT.text || s.text === lockKeys([]).text);
		expect(written.map(s => s.text)).toEqual([lockKeys([]).text, INSERT.text]);
		expect(written[0].values).toEqual([[`appointment-doctor:${doctor.id}`, `appointment-patient:${knownPatient}`].sort()]);
		// No Idempotency-Key (no key, caller or fingerprint), and no user to name in the history.
		expect(written[1].values.slice(1)).toEqual([knownPatient, doctor.id, new Date(start), new Date("2031-03-03T09:30:00Z"), 30, "UTC", 7_500, "Check-up", null, null, null, null]);
		expect(db.transactions.at(-1)).toBe("committed");
		expect(booked).toMatchObject({ id: written[1].values[0], start: "2031-03-03T09:00:00+00:00", durationMinutes: 30 });
		expect(meta).toMatchObject({ $statusCode: 201, $location: `/appointments/${booked.id}` });
		expect(events).toEqual([{ name: "appointment.booked", payload: booked }]);
	});
});

describe("a patient merge (PATIENT_MERGED on the patient topic)", () => {
	const MOVE = moveToSurvivor("", "", "");
	/** What the move statement would answer for each event the first time: the rows it moved. A redelivery moves none. */
	const moves = new Map<string, unknown[]>();
	db.answer(MOVE, ([eventId]) => {
		const rows = moves.get(eventId as string) ?? [];
		moves.delete(eventId as string);
		return rows;
	});

	/** Delivers the event as the outbox relay does without Kafka, and waits until the consumer has handled it. */
	const deliver = (event: PatientEvent) =>
		broker.emit(FALLBACK_EVENT, { topic: config.patientTopic, key: event.patientId, value: Buffer.from(PatientEvent.encode(event).finish()).toString("base64"), headers: {} });
	const sentSince = (count: number) => db.statements.slice(count).filter(s => s.text !== unchargedAppointments().text);

	test("moves the merged patient's appointments in one transaction, under both patients' booking locks; announces those it cancelled as booked twice", async () => {
		const merge = patientEvent("PATIENT_MERGED", { mergedInto: crypto.randomUUID() });
		const survivor = merge.mergedInto;
		const cancelled = { ...appointmentRow("cancelled", { patientId: survivor, version: 2, cancellationReason: "Booked twice" }), cancelledByMerge: true };
		const moved = { ...appointmentRow("booked", { patientId: survivor, version: 2 }), cancelledByMerge: false };
		moves.set(merge.eventId, [cancelled, moved]);
		const count = db.statements.length;
		await deliver(merge);
		expect(sentSince(count)).toEqual([
			lockKeys([`appointment-patient:${merge.patientId}`, `appointment-patient:${survivor}`].sort()),
			moveToSurvivor(merge.eventId, merge.patientId, survivor)
		]);
		expect(db.transactions.at(-1)).toBe("committed");
		expect(events).toEqual([{ name: "appointment.cancelled", payload: expect.objectContaining({ id: cancelled.id, status: "cancelled", patientId: survivor }) }]);

		// The same event again: the statement applies it once, and moves nothing now; nothing is announced.
		events.length = 0;
		await deliver(merge);
		expect(sentSince(count).filter(s => s.text === MOVE.text)).toHaveLength(2);
		expect(events).toEqual([]);
	});

	test("the cancellation reason names the merge; every move is entered in the history as MedSync's doing", () => {
		const [merged, survivor] = [crypto.randomUUID(), crypto.randomUUID()];
		const statement = moveToSurvivor(crypto.randomUUID(), merged, survivor);
		expect(statement.values.slice(3)).toEqual([
			`Booked twice: Patient ${merged} was merged into ${survivor}, who has an appointment at that time`,
			`Patient ${merged} was merged into ${survivor}`
		]);
		expect(statement.text).toMatch(/INSERT INTO processed_events/);
		expect(statement.text).toMatch(/INSERT INTO appointment_status_history[\s\S]*NULL::uuid, 'patient-merged'/);
	});

	test("a deleted patient's future appointments are cancelled; a merged one's are left to follow the merge", async () => {
		const [deleted, merged] = [crypto.randomUUID(), crypto.randomUUID()];
		await broker.emit("patient.deleted", { id: deleted, mergedInto: null });
		await broker.emit("patient.deleted", { id: merged, mergedInto: crypto.randomUUID() });
		expect(db.sent(cancelFutureOfPatient("")).map(s => s.values[0])).toEqual([deleted]);
	});

	test("other patient events, and a merge into itself, change no appointment", async () => {
		const count = db.statements.length;
		const self = crypto.randomUUID();
		for (const event of [
			patientEvent("PATIENT_CREATED"),
			patientEvent("PATIENT_UPDATED"),
			patientEvent("PATIENT_DELETED"),
			patientEvent("PATIENT_MERGED", { patientId: self, mergedInto: self })
		]) {
			await deliver(event);
		}
		expect(sentSince(count)).toEqual([]);
		expect(events).toEqual([]);
	});
});

test("clerks book, reschedule and cancel; doctors attend too; viewers see nothing; every call is audited as the patient's", () => {
	const clerks = ["ADMIN", "RECEPTIONIST"];
	const attendants = ["ADMIN", "RECEPTIONIST", "DOCTOR"];
	expectDeclared(broker, "appointments", "patient", {
		book: clerks,
		reschedule: clerks,
		cancel: clerks,
		arrive: attendants,
		fulfil: attendants,
		noShow: attendants,
		list: attendants,
		get: attendants,
		history: attendants
	});
	// Only other services ask these: no route, no role.
	for (const action of ["busy", "countUpcoming"]) expect(declared(broker, `appointments.${action}`)).toEqual({});
});
