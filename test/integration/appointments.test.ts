import crypto from "node:crypto";
import type { ServiceSchema } from "moleculer";
import AppointmentsService from "../../services/appointments.service";
import BillingService from "../../services/billing.service";
import DoctorsService from "../../services/doctors.service";
import PatientsService from "../../services/patients.service";
import { config } from "../../lib/infra/config";
import { offsetMinutes } from "../../lib/domain/zoned-time";
import { type TestCluster, type TestUser, adminLogin, bearer, createUser, request, startCluster } from "../helpers/cluster";
import { EVERY_DAY, createDoctor, createPatient, doctorBody } from "../helpers/fixtures";
import { eventually } from "../helpers/node-process";
import { eventRecorder } from "../helpers/service-broker";

let cluster: TestCluster;
let adminToken: string;
let users: Record<"RECEPTIONIST" | "DOCTOR" | "VIEWER", TestUser>;
const { schema: recorder, events } = eventRecorder("appointment.*");

const api = (method: string, path: string, body?: unknown, token = adminToken) => request(cluster.baseUrl, method, path, body, bearer(token));

/** A calendar date `days` from today (UTC). */
const inDays = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);

/** The dates either side of the next clock change in `zone`, at least two days ahead. */
function nextClockChange(zone: string): [string, string] {
	for (let d = 2; d < 400; d++) {
		const [a, b] = [inDays(d), inDays(d + 1)];
		if (offsetMinutes(Date.parse(`${a}T12:00:00Z`), zone) !== offsetMinutes(Date.parse(`${b}T12:00:00Z`), zone)) return [a, b];
	}
	throw new Error(`${zone} has no clock change within a year`);
}
async function book(body: Record<string, unknown>, token = adminToken) {
	return api("POST", "/appointments", body, token);
}

async function booked(doctorId: string, patientId: string, start: string) {
	const res = await book({ doctorId, patientId, start });
	expect(res.status).toBe(201);
	return res.body;
}

beforeAll(async () => {
	cluster = await startCluster([PatientsService, BillingService, DoctorsService, AppointmentsService, recorder] as ServiceSchema[]);
	adminToken = await adminLogin(cluster.baseUrl);
	users = {
		RECEPTIONIST: await createUser(cluster.baseUrl, adminToken, "RECEPTIONIST"),
		DOCTOR: await createUser(cluster.baseUrl, adminToken, "DOCTOR"),
		VIEWER: await createUser(cluster.baseUrl, adminToken, "VIEWER")
	};
});

afterAll(() => cluster?.stop());

