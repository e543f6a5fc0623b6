import type { Context } from "moleculer";
import type { Database, Queryable } from "../../lib/infra/database";
import { violatedExclusionConstraint } from "../../lib/infra/db-errors";
import { ConflictError, invalidFields } from "../../lib/infra/errors";
import { type AvailabilityWindow, type Interval, withinAvailability } from "../../lib/domain/scheduling";
import { dateOnly, instant } from "../../lib/domain/validation";
import { zonedInstant } from "../../lib/domain/zoned-time";
import { lockKeys } from "./queries";

/** The rules a booking (or a move) must meet: when it may be, with whom, and that it collides with nothing. */

/** The doctor as booking reads it: the answer of `doctors.get`. */
export interface DoctorView {
	id: string;
	timezone: string;
	slotMinutes: number;
	consultationFee: number;
	availability: AvailabilityWindow[];
}

/** When: a `start` instant, or the original API's `date` + `startTime` on the doctor's wall clock. */
export interface WhenInput {
	start?: string;
	date?: string;
	startTime?: string;
	durationMinutes?: number;
}

export const whenParams = {
	start: instant({ optional: true }),
	date: dateOnly({ optional: true }),
	startTime: { type: "string", pattern: /^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$/, optional: true, messages: { stringPattern: "The '{field}' field must be HH:mm or HH:mm:ss." } },
	durationMinutes: { type: "number", integer: true, min: 5, max: 480, optional: true }
};

export const reasonParam = { type: "string", trim: true, max: 500, optional: true };

export function doctorFor(ctx: Context, doctorId: string): Promise<DoctorView> {
	return ctx.call<DoctorView, { id: string }>("doctors.get", { id: doctorId });
}

/** The booking's doctor, once both it and the patient are known to exist: a 422 names every one that does not. */
export async function participants(ctx: Context, patientId: string, doctorId: string): Promise<DoctorView> {
	const [patient, doctor] = await Promise.allSettled([ctx.call("patients.get", { id: patientId }), doctorFor(ctx, doctorId)]);
	const missing = [patient.status === "rejected" && "patientId", doctor.status === "rejected" && "doctorId"].filter(Boolean) as string[];
	for (const result of [patient, doctor]) {
		if (result.status === "rejected" && (result.reason as { code?: number }).code !== 404) throw result.reason;
	}
	if (missing.length) {
		throw invalidFields(missing.map(field => ({ field, message: `The '${field}' field names no ${field === "patientId" ? "patient" : "doctor"}.` })));
	}
	// A merged patient's read answers with a pointer to the survivor, not an error: the visit belongs to the survivor.
	const { mergedInto } = (patient as PromiseFulfilledResult<{ mergedInto?: string }>).value;
	if (mergedInto) throw invalidFields([{ field: "patientId", message: `The 'patientId' field names a patient merged into ${mergedInto}: book for that patient.` }]);
	return (doctor as PromiseFulfilledResult<DoctorView>).value;
}

/** The appointment's time span: in the future, and inside the doctor's availability, in the doctor's zone. */
export function schedule(doctor: DoctorView, when: WhenInput, defaultMinutes: number, now = Date.now()): Interval {
	let start: number;
	if (when.start) start = Date.parse(when.start);
	else if (when.date && when.startTime) start = zonedInstant(when.date, when.startTime.slice(0, 5), doctor.timezone) + Number(when.startTime.slice(6, 8) || 0) * 1000;
	else throw invalidFields([{ field: "start", message: "The 'start' field is required (or the original 'date' and 'startTime')." }]);
	const span = { start, end: start + (when.durationMinutes ?? defaultMinutes) * 60_000 };
	if (span.start <= now) throw invalidFields([{ field: "start", message: "The 'start' field must be in the future." }]);
	if (!withinAvailability(span, doctor.availability, doctor.timezone)) {
		throw invalidFields([{ field: "start", message: `The appointment must lie inside the doctor's availability (${doctor.timezone} wall-clock time).` }]);
	}
	return span;
}

/**
 * Runs a booking write under the exclusion constraints: an overlap is the 409 it means. First it
 * takes a transaction lock for the doctor and one for the patient, always in the same order:
 * bookings that collide on both constraints at once (one patient, two doctors) would otherwise deadlock.
 * Locks named in `first` (a retry key's) are taken before them, and are never taken after them.
 */
export async function exclusive<T>(
	db: Pick<Database, "transaction">,
	who: { doctorId: string; patientId: string },
	work: (tx: Queryable) => Promise<T>,
	first: string[] = []
): Promise<T> {
	try {
		return await db.transaction(async tx => {
			await tx.query(lockKeys([...first, ...[`appointment-doctor:${who.doctorId}`, `appointment-patient:${who.patientId}`].sort()]));
			return work(tx);
		});
	} catch (err) {
		const constraint = violatedExclusionConstraint(err);
		if (constraint) {
			const whose = constraint === "appointments_patient_no_overlap" ? "patient" : "doctor";
			throw new ConflictError(`The ${whose} already has an appointment at that time`, { field: whose === "patient" ? "patientId" : "doctorId" });
		}
		throw err;
	}
}
