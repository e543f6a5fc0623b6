import { localParts } from "./zoned-time";

const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;

/** True for a `YYYY-MM-DD` string naming a day that exists (2024-02-29 yes, 2023-02-30 no). */
export function isRealDate(value: string): boolean {
	const match = DATE_ONLY.exec(value);
	if (!match) return false;
	const [year, month, day] = match.slice(1).map(Number);
	const date = new Date(Date.UTC(year, month - 1, day));
	return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/** Today's date, `YYYY-MM-DD`, as a wall calendar in `timeZone` shows it. */
export function todayIn(timeZone: string, now: Date = new Date()): string {
	// Every zone's offset today is a whole number of minutes, so the date changes only on a minute boundary:
	// asked many times a second (every registration, every date check), it is worked out once a minute.
	const minute = Math.floor(now.getTime() / 60_000);
	const known = todayByZone.get(timeZone);
	if (known?.minute === minute) return known.date;
	const date = localParts(now.getTime(), timeZone).date;
	todayByZone.set(timeZone, { minute, date });
	return date;
}

const todayByZone = new Map<string, { minute: number; date: string }>();
