import { config } from "../infra/config";
import { isRealDate, todayIn } from "./dates";
import { isUuid } from "../infra/sql";

/**
 * A record's id in a path or a body. Any string up to 64 characters passes: one
 * that is not a UUID names no record, so it is a 404, not a validation error.
 */
export const idParam = { type: "string", max: 64 };

interface RuleError {
	type: string;
	actual?: unknown;
}

/**
 * A field that must hold a record's id, by the one definition of an id (`isUuid`).
 * fastest-validator's own `uuid` rule also wants a version digit, so it refused
 * ids (00000000-0000-0000-0000-000000000001) that the gateway and PostgreSQL take.
 */
export function uuidRule({ optional = false, nullable = false }: { optional?: boolean; nullable?: boolean } = {}) {
	return {
		type: "string",
		// Not a fastest-validator option: read by the OpenAPI generator.
		format: "uuid",
		optional,
		nullable,
		custom(value: unknown, errors: RuleError[]) {
			if (typeof value === "string" && !isUuid(value)) errors.push({ type: "uuid", actual: value });
			return value;
		}
	};
}

interface DateRuleOptions {
	optional?: boolean;
	/** Refuse dates after today in the clinic's timezone. */
	notFuture?: boolean;
}

/** A fastest-validator rule for a `YYYY-MM-DD` calendar date that exists. */
export function dateOnly({ optional = false, notFuture = false }: DateRuleOptions = {}) {
	return {
		type: "string",
		// Not a fastest-validator option: read by the OpenAPI generator.
		format: "date",
		optional,
		custom(value: unknown, errors: RuleError[]) {
			if (typeof value !== "string") return value;
			if (!isRealDate(value)) errors.push({ type: "dateOnly", actual: value });
			else if (notFuture && value > todayIn(config.clinicTimezone)) errors.push({ type: "dateNotFuture", actual: value });
			return value;
		},
		messages: {
			dateOnly: "The '{field}' field must be a real date in YYYY-MM-DD format.",
			dateNotFuture: "The '{field}' field cannot be in the future."
		}
	};
}

interface FieldRule {
	optional?: boolean;
	nullable?: boolean;
	[key: string]: unknown;
}

/**
 * Params for a partial update (PATCH): every field becomes optional. A field
 * that may not be null on create may not be set to null either: the broker's
 * validator (lib/infra/validator.ts) allows null only where a rule says `nullable`.
 */
export function partialUpdate(fields: Record<string, FieldRule>, always: Record<string, FieldRule> = {}) {
	return {
		$$root: true,
		type: "object",
		strict: true,
		props: {
			...Object.fromEntries(Object.entries(fields).map(([name, rule]) => [name, { ...rule, optional: true }])),
			...always
		}
	};
}

const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})$/;

/** An instant in ISO 8601 with an explicit offset and a four-digit year, which PostgreSQL and JavaScript both hold. */
function isInstant(value: string): boolean {
	return INSTANT.test(value) && isRealDate(value.slice(0, 10)) && !Number.isNaN(Date.parse(value));
}

/** A fastest-validator rule for an instant in ISO 8601 with an explicit offset (`Z` or `±HH:MM`). */
export function instant({ optional = false }: { optional?: boolean } = {}) {
	return {
		type: "string",
		format: "date-time",
		optional,
		custom(value: unknown, errors: RuleError[]) {
			if (typeof value === "string" && !isInstant(value)) errors.push({ type: "instant", actual: value });
			return value;
		},
		messages: { instant: "The '{field}' field must be a date-time in ISO 8601 with an offset, e.g. 2026-12-01T09:00:00+01:00." }
	};
}

/** A bound of a time-range filter, as a Date: an instant (see `instant`), or a date, meaning its midnight in UTC. */
export function timeBound({ optional = false }: { optional?: boolean } = {}) {
	return {
		type: "string",
		format: "date-time",
		optional,
		custom(value: unknown, errors: RuleError[]) {
			if (typeof value !== "string") return value;
			if (isRealDate(value)) return new Date(`${value}T00:00:00Z`);
			if (isInstant(value)) return new Date(value);
			errors.push({ type: "timeBound", actual: value });
			return value;
		},
		messages: { timeBound: "The '{field}' field must be a date (YYYY-MM-DD) or a date-time in ISO 8601 with an offset." }
	};
}