describe("doctors", () => {
	test("create with defaults, read, filter, search, page, change", async () => {
		const doctor = await createDoctor(api, { specialization: "Neurology", name: "Zed Nerve" });
		expect(doctor).toMatchObject({ timezone: "UTC", slotMinutes: 30, consultationFee: 7_500, phone: null, specialization: "Neurology" });
		expect((await api("GET", `/doctors/${doctor.id}`, undefined, users.VIEWER.token)).body).toEqual(doctor);
		const bySpecialization = await api("GET", "/doctors?specialization=Neurology&pageSize=100");
		expect(bySpecialization.body.rows.map((d: any) => d.id)).toContain(doctor.id);
		const byName = await api("GET", "/doctors?search=zed%20ner");
		expect(byName.body.rows.map((d: any) => d.id)).toEqual([doctor.id]);
		const page = await api("GET", "/doctors?pageSize=1");
		expect(page.body).toMatchObject({ page: 1, pageSize: 1, rows: [expect.any(Object)] });
		const changed = await api("PATCH", `/doctors/${doctor.id}`, { slotMinutes: 20, timezone: "Europe/Berlin" });
		expect(changed.body).toMatchObject({ slotMinutes: 20, timezone: "Europe/Berlin" });
	});

	test("validation: overlapping or backwards availability, unknown timezone, bad fields → 422; a taken email → 409", async () => {
		const overlap = await api(
			"POST",
			"/doctors",
			doctorBody({
				availability: [
					{ day: "monday", start: "09:00", end: "12:00" },
					{ day: "monday", start: "11:00", end: "13:00" }
				]
			})
		);
		expect(overlap.status).toBe(422);
		expect(overlap.body.data.map((e: any) => e.field)).toEqual(["availability"]);
		const backwards = await api("POST", "/doctors", doctorBody({ availability: [{ day: "monday", start: "17:00", end: "09:00" }] }));
		expect(backwards.status).toBe(422);
		expect(backwards.body.data.map((e: any) => e.field)).toEqual(["availability"]);
		const zone = await createDoctor(api).then(d => api("PATCH", `/doctors/${d.id}`, { timezone: "Mars/Olympus_Mons" }));
		expect(zone.status).toBe(422);
		const day = await createDoctor(api).then(d => api("PATCH", `/doctors/${d.id}`, { availability: [{ day: "funday", start: "09:00", end: "10:00" }] }));
		expect(day.status).toBe(422);
		const taken = await createDoctor(api);
		const again = await api("POST", "/doctors", doctorBody({ email: taken.email.toUpperCase() }));
		expect(again.status).toBe(409);
	});

	test("a change moves updatedAt, a PATCH that changes nothing does not; a taken email is 409, a deleted doctor 404", async () => {
		const doctor = await createDoctor(api, { phone: "+44 20 7946 0000" });
		const unchanged = await api("PATCH", `/doctors/${doctor.id}`, { name: doctor.name, joiningDate: doctor.joiningDate, availability: doctor.availability.map(({ day, start, end }: any) => ({ end, start, day })) });
		expect(unchanged.body).toEqual(doctor);
		expect((await api("PATCH", `/doctors/${doctor.id}`, {})).body).toEqual(doctor);
		const changed = await api("PATCH", `/doctors/${doctor.id}`, { name: "Dr Renamed", phone: null });
		expect(changed.body).toEqual({ ...doctor, name: "Dr Renamed", phone: null, updatedAt: expect.any(String), version: 2 });
		expect(changed.body.updatedAt).not.toBe(doctor.updatedAt);
		expect((await api("GET", `/doctors/${doctor.id}`)).body).toEqual(changed.body);
		const other = await createDoctor(api);
		expect((await api("PATCH", `/doctors/${doctor.id}`, { email: other.email.toUpperCase() })).status).toBe(409);
		expect((await api("DELETE", `/doctors/${other.id}`)).status).toBe(204);
		expect((await api("PATCH", `/doctors/${other.id}`, { name: "Dr Gone" })).status).toBe(404);
		expect((await api("PATCH", `/doctors/${doctor.id}`, { email: other.email })).status).toBe(200);
	});

	test("a soft delete is refused while the doctor has upcoming appointments, and hides the doctor once allowed", async () => {
		const doctor = await createDoctor(api);
		const patient = await createPatient(api);
		const appointment = await booked(doctor.id, patient.id, `${inDays(3)}T09:00:00Z`);
		expect((await api("DELETE", `/doctors/${doctor.id}`)).status).toBe(409);
		await api("POST", `/appointments/${appointment.id}/cancel`, { reason: "Doctor leaving" });
		expect((await api("DELETE", `/doctors/${doctor.id}`)).status).toBe(204);
		expect((await api("GET", `/doctors/${doctor.id}`)).status).toBe(404);
	});
});

describe("free slots", () => {
	test("a booked slot disappears from the list, and a cancelled one comes back", async () => {
		const doctor = await createDoctor(api);
		const date = inDays(4);
		const before = await api("GET", `/doctors/${doctor.id}/slots?date=${date}`);
		expect(before.body.slots).toHaveLength(20); // 08:00–18:00 in 30-minute slots
		expect(before.body.slots[0]).toEqual({ start: `${date}T08:00:00+00:00`, end: `${date}T08:30:00+00:00` });
		const appointment = await booked(doctor.id, (await createPatient(api)).id, `${date}T10:00:00Z`);
		const during = await api("GET", `/doctors/${doctor.id}/slots?date=${date}`);
		expect(during.body.slots.map((s: any) => s.start)).not.toContain(`${date}T10:00:00+00:00`);
		expect(during.body.slots).toHaveLength(19);
		await api("POST", `/appointments/${appointment.id}/cancel`, { reason: "Patient called" });
		const after = await api("GET", `/doctors/${doctor.id}/slots?date=${date}`);
		expect(after.body.slots).toEqual(before.body.slots);
	});

	test("from/to spans several days; a bad range is 422", async () => {
		const doctor = await createDoctor(api);
		const res = await api("GET", `/doctors/${doctor.id}/slots?from=${inDays(2)}&to=${inDays(3)}`);
		expect(res.body.slots).toHaveLength(40);
		expect((await api("GET", `/doctors/${doctor.id}/slots?from=${inDays(5)}&to=${inDays(2)}`)).status).toBe(422);
		expect((await api("GET", `/doctors/${doctor.id}/slots?date=2027-02-30`)).status).toBe(422);
	});
});

