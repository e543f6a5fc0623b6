import type { Statement } from "../../lib/infra/database";
import { onFirstDelivery } from "../../lib/domain/patient-events";

/** Every statement of analytics: registrations and merges per day, and nothing personal. */

/** A day's registrations, as stored; a day without any has no row. */
export interface RegistrationDay {
	/** `YYYY-MM-DD`. */
	day: string;
	count: number;
}

/**
 * Counts a registration on its day, once however often its event ($1) is
 * delivered. Every registration of a day updates one row: a single statement
 * holds that row's lock for the least time.
 */
export function countRegistration(eventId: string, day: string): Statement {
	return {
		text: onFirstDelivery(
			"INSERT INTO registrations_daily (day, count) SELECT $2::date, 1 FROM first_delivery ON CONFLICT (day) DO UPDATE SET count = registrations_daily.count + 1"
		),
		values: [eventId, day]
	};
}

/** The days from `from` to `to` that had registrations. */
export function registrationsBetween(from: string, to: string): Statement {
	return { text: "SELECT to_char(day, 'YYYY-MM-DD') AS day, count FROM registrations_daily WHERE day BETWEEN $1 AND $2", values: [from, to] };
}

/** Counts a merge of duplicate patients on its day, once however often its event ($1) is delivered. */
export function countMerge(eventId: string, day: string): Statement {
	return {
		text: onFirstDelivery(
			"INSERT INTO merges_daily (day, count) SELECT $2::date, 1 FROM first_delivery ON CONFLICT (day) DO UPDATE SET count = merges_daily.count + 1"
		),
		values: [eventId, day]
	};
}

/** The days from `from` to `to` that had merges. */
export function mergesBetween(from: string, to: string): Statement {
	return { text: "SELECT to_char(day, 'YYYY-MM-DD') AS day, count FROM merges_daily WHERE day BETWEEN $1 AND $2", values: [from, to] };
}
