import { type Weekday, datesBetween, localParts, weekdayOf, zonedInstant } from "./zoned-time";

/** One weekly window of a doctor's availability, in the doctor's wall-clock time. */
export interface AvailabilityWindow {
	day: Weekday;
	start: string;
	end: string;
}

/** A span of time in epoch milliseconds, start inclusive, end exclusive. */
export interface Interval {
	start: number;
	end: number;
}

const overlaps = (a: Interval, b: Interval) => a.start < b.end && b.start < a.end;

/** The reason a weekly availability is invalid, or null: each window must start before it ends, and no two may overlap. */
export function availabilityProblem(windows: AvailabilityWindow[]): string | null {
	for (const w of windows) {
		if (w.start >= w.end) return `${w.day} ${w.start}–${w.end} must start before it ends`;
	}
	for (let i = 0; i < windows.length; i++) {
		for (let j = i + 1; j < windows.length; j++) {
			const [a, b] = [windows[i], windows[j]];
			if (a.day === b.day && a.start < b.end && b.start < a.end) return `${a.day} ${a.start}–${a.end} overlaps ${b.start}–${b.end}`;
		}
	}
	return null;
}

/** A local date's windows as real instants, read on the doctor's wall clock (so DST moves them, as it moves the doctor). */
export function windowsOn(date: string, availability: AvailabilityWindow[], timeZone: string): Interval[] {
	const day = weekdayOf(date);
	return availability
		.filter(w => w.day === day)
		.map(w => ({ start: zonedInstant(date, w.start, timeZone), end: zonedInstant(date, w.end, timeZone) }))
		.sort((a, b) => a.start - b.start);
}

/** True when the whole of `interval` lies inside one window of the doctor's availability. */
export function withinAvailability(interval: Interval, availability: AvailabilityWindow[], timeZone: string): boolean {
	const { date } = localParts(interval.start, timeZone);
	return windowsOn(date, availability, timeZone).some(w => w.start <= interval.start && interval.end <= w.end);
}

export interface SlotQuery {
	availability: AvailabilityWindow[];
	timeZone: string;
	slotMinutes: number;
	/** Local dates in the doctor's zone, inclusive. */
	from: string;
	to: string;
	/** Active appointments in the range. */
	busy: Interval[];
	/** Slots that start before this are past, and not offered. */
	now: number;
}

/**
 * Free slots: each window cut into slots of `slotMinutes` of real time from its
 * start, a slot that would cross the window's end dropped, minus slots that touch
 * an active appointment and slots already begun.
 */
export function freeSlots(query: SlotQuery): Interval[] {
	const step = query.slotMinutes * 60_000;
	const slots: Interval[] = [];
	for (const date of datesBetween(query.from, query.to)) {
		for (const window of windowsOn(date, query.availability, query.timeZone)) {
			for (let start = window.start; start + step <= window.end; start += step) {
				const slot = { start, end: start + step };
				if (start >= query.now && !query.busy.some(b => overlaps(b, slot))) slots.push(slot);
			}
		}
	}
	return slots;
}