describe("booking rules", () => {
	test("availability edges: the first and the last slot; a slot crossing the end of the day is refused", async () => {
		const doctor = await createDoctor(api);
		const date = inDays(5);
		expect((await book({ doctorId: doctor.id, patientId: (await createPatient(api)).id, start: `${date}T08:00:00Z` })).status).toBe(201);
		expect((await book({ doctorId: doctor.id, patientId: (await createPatient(api)).id, start: `${date}T17:30:00Z` })).status).toBe(201);
		const crossing = await book({ doctorId: doctor.id, patientId: (await createPatient(api)).id, start: `${date}T17:45:00Z` });
		expect(crossing.status).toBe(422);
		expect(crossing.body.data[0].field).toBe("start");
		const early = await book({ doctorId: doctor.id, patientId: (await createPatient(api)).id, start: `${date}T07:45:00Z` });
		expect(early.status).toBe(422);
	});

	test("a DST change in the doctor's timezone: 09:00 on the wall clock moves in UTC, and bookings follow it", async () => {
		// The next day, at least two days ahead, on which Berlin's clock changes (spring or autumn).
		const [before, after] = nextClockChange("Europe/Berlin");
		const offsetOf = (date: string) => offsetMinutes(Date.parse(`${date}T12:00:00Z`), "Europe/Berlin");
		const iso = (date: string, offset: number) => `${date}T09:00:00${offset > 0 ? "+" : "-"}${String(Math.abs(offset) / 60).padStart(2, "0")}:00`;
		const doctor = await createDoctor(api, { timezone: "Europe/Berlin", availability: EVERY_DAY.map(w => ({ ...w, start: "09:00", end: "17:00" })) });
		const first = await api("GET", `/doctors/${doctor.id}/slots?date=${before}`);
		const second = await api("GET", `/doctors/${doctor.id}/slots?date=${after}`);
		expect(first.body.slots[0].start).toBe(iso(before, offsetOf(before)));
		expect(second.body.slots[0].start).toBe(iso(after, offsetOf(after)));
		// 09:00 local in UTC, on each side of the change.
		const nineUtc = (date: string) => new Date(Date.parse(`${date}T09:00:00Z`) - offsetOf(date) * 60_000).toISOString();
		expect((await book({ doctorId: doctor.id, patientId: (await createPatient(api)).id, start: nineUtc(after) })).status).toBe(201);
		expect((await book({ doctorId: doctor.id, patientId: (await createPatient(api)).id, start: nineUtc(before) })).status).toBe(201);
		// The other day's 09:00 instant is an hour off the wall clock: 08:00 or 10:00 locally.
		const shifted = new Date(Date.parse(nineUtc(after)) - 86_400_000).toISOString();
		const early = offsetOf(after) > offsetOf(before) ? shifted : new Date(Date.parse(nineUtc(before)) + 86_400_000).toISOString();
		expect((await book({ doctorId: doctor.id, patientId: (await createPatient(api)).id, start: early })).status).toBe(422);
	});

	test("the patient and the doctor must exist: a 422 names each that does not", async () => {
		const doctor = await createDoctor(api);
		const ghost = crypto.randomUUID();
		const noPatient = await book({ doctorId: doctor.id, patientId: ghost, start: `${inDays(6)}T09:00:00Z` });
		expect(noPatient.status).toBe(422);
		expect(noPatient.body.data.map((e: any) => e.field)).toEqual(["patientId"]);
		const neither = await book({ doctorId: ghost, patientId: "not-even-a-uuid", start: `${inDays(6)}T09:00:00Z` });
		expect(neither.body.data.map((e: any) => e.field).sort()).toEqual(["doctorId", "patientId"]);
	});

	test("start must be in the future and well-formed; durationMinutes defaults to the doctor's slot", async () => {
		const doctor = await createDoctor(api, { slotMinutes: 45 });
		const patient = await createPatient(api);
		expect((await book({ doctorId: doctor.id, patientId: patient.id, start: "2020-01-06T09:00:00Z" })).status).toBe(422);
		expect((await book({ doctorId: doctor.id, patientId: patient.id, start: "tomorrow at nine" })).status).toBe(422);
		expect((await book({ doctorId: doctor.id, patientId: patient.id, start: `${inDays(7)}T09:00:00` })).status).toBe(422); // no offset
		expect((await book({ doctorId: doctor.id, patientId: patient.id })).status).toBe(422);
		const ok = await book({ doctorId: doctor.id, patientId: patient.id, start: `${inDays(7)}T09:00:00Z`, reason: "Check-up" });
		expect(ok.body).toMatchObject({ durationMinutes: 45, end: `${inDays(7)}T09:45:00+00:00`, status: "booked", reason: "Check-up" });
	});

	test("the original shape: date + startTime, one hour, with endTime, startDateTime and endDateTime", async () => {
		const doctor = await createDoctor(api, { timezone: "America/New_York", availability: EVERY_DAY });
		const date = inDays(8);
		const res = await book({ doctorId: doctor.id, patientId: (await createPatient(api)).id, date, startTime: "10:30" });
		expect(res.status).toBe(201);
		expect(res.body).toMatchObject({
			durationMinutes: 60,
			date,
			startTime: "10:30:00",
			endTime: "11:30:00",
			startDateTime: `${date}T10:30:00`,
			endDateTime: `${date}T11:30:00`,
			timezone: "America/New_York"
		});
		expect(res.body.start).toMatch(new RegExp(`^${date}T10:30:00-0[45]:00$`));
	});

	test("20 parallel requests for one doctor and slot: exactly one 201, the others 409", async () => {
		const doctor = await createDoctor(api);
		const patients = await Promise.all(Array.from({ length: 20 }, () => createPatient(api)));
		const start = `${inDays(9)}T11:00:00Z`;
		const results = await Promise.all(patients.map(p => book({ doctorId: doctor.id, patientId: p.id, start })));
		expect(results.map(r => r.status).sort()).toEqual([201, ...Array(19).fill(409)]);
		expect(results.find(r => r.status === 409)!.body.data).toEqual({ field: "doctorId" });
	});

	test("one patient with two doctors at once, in parallel: exactly one 201", async () => {
		const [a, b] = [await createDoctor(api), await createDoctor(api)];
		const patient = await createPatient(api);
		const start = `${inDays(9)}T13:00:00Z`;
		const results = await Promise.all(Array.from({ length: 20 }, (_, i) => book({ doctorId: i % 2 ? a.id : b.id, patientId: patient.id, start })));
		expect(results.filter(r => r.status === 201)).toHaveLength(1);
		expect(results.filter(r => r.status === 409)).toHaveLength(19);
		// Overlapping, not only identical, times collide; back-to-back ones do not.
		expect((await book({ doctorId: a.id, patientId: patient.id, start: `${inDays(9)}T13:15:00Z` })).status).toBe(409);
		expect((await book({ doctorId: a.id, patientId: patient.id, start: `${inDays(9)}T13:30:00Z` })).status).toBe(201);
	});

	test("reschedule follows the same rules", async () => {
		const doctor = await createDoctor(api);
		const [p1, p2] = [await createPatient(api), await createPatient(api)];
		const first = await booked(doctor.id, p1.id, `${inDays(10)}T09:00:00Z`);
		await booked(doctor.id, p2.id, `${inDays(10)}T10:00:00Z`);
		expect((await api("PATCH", `/appointments/${first.id}`, { start: `${inDays(10)}T10:00:00Z` })).status).toBe(409);
		expect((await api("PATCH", `/appointments/${first.id}`, { start: `${inDays(10)}T20:00:00Z` })).status).toBe(422);
		const moved = await api("PATCH", `/appointments/${first.id}`, { start: `${inDays(10)}T11:00:00Z`, durationMinutes: 60 });
		expect(moved.body).toMatchObject({ start: `${inDays(10)}T11:00:00+00:00`, durationMinutes: 60 });
		expect((await api("GET", `/appointments/${first.id}`)).body.start).toBe(`${inDays(10)}T11:00:00+00:00`);
	});
});

