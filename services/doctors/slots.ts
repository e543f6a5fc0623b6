import { todayIn } from "../../lib/domain/dates";
import { invalidFields } from "../../lib/infra/errors";
import { type Interval, freeSlots } from "../../lib/domain/scheduling";
import { dayCount, formatZoned } from "../../lib/domain/zoned-time";
import { type Static, Type } from "@sinclair/typebox";
import { Uuid } from "../../lib/domain/schemas";
import type { Doctor } from "./queries";

/** A doctor's free slots over a range of dates on the doctor's wall clock. */

const MAX_SLOT_RANGE_DAYS = 31;

export interface SlotDates {
	date?: string;
	from?: string;
	to?: string;
}

/** The first and last date asked for: `date`, else `from` and `to`, each today in `timeZone` when left out; 422 unless forwards and at most 31 days. */
export function slotDates(asked: SlotDates, timeZone: string): { from: string; to: string } {
	const from = asked.date ?? asked.from ?? todayIn(timeZone);
	const to = asked.date ?? asked.to ?? from;
	const days = dayCount(from, to);
	if (days < 1 || days > MAX_SLOT_RANGE_DAYS) {
		throw invalidFields([{ field: "to", message: `The range from 'from' to 'to' must run forwards and span at most ${MAX_SLOT_RANGE_DAYS} days.` }]);
	}
	return { from, to };
}

/** The instants that hold every window of the dates, in any zone: a day's wall clock never strays more than 14 hours from UTC. */
export function slotInstants({ from, to }: { from: string; to: string }): { from: string; to: string } {
	return {
		from: new Date(Date.parse(`${from}T00:00:00Z`) - 14 * 3_600_000).toISOString(),
		to: new Date(Date.parse(`${to}T00:00:00Z`) + 38 * 3_600_000).toISOString()
	};
}

const ZonedTime = Type.String({ description: "ISO 8601 with the doctor's offset.", examples: ["2026-12-01T09:00:00+00:00"] });

/** A doctor's free slots, in the doctor's zone. */
export const DoctorSlotsSchema = Type.Object({ doctorId: Uuid, timezone: Type.String(), slots: Type.Array(Type.Object({ start: ZonedTime, end: ZonedTime })) });

/** The slots of the doctor's availability on those dates that are free of `busy` and still to come, in the doctor's zone. */
export function doctorSlots(doctor: Doctor, dates: { from: string; to: string }, busy: Interval[], now = Date.now()): Static<typeof DoctorSlotsSchema> {
	const slots = freeSlots({ availability: doctor.availability, timeZone: doctor.timezone, slotMinutes: doctor.slotMinutes, ...dates, busy, now });
	return {
		doctorId: doctor.id,
		timezone: doctor.timezone,
		slots: slots.map(s => ({ start: formatZoned(s.start, doctor.timezone), end: formatZoned(s.end, doctor.timezone) }))
	};
}
