import { ConflictError } from "../../lib/infra/errors";
import { type DoctorView, exclusive, schedule } from "../../services/appointments/booking";
import { chargeFulfilled } from "../../services/appointments/charges";
import { lockKeys, markCharged, unchargedAppointments } from "../../services/appointments/queries";
import { StubDatabase } from "../helpers/stub-database";

/**
 * The appointments service's modules, each given what it uses: the booking
 * rules, the collision guard, and the charge retry, without a broker or a
 * database (the integration suite runs them against both).
 */

const doctor: DoctorView = {
	id: "00000000-0000-4000-8000-000000000001",
	timezone: "Europe/Berlin",
	slotMinutes: 30,
	consultationFee: 5_000,
	availability: [{ day: "monday", start: "09:00", end: "12:00" }]
};
const NOW = Date.parse("2030-01-01T00:00:00Z");
const fieldsOf = (work: () => unknown) => {
	try {
		work();
	} catch (err) {
		return (err as { data: { field: string }[] }).data.map(e => e.field);
	}
	throw new Error("no error");
};

describe("when a booking may be", () => {
	test("a start instant, or the original date and wall-clock startTime, inside the doctor's availability", () => {
		// Monday 2030-01-07, 09:00 in Berlin is 08:00 UTC.
		expect(schedule(doctor, { start: "2030-01-07T08:00:00Z" }, 30, NOW)).toEqual({ start: Date.parse("2030-01-07T08:00:00Z"), end: Date.parse("2030-01-07T08:30:00Z") });
		expect(schedule(doctor, { date: "2030-01-07", startTime: "11:00:30", durationMinutes: 45 }, 60, NOW)).toEqual({
			start: Date.parse("2030-01-07T10:00:30Z"),
			end: Date.parse("2030-01-07T10:45:30Z")
		});
	});

	test("no start, a past start, or a span outside the availability is 422 naming start", () => {
		expect(fieldsOf(() => schedule(doctor, { date: "2030-01-07" }, 30, NOW))).toEqual(["start"]);
		expect(fieldsOf(() => schedule(doctor, { start: "2029-12-31T08:00:00Z" }, 30, NOW))).toEqual(["start"]);
		expect(fieldsOf(() => schedule(doctor, { start: "2030-01-07T10:45:00Z" }, 30, NOW))).toEqual(["start"]);
		expect(fieldsOf(() => schedule(doctor, { start: "2030-01-08T08:00:00Z" }, 30, NOW))).toEqual(["start"]);
	});
});

describe("a booking write", () => {
	const who = { doctorId: doctor.id, patientId: "00000000-0000-4000-8000-000000000002" };
	const INSERT = { text: "INSERT", values: [] };

	test("takes the doctor's and the patient's locks in one statement, in one order, before the write", async () => {
		const db = new StubDatabase().answer(INSERT, ["row"]);
		expect(await exclusive(db, who, tx => tx.query(INSERT))).toEqual(["row"]);
		expect(db.statements.map(s => s.values)).toEqual([[[`appointment-doctor:${who.doctorId}`, `appointment-patient:${who.patientId}`]], []]);
	});

	test("an overlap is 409 naming whose appointment collides; any other error passes through", async () => {
		for (const [constraint, field] of [["appointments_doctor_no_overlap", "doctorId"], ["appointments_patient_no_overlap", "patientId"]]) {
			const overlap = Object.assign(new Error("conflicting key value violates exclusion constraint"), { code: "23P01", constraint });
			const db = new StubDatabase().answer(INSERT, () => {
				throw overlap;
			});
			const err = await exclusive(db, who, tx => tx.query(INSERT)).catch((e: unknown) => e);
			expect(err).toBeInstanceOf(ConflictError);
			expect(err).toMatchObject({ code: 409, data: { field } });
		}
		const broken = new TypeError("x is undefined");
		const db = new StubDatabase().answer(lockKeys([]), () => {
			throw broken;
		});
		await expect(exclusive(db, who, async () => "never")).rejects.toBe(broken);
	});
});

describe("charging fulfilled visits", () => {
	const uncharged = ["a", "b", "c"].map(id => ({ id, patientId: `patient-${id}`, consultationFee: "1200" }));

	function service(billingTakes: (appointmentId: string) => boolean) {
		const db = new StubDatabase().answer(unchargedAppointments(), uncharged);
		const warnings: string[] = [];
		return {
			get marked() {
				return db.sent(markCharged("")).map(s => s.values[0]);
			},
			warnings,
			db,
			broker: {
				call: (async (_action: string, params: { appointmentId: string; consultationFee: number }) => {
					expect(params.consultationFee).toBe(1200);
					if (!billingTakes(params.appointmentId)) throw new Error("billing is away");
				}) as never
			},
			logger: { warn: (message: string) => void warnings.push(message) }
		};
	}

	test("each visit billing takes is marked charged", async () => {
		const s = service(() => true);
		await chargeFulfilled(s);
		expect(s.marked).toEqual(["a", "b", "c"]);
		expect(s.warnings).toEqual([]);
	});

	test("the first refusal ends the round: the rest wait for the next, unmarked", async () => {
		const s = service(id => id === "a");
		await chargeFulfilled(s);
		expect(s.marked).toEqual(["a"]);
		expect(s.warnings).toEqual(["Appointment b not charged yet (billing is away); will retry"]);
	});
});