describe("the lifecycle", () => {
	let doctor: any;
	let slot = 0;
	beforeAll(async () => {
		doctor = await createDoctor(api);
	});
	const fresh = async () => booked(doctor.id, (await createPatient(api)).id, `${inDays(11)}T${String(8 + Math.floor(slot / 2)).padStart(2, "0")}:${slot++ % 2 ? "30" : "00"}:00Z`);
	const step = (id: string, action: string, body?: object) => api("POST", `/appointments/${id}/${action}`, body);

	test("booked → arrived → fulfilled", async () => {
		const a = await fresh();
		expect((await step(a.id, "arrive")).body.status).toBe("arrived");
		expect((await step(a.id, "fulfil")).body.status).toBe("fulfilled");
	});

	test("booked or arrived → cancelled, with a reason required", async () => {
		const a = await fresh();
		expect((await step(a.id, "cancel")).status).toBe(422);
		expect((await step(a.id, "cancel", { reason: "" })).status).toBe(422);
		expect((await step(a.id, "cancel", { reason: "Feeling better" })).body).toMatchObject({ status: "cancelled", cancellationReason: "Feeling better" });
		const b = await fresh();
		await step(b.id, "arrive");
		expect((await step(b.id, "cancel", { reason: "Emergency elsewhere" })).body.status).toBe("cancelled");
	});

	test("booked → noshow", async () => {
		const a = await fresh();
		expect((await step(a.id, "no-show")).body.status).toBe("noshow");
	});

	test("every other transition is 409", async () => {
		const illegal: [string[], string][] = [
			[[], "fulfil"],
			[["arrive"], "arrive"],
			[["arrive"], "no-show"],
			[["arrive", "fulfil"], "arrive"],
			[["arrive", "fulfil"], "fulfil"],
			[["arrive", "fulfil"], "no-show"],
			[["no-show"], "arrive"],
			[["no-show"], "fulfil"],
			[["no-show"], "no-show"]
		];
		for (const [path, action] of illegal) {
			const a = await fresh();
			for (const s of path) expect((await step(a.id, s)).status).toBe(200);
			const res = await step(a.id, action, action === "cancel" ? { reason: "x" } : undefined);
			expect([path.join("→"), action, res.status]).toEqual([path.join("→"), action, 409]);
		}
		for (const path of [["arrive", "fulfil"], ["no-show"], ["cancel"]]) {
			const a = await fresh();
			for (const s of path) await step(a.id, s, s === "cancel" ? { reason: "x" } : undefined);
			expect((await step(a.id, "cancel", { reason: "again" })).status).toBe(409);
			expect((await api("PATCH", `/appointments/${a.id}`, { start: `${inDays(12)}T09:00:00Z` })).status).toBe(409);
		}
		expect((await step(crypto.randomUUID(), "arrive")).status).toBe(404);
	});

	test("events: appointment.booked, appointment.cancelled and appointment.fulfilled", async () => {
		const a = await fresh();
		await step(a.id, "arrive");
		await step(a.id, "fulfil");
		const b = await fresh();
		await step(b.id, "cancel", { reason: "x" });
		const names = (id: string) => events.filter(e => e.payload.id === id).map(e => e.name);
		expect(names(a.id)).toEqual(["appointment.booked", "appointment.fulfilled"]);
		expect(names(b.id)).toEqual(["appointment.booked", "appointment.cancelled"]);
	});
});

