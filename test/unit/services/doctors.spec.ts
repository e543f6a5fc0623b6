import crypto from "node:crypto";
import type { ServiceSchema } from "moleculer";
import type { Interval } from "../../../lib/domain/scheduling";
import DoctorsService from "../../../services/doctors.service";
import { deleteDoctor, doctorById } from "../../../services/doctors/queries";
import { doctorRow } from "../../helpers/fixtures";
import { failure } from "../../helpers/expect";
import { createWithDatabase, expectDeclared, refusedFields, unitBroker } from "../../helpers/service-broker";
import { StubDatabase } from "../../helpers/stub-database";

/**
 * The doctors service on a broker: its database a stub, appointments a stub
 * that says when the doctor is busy and how many visits are to come. The
 * integration suite (appointments.test.ts) runs the same rules on PostgreSQL.
 */

const MONDAY = "2031-03-03";
const doctor = doctorRow({ availability: [{ day: "monday", start: "09:00", end: "11:00" }] });
const db = new StubDatabase()
	.answer(doctorById(doctor.id), ([id]) => (id === doctor.id ? [doctor] : []))
	.answer(deleteDoctor(doctor.id), ([id, ifMatch]) => (id === doctor.id && (!ifMatch || (ifMatch as number[]).includes(doctor.version)) ? [{ id }] : []));
const busyAsked: { doctorId: string; from: string; to: string }[] = [];
let busy: Interval[] = [];
let upcoming = 0;

const broker = unitBroker();
createWithDatabase(broker, DoctorsService as ServiceSchema, db);
broker.createService({
	name: "appointments",
	actions: {
		busy(ctx) {
			busyAsked.push(ctx.params);
			return busy;
		},
		countUpcoming: () => upcoming
	}
});

beforeAll(() => broker.start());
afterAll(() => broker.stop());
beforeEach(() => {
	busyAsked.length = 0;
	busy = [];
	upcoming = 0;
});

describe("doctors.slots", () => {
	test("the availability's slots on the date, less those appointments says are busy", async () => {
		busy = [{ start: Date.parse(`${MONDAY}T10:00:00Z`), end: Date.parse(`${MONDAY}T10:30:00Z`) }];
		const answer = await broker.call("doctors.slots", { id: doctor.id, date: MONDAY });
		expect(answer).toEqual({
			doctorId: doctor.id,
			timezone: "UTC",
			slots: [
				{ start: `${MONDAY}T09:00:00+00:00`, end: `${MONDAY}T09:30:00+00:00` },
				{ start: `${MONDAY}T09:30:00+00:00`, end: `${MONDAY}T10:00:00+00:00` },
				{ start: `${MONDAY}T10:30:00+00:00`, end: `${MONDAY}T11:00:00+00:00` }
			]
		});
		// Busy times are asked for the whole day in any zone: 14 hours before its start to 14 after its end.
		expect(busyAsked).toEqual([{ doctorId: doctor.id, from: "2031-03-02T10:00:00.000Z", to: "2031-03-04T14:00:00.000Z" }]);
	});

	test("from and to span several days; a day without availability has no slots", async () => {
		const answer = await broker.call<{ slots: unknown[] }, object>("doctors.slots", { id: doctor.id, from: MONDAY, to: "2031-03-09" });
		expect(answer.slots).toHaveLength(4);
		expect(busyAsked).toHaveLength(1);
	});

	test("a date that is no date, or an unknown field, is refused by the params", async () => {
		expect(await refusedFields(broker.call("doctors.slots", { id: doctor.id, date: "2031-02-30" }))).toEqual(["date"]);
		expect(await refusedFields(broker.call("doctors.slots", { id: doctor.id, day: MONDAY }))).toEqual(["day"]);
		expect(busyAsked).toEqual([]);
	});

	test("a range backwards or over 31 days is 422 naming `to`, before appointments is asked", async () => {
		for (const [from, to] of [[MONDAY, "2031-03-02"], [MONDAY, "2031-04-03"]]) {
			const err = await failure(broker.call("doctors.slots", { id: doctor.id, from, to }));
			expect(err).toMatchObject({ code: 422, data: [{ field: "to" }] });
		}
		expect(busyAsked).toEqual([]);
	});

	test("an unknown doctor is 404; a malformed id too, without a statement", async () => {
		const sent = db.statements.length;
		expect(await failure(broker.call("doctors.slots", { id: "not-a-uuid", date: MONDAY }))).toMatchObject({ code: 404 });
		expect(db.statements).toHaveLength(sent);
		expect(await failure(broker.call("doctors.slots", { id: crypto.randomUUID(), date: MONDAY }))).toMatchObject({ code: 404 });
		expect(busyAsked).toEqual([]);
	});
});

describe("doctors.remove", () => {
	test("is 409 while appointments counts visits to come, and deletes nothing", async () => {
		upcoming = 2;
		expect(await failure(broker.call("doctors.remove", { id: doctor.id }))).toMatchObject({ code: 409, data: { upcoming: 2 } });
		expect(db.sent(deleteDoctor(doctor.id))).toEqual([]);
	});

	test("soft-deletes the doctor once none are to come, and answers 204", async () => {
		const meta: Record<string, unknown> = {};
		await broker.call("doctors.remove", { id: doctor.id }, { meta });
		expect(db.sent(deleteDoctor(doctor.id))).toEqual([deleteDoctor(doctor.id)]);
		expect(meta.$statusCode).toBe(204);
	});

	test("honours If-Match: a stale version is 412 naming the current one, before anything is asked or deleted", async () => {
		const sent = db.sent(deleteDoctor(doctor.id)).length;
		const stale = await failure(broker.call("doctors.remove", { id: doctor.id }, { meta: { ifMatch: [doctor.version + 1] } }));
		expect(stale).toMatchObject({ code: 412, data: { currentVersion: doctor.version } });
		expect(db.sent(deleteDoctor(doctor.id))).toHaveLength(sent);
		await broker.call("doctors.remove", { id: doctor.id }, { meta: { ifMatch: [doctor.version] } });
		expect(db.sent(deleteDoctor(doctor.id)).at(-1)).toEqual(deleteDoctor(doctor.id, [doctor.version]));
	});
});

test("everyone signed in reads the directory; only admins change it; nothing is audited", () => {
	const everyone = ["ADMIN", "RECEPTIONIST", "DOCTOR", "VIEWER"];
	expectDeclared(broker, "doctors", undefined, { list: everyone, get: everyone, slots: everyone, create: ["ADMIN"], update: ["ADMIN"], remove: ["ADMIN"] });
});
