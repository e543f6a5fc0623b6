/**
 * Wall-clock time in an IANA timezone, DST included, with nothing but Intl.
 * Instants are epoch milliseconds; local dates are `YYYY-MM-DD`, local times `HH:mm`.
 */

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
	let f = formatters.get(timeZone);
	if (!f) {
		f = new Intl.DateTimeFormat("en-US", {
			timeZone,
			hourCycle: "h23",
			year: "numeric",
			month: "2-digit",
			day: "2-digit",
			hour: "2-digit",
			minute: "2-digit",
			second: "2-digit",
			weekday: "long"
		});
		formatters.set(timeZone, f);
	}
	return f;
}

export interface LocalParts {
	date: string;
	time: string;
	seconds: string;
	weekday: string;
}

/** The wall clock in `timeZone` at `instant`. */
export function localParts(instant: number, timeZone: string): LocalParts {
	const parts = Object.fromEntries(formatter(timeZone).formatToParts(new Date(instant)).map(p => [p.type, p.value]));
	return {
		date: `${parts.year}-${parts.month}-${parts.day}`,
		time: `${parts.hour}:${parts.minute}`,
		seconds: parts.second,
		weekday: parts.weekday.toLowerCase()
	};
}

/** Minutes the zone is ahead of UTC at `instant` (e.g. 60 for Berlin in winter). */
export function offsetMinutes(instant: number, timeZone: string): number {
	return offsetOf(instant, localParts(instant, timeZone));
}

/** The offset, from the wall clock already read at `instant`. */
function offsetOf(instant: number, { date, time, seconds }: LocalParts): number {
	const asUtc = Date.parse(`${date}T${time}:${seconds}Z`);
	return Math.round((asUtc - Math.floor(instant / 1000) * 1000) / 60_000);
}

/**
 * The instant a wall clock in `timeZone` shows `date` `time`. In the hour a DST
 * change repeats, the earlier instant; in the hour it skips, the clock is read
 * with the offset from before the change (02:30 on a spring-forward night is 03:30).
 */
export function zonedInstant(date: string, time: string, timeZone: string): number {
	const wall = Date.parse(`${date}T${time}:00Z`);
	const candidates = [wall - offsetMinutes(wall - 86_400_000, timeZone) * 60_000, wall - offsetMinutes(wall + 86_400_000, timeZone) * 60_000];
	const exact = candidates.filter(c => wall - c === offsetMinutes(c, timeZone) * 60_000).sort((a, b) => a - b);
	return exact[0] ?? candidates[0];
}

/** ISO 8601 with the zone's offset at that instant, e.g. 2026-03-30T09:00:00+02:00. */
export function formatZoned(instant: number, timeZone: string): string {
	const parts = localParts(instant, timeZone);
	const { date, time, seconds } = parts;
	const offset = offsetOf(instant, parts);
	const sign = offset < 0 ? "-" : "+";
	const abs = Math.abs(offset);
	return `${date}T${time}:${seconds}${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

export function isTimeZone(name: string): boolean {
	try {
		new Intl.DateTimeFormat("en", { timeZone: name });
		return true;
	} catch {
		return false;
	}
}

/** The local dates from `from` to `to`, inclusive. */
/** Calendar days from `from` to `to`, both counted: 1 for one day, 0 or less when `to` comes first. Counted, not listed, so a huge range costs nothing. */
export function dayCount(from: string, to: string): number {
	return (Date.parse(`${to}T00:00:00Z`) - Date.parse(`${from}T00:00:00Z`)) / 86_400_000 + 1;
}

export function datesBetween(from: string, to: string): string[] {
	const dates: string[] = [];
	for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`); t += 86_400_000) {
		dates.push(new Date(t).toISOString().slice(0, 10));
	}
	return dates;
}

export const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] as const;
export type Weekday = (typeof WEEKDAYS)[number];

/** The weekday of a calendar date (the same everywhere). */
export function weekdayOf(date: string): Weekday {
	return WEEKDAYS[(new Date(`${date}T00:00:00Z`).getUTCDay() + 6) % 7];
}