describe("versions and If-Match", () => {
	const ifMatch = (version: number) => ({ ...bearer(adminToken), "if-match": `W/"${version}"` });
	const conditional = (method: string, path: string, version: number, body?: unknown) => request(cluster.baseUrl, method, path, body, ifMatch(version));

	test("doctors: ETag on 201, GET and PATCH; a stale If-Match is 412 and writes nothing; a fresh one passes; DELETE too", async () => {
		const created = await api("POST", "/doctors", doctorBody());
		expect(created.body.version).toBe(1);
		expect(created.headers.get("etag")).toBe('W/"1"');
		const read = await api("GET", `/doctors/${created.body.id}`);
		expect(read.headers.get("etag")).toBe('W/"1"');

		// Two clients read version 1: the first change wins, the second is refused.
		const first = await conditional("PATCH", `/doctors/${created.body.id}`, 1, { slotMinutes: 20 });
		expect(first.status).toBe(200);
		expect(first.body).toMatchObject({ slotMinutes: 20, version: 2 });
		expect(first.headers.get("etag")).toBe('W/"2"');
		const second = await conditional("PATCH", `/doctors/${created.body.id}`, 1, { slotMinutes: 45 });
		expect(second.status).toBe(412);
		expect(second.body).toMatchObject({ type: "PRECONDITION_FAILED", data: { currentVersion: 2 } });
		expect((await conditional("PATCH", `/doctors/${created.body.id}`, 1, {})).status).toBe(412);
		expect((await api("GET", `/doctors/${created.body.id}`)).body).toEqual(first.body);

		// A change that changes nothing keeps the version.
		expect((await conditional("PATCH", `/doctors/${created.body.id}`, 2, { slotMinutes: 20 })).body).toEqual(first.body);
		expect((await conditional("DELETE", `/doctors/${created.body.id}`, 1)).status).toBe(412);
		expect((await api("GET", `/doctors/${created.body.id}`)).status).toBe(200);
		expect((await conditional("DELETE", `/doctors/${created.body.id}`, 2)).status).toBe(204);
		expect((await conditional("PATCH", `/doctors/${created.body.id}`, 2, { slotMinutes: 15 })).status).toBe(404);
		expect((await conditional("DELETE", `/doctors/${created.body.id}`, 3)).status).toBe(404);
	});

	test("appointments: ETag on 201 and GET; PATCH and every step refuse a stale If-Match with 412, unchanged, and take a fresh one", async () => {
		const doctor = await createDoctor(api);
		const a = await book({ doctorId: doctor.id, patientId: (await createPatient(api)).id, start: `${inDays(17)}T09:00:00Z` });
		expect(a.body.version).toBe(1);
		expect(a.headers.get("etag")).toBe('W/"1"');
		expect((await api("GET", `/appointments/${a.body.id}`)).headers.get("etag")).toBe('W/"1"');

		const moved = await conditional("PATCH", `/appointments/${a.body.id}`, 1, { start: `${inDays(17)}T10:00:00Z` });
		expect(moved.status).toBe(200);
		expect(moved.body).toMatchObject({ start: `${inDays(17)}T10:00:00+00:00`, version: 2 });
		expect(moved.headers.get("etag")).toBe('W/"2"');
		const staleMove = await conditional("PATCH", `/appointments/${a.body.id}`, 1, { start: `${inDays(17)}T11:00:00Z` });
		expect(staleMove.status).toBe(412);
		expect(staleMove.body.data).toEqual({ currentVersion: 2 });
		for (const [action, body] of [["arrive"], ["no-show"], ["cancel", { reason: "Stale screen" }]] as [string, object?][]) {
			const refused = await conditional("POST", `/appointments/${a.body.id}/${action}`, 1, body);
			expect([action, refused.status]).toEqual([action, 412]);
		}
		expect((await api("GET", `/appointments/${a.body.id}`)).body).toEqual(moved.body);

		const arrived = await conditional("POST", `/appointments/${a.body.id}/arrive`, 2);
		expect(arrived.body).toMatchObject({ status: "arrived", version: 3 });
		expect(arrived.headers.get("etag")).toBe('W/"3"');
		expect((await conditional("POST", `/appointments/${a.body.id}/fulfil`, 2)).status).toBe(412);
		const fulfilled = await conditional("POST", `/appointments/${a.body.id}/fulfil`, 3);
		expect(fulfilled.body).toMatchObject({ status: "fulfilled", version: 4 });
		// The version is right but the step is not: still the lifecycle's 409.
		expect((await conditional("POST", `/appointments/${a.body.id}/cancel`, 4, { reason: "Too late" })).status).toBe(409);
		expect((await conditional("POST", `/appointments/${crypto.randomUUID()}/arrive`, 1)).status).toBe(404);
	});
});

