import { type AvailabilityWindow, availabilityProblem } from "../../lib/domain/scheduling";
import { dateOnly } from "../../lib/domain/validation";
import { WEEKDAYS, isTimeZone } from "../../lib/domain/zoned-time";

const HH_MM = /^([01]\d|2[0-3]):[0-5]\d$|^24:00$/;

/** The fields a client writes; the weekly availability is checked as a whole (no overlaps). */
export const doctorFields = {
	name: { type: "string", trim: true, empty: false, max: 100 },
	email: { type: "email", max: 254 },
	specialization: { type: "string", trim: true, empty: false, max: 100 },
	address: { type: "string", trim: true, empty: false, max: 500 },
	joiningDate: dateOnly({ notFuture: true }),
	phone: { type: "string", trim: true, empty: false, max: 32, pattern: /^\+?[0-9 ()./-]{3,32}$/, optional: true, nullable: true },
	timezone: {
		type: "string",
		optional: true,
		max: 64,
		custom(value: unknown, errors: { type: string }[]) {
			if (typeof value === "string" && !isTimeZone(value)) errors.push({ type: "timezone" });
			return value;
		},
		messages: { timezone: "The '{field}' field must be an IANA timezone such as Europe/Berlin." }
	},
	consultationFee: { type: "number", integer: true, min: 0, max: 100_000_000, optional: true },
	slotMinutes: { type: "number", integer: true, min: 5, max: 480, optional: true },
	availability: {
		type: "array",
		optional: true,
		max: 50,
		items: {
			type: "object",
			strict: true,
			props: {
				day: { type: "enum", values: WEEKDAYS },
				start: { type: "string", pattern: HH_MM },
				end: { type: "string", pattern: HH_MM }
			}
		},
		custom(value: unknown, errors: { type: string; actual?: unknown }[]) {
			const problem = Array.isArray(value) ? availabilityProblem(value as AvailabilityWindow[]) : null;
			if (problem) errors.push({ type: "availability", actual: problem });
			return value;
		},
		messages: { availability: "The '{field}' field is not a valid weekly schedule: {actual}." }
	}
};