describe("Idempotency-Key", () => {
	const keyed = (method: string, path: string, key: string, body: unknown, token = adminToken) =>
		request(cluster.baseUrl, method, path, body, { ...bearer(token), "idempotency-key": key });
	const answerOf = (res: Awaited<ReturnType<typeof keyed>>) => ({ status: res.status, body: res.body, location: res.headers.get("location"), etag: res.headers.get("etag") });

	test("a retried booking gets the first answer again, one appointment and one event, not a 409 from its own first attempt", async () => {
		const doctor = await createDoctor(api);
		const patient = await createPatient(api);
		const body = { doctorId: doctor.id, patientId: patient.id, start: `${inDays(18)}T09:00:00Z`, reason: "Check-up" };
		const key = crypto.randomUUID();
		const first = await keyed("POST", "/appointments", key, body);
		expect(first.status).toBe(201);
		const retried = await keyed("POST", "/appointments", key, { ...body });
		expect(answerOf(retried)).toEqual(answerOf(first));
		expect(answerOf(first)).toMatchObject({ location: `/appointments/${first.body.id}`, etag: 'W/"1"' });
		// The retry answers as the first attempt did, even once the appointment has moved on.
		await api("POST", `/appointments/${first.body.id}/cancel`, { reason: "Patient called" });
		expect(answerOf(await keyed("POST", "/appointments", key, body))).toEqual(answerOf(first));
		expect((await api("GET", `/appointments?patientId=${patient.id}`)).body.total).toBe(1);
		expect(events.filter(e => e.name === "appointment.booked" && e.payload.patientId === patient.id)).toHaveLength(1);
	});

	test("retries racing each other make one appointment, and all get its answer", async () => {
		const doctor = await createDoctor(api);
		const patient = await createPatient(api);
		const body = { doctorId: doctor.id, patientId: patient.id, start: `${inDays(18)}T11:00:00Z` };
		const key = crypto.randomUUID();
		const answers = await Promise.all(Array.from({ length: 8 }, () => keyed("POST", "/appointments", key, body)));
		expect(answers.map(a => a.status)).toEqual(Array(8).fill(201));
		expect(new Set(answers.map(a => a.body.id)).size).toBe(1);
		expect((await api("GET", `/appointments?patientId=${patient.id}`)).body.total).toBe(1);
	});

	test("the key with another body is 422 and books nothing; keys are each caller's own", async () => {
		const doctor = await createDoctor(api);
		const patient = await createPatient(api);
		const key = crypto.randomUUID();
		const body = { doctorId: doctor.id, patientId: patient.id, start: `${inDays(18)}T13:00:00Z` };
		expect((await keyed("POST", "/appointments", key, body)).status).toBe(201);
		const other = await keyed("POST", "/appointments", key, { ...body, start: `${inDays(18)}T14:00:00Z` });
		expect(other.status).toBe(422);
		expect(other.body).toMatchObject({ type: "IDEMPOTENCY_KEY_REUSED", data: { field: "Idempotency-Key" } });
		expect((await api("GET", `/appointments?patientId=${patient.id}`)).body.total).toBe(1);
		// Another clerk's request with the same key is theirs, not a retry of the admin's.
		const clerks = await keyed("POST", "/appointments", key, { ...body, start: `${inDays(18)}T15:00:00Z` }, users.RECEPTIONIST.token);
		expect(clerks.status).toBe(201);
		expect((await api("GET", `/appointments?patientId=${patient.id}`)).body.total).toBe(2);
	});

	test("doctors: a retried POST gets the first answer and makes one doctor, racing or not; another body is 422", async () => {
		const body = doctorBody();
		const key = crypto.randomUUID();
		const answers = await Promise.all(Array.from({ length: 4 }, () => keyed("POST", "/doctors", key, body)));
		expect(answers.map(answerOf)).toEqual(Array(4).fill(answerOf(answers[0])));
		expect(answerOf(answers[0])).toMatchObject({ status: 201, location: `/doctors/${answers[0].body.id}`, etag: 'W/"1"' });
		await api("PATCH", `/doctors/${answers[0].body.id}`, { slotMinutes: 15 });
		expect(answerOf(await keyed("POST", "/doctors", key, body))).toEqual(answerOf(answers[0]));
		expect((await api("GET", `/doctors?search=${encodeURIComponent(body.name)}`)).body.total).toBe(1);
		const other = await keyed("POST", "/doctors", key, { ...body, specialization: "Dermatology" });
		expect(other.status).toBe(422);
		expect(other.body.type).toBe("IDEMPOTENCY_KEY_REUSED");
		// Without a key, the same body is a second doctor with a taken email.
		expect((await api("POST", "/doctors", body)).status).toBe(409);
	});
});

describe("status history", () => {
	test("each status change, who made it and when, newest first; for the appointment's readers, audited as the patient's", async () => {
		const doctor = await createDoctor(api);
		const patient = await createPatient(api);
		const clerk = users.RECEPTIONIST;
		const a = (await book({ doctorId: doctor.id, patientId: patient.id, start: `${inDays(19)}T09:00:00Z` }, clerk.token)).body;
		await api("PATCH", `/appointments/${a.id}`, { start: `${inDays(19)}T10:00:00Z` });
		await api("POST", `/appointments/${a.id}/arrive`, undefined, users.DOCTOR.token);
		await api("POST", `/appointments/${a.id}/fulfil`, undefined, users.DOCTOR.token);
		// A refused step leaves no entry.
		expect((await api("POST", `/appointments/${a.id}/cancel`, { reason: "Too late" })).status).toBe(409);

		const history = await api("GET", `/appointments/${a.id}/history`, undefined, users.DOCTOR.token);
		expect(history.status).toBe(200);
		const entry = { patientId: patient.id, reason: null, cause: "request", changedAt: expect.any(String) };
		expect(history.body).toEqual({
			appointmentId: a.id,
			patientId: patient.id,
			rows: [
				{ ...entry, version: 4, status: "fulfilled", changedBy: users.DOCTOR.id },
				{ ...entry, version: 3, status: "arrived", changedBy: users.DOCTOR.id },
				{ ...entry, version: 1, status: "booked", changedBy: clerk.id }
			],
			total: 3,
			page: 1,
			pageSize: 20,
			totalPages: 1
		});
		const times = history.body.rows.map((r: { changedAt: string }) => Date.parse(r.changedAt));
		expect(times).toEqual([...times].sort((x, y) => y - x));
		expect(Date.parse(history.body.rows[2].changedAt)).toBe(Date.parse(a.createdAt));
		expect((await api("GET", `/appointments/${a.id}/history?pageSize=1&page=3`)).body.rows.map((r: { status: string }) => r.status)).toEqual(["booked"]);

		expect((await api("GET", `/appointments/${a.id}/history`, undefined, users.VIEWER.token)).status).toBe(403);
		expect((await api("GET", `/appointments/${crypto.randomUUID()}/history`)).status).toBe(404);
		await eventually(async () => {
			const trail = await api("GET", `/audit?patientId=${patient.id}`);
			return trail.body.rows.some((r: { action: string; outcome: string }) => r.action === "appointments.history" && r.outcome === "success") || undefined;
		}, 10_000, "the audit record");
	});

	test("a cancellation keeps its reason; one made because the patient was deleted is MedSync's own", async () => {
		const doctor = await createDoctor(api);
		const patient = await createPatient(api);
		const a = await booked(doctor.id, patient.id, `${inDays(19)}T13:00:00Z`);
		const b = await booked(doctor.id, patient.id, `${inDays(19)}T14:00:00Z`);
		await api("POST", `/appointments/${a.id}/cancel`, { reason: "Feeling better" });
		const latest = async (id: string) => (await api("GET", `/appointments/${id}/history?pageSize=1`)).body.rows[0];
		expect(await latest(a.id)).toMatchObject({ status: "cancelled", version: 2, reason: "Feeling better", cause: "request", changedBy: expect.any(String) });
		await api("DELETE", `/patients/${patient.id}`);
		await eventually(async () => ((await latest(b.id)).status === "cancelled" ? true : undefined), 10_000, "the cancellation");
		expect(await latest(b.id)).toMatchObject({ version: 2, cause: "patient-deleted", changedBy: null, reason: expect.stringMatching(/deleted/) });
	});
});

describe("between services", () => {
	test("a fulfilled appointment charges the doctor's fee to the patient's account, exactly once", async () => {
		const doctor = await createDoctor(api, { consultationFee: 12_345 });
		const patient = await createPatient(api);
		const a = await booked(doctor.id, patient.id, `${inDays(13)}T09:00:00Z`);
		await api("POST", `/appointments/${a.id}/arrive`);
		const fulfilled = (await api("POST", `/appointments/${a.id}/fulfil`)).body;
		const ledger = () => api("GET", `/billing/accounts/${patient.billingAccountId}/transactions`).then(r => r.body);
		await eventually(async () => ((await ledger()).total === 1 ? true : undefined), 10_000, "the charge");
		// The event again, as a redelivery would bring it.
		await cluster.broker.emit("appointment.fulfilled", fulfilled);
		await cluster.broker.emit("appointment.fulfilled", fulfilled);
		await new Promise(r => setTimeout(r, 300));
		const { rows, total } = await ledger();
		expect(total).toBe(1);
		expect(rows[0]).toMatchObject({ type: "CHARGE", amount: 12_345, reference: `appointment:${a.id}` });
		expect((await api("GET", `/billing/accounts/${patient.billingAccountId}`)).body.balance).toBe(12_345);
	});

	test("deleting a patient cancels their future appointments", async () => {
		const doctor = await createDoctor(api);
		const patient = await createPatient(api);
		const a = await booked(doctor.id, patient.id, `${inDays(14)}T09:00:00Z`);
		expect((await api("DELETE", `/patients/${patient.id}`)).status).toBe(204);
		const after = await eventually(async () => {
			const res = await api("GET", `/appointments/${a.id}`);
			return res.body.status === "cancelled" ? res.body : undefined;
		}, 10_000, "the cancellation");
		expect(after.cancellationReason).toMatch(/deleted/);
	});

	test("lists filter by doctor, patient, status and time, paginated", async () => {
		const doctor = await createDoctor(api);
		const patient = await createPatient(api);
		const a = await booked(doctor.id, patient.id, `${inDays(15)}T09:00:00Z`);
		await booked(doctor.id, patient.id, `${inDays(15)}T10:00:00Z`);
		await api("POST", `/appointments/${a.id}/cancel`, { reason: "x" });
		const all = await api("GET", `/appointments?doctorId=${doctor.id}`);
		expect(all.body.total).toBe(2);
		expect((await api("GET", `/appointments?patientId=${patient.id}&status=cancelled`)).body.rows.map((r: any) => r.id)).toEqual([a.id]);
		const window = await api("GET", `/appointments?doctorId=${doctor.id}&from=${inDays(15)}T09:30:00Z&to=${inDays(16)}T00:00:00Z`);
		expect(window.body.total).toBe(1);
		expect((await api("GET", `/appointments?doctorId=${doctor.id}&pageSize=1&page=2`)).body).toMatchObject({ total: 2, rows: [expect.any(Object)], totalPages: 2 });
		expect((await api("GET", "/appointments?status=lost")).status).toBe(422);
	});
});

describe("roles", () => {
	test("doctors: everyone reads, only admins write; appointments: clerks book, doctors attend, viewers see nothing", async () => {
		const doctor = await createDoctor(api);
		const patient = await createPatient(api);
		for (const user of Object.values(users)) expect((await api("GET", `/doctors/${doctor.id}`, undefined, user.token)).status).toBe(200);
		expect((await api("PATCH", `/doctors/${doctor.id}`, { slotMinutes: 15 }, users.RECEPTIONIST.token)).status).toBe(403);
		expect((await api("POST", "/doctors", {}, users.DOCTOR.token)).status).toBe(403);

		const start = `${inDays(16)}T09:00:00Z`;
		expect((await book({ doctorId: doctor.id, patientId: patient.id, start }, users.DOCTOR.token)).status).toBe(403);
		expect((await book({ doctorId: doctor.id, patientId: patient.id, start }, users.VIEWER.token)).status).toBe(403);
		const a = await book({ doctorId: doctor.id, patientId: patient.id, start }, users.RECEPTIONIST.token);
		expect(a.status).toBe(201);
		expect((await api("GET", `/appointments/${a.body.id}`, undefined, users.DOCTOR.token)).status).toBe(200);
		expect((await api("GET", `/appointments/${a.body.id}`, undefined, users.VIEWER.token)).status).toBe(403);
		expect((await api("POST", `/appointments/${a.body.id}/cancel`, { reason: "x" }, users.DOCTOR.token)).status).toBe(403);
		expect((await api("POST", `/appointments/${a.body.id}/arrive`, undefined, users.DOCTOR.token)).status).toBe(200);
		expect((await api("POST", `/appointments/${a.body.id}/fulfil`, undefined, users.DOCTOR.token)).status).toBe(200);
		expect((await request(cluster.baseUrl, "GET", `/appointments/${a.body.id}`)).status).toBe(401);
	});
});

describe("readiness", () => {
	test("/ready is 200 when every service it waits for, and each one's dependencies, are up", async () => {
		const waitedFor = config.readyServices;
		config.readyServices = ["auth", "audit", "patients", "billing", "doctors", "appointments"];
		try {
			const res = await request(cluster.baseUrl, "GET", "/ready");
			expect(res.status).toBe(200);
			expect(res.body.status).toBe("ready");
			expect(Object.keys(res.body.checks)).toEqual(expect.arrayContaining(["appointments.database", "doctors.database", "patients.grpc:billing"]));
		} finally {
			config.readyServices = waitedFor;
		}
	});
});
