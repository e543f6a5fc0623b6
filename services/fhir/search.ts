import { isRealDate } from "../../lib/domain/dates";
import { badRequest } from "./outcome";

/**
 * Reading a FHIR search's query string against a resource's table of search
 * parameters: the same table the CapabilityStatement lists, so the two cannot
 * disagree. Values are ANDed when a parameter repeats; an OR (a comma) is refused.
 */

export type SearchParamType = "token" | "string" | "date" | "reference";

export interface SearchParamDefinition {
	name: string;
	type: SearchParamType;
	/** What it matches, for the CapabilityStatement. */
	documentation: string;
	/** For a reference: the resource types it may name. */
	target?: string[];
	/** For a reference: the target's parameters it may be chained with, e.g. `actor` for `schedule.actor`. */
	chain?: string[];
}

export interface SearchDefinition {
	params: SearchParamDefinition[];
	/** `_sort` values (without `-`) and what each sorts by, for the resource's module. */
	sorts?: string[];
}

/** How a search treats a parameter it does not know: `Prefer: handling=strict` refuses it (400); lenient (the default) ignores it. */
export type Handling = "strict" | "lenient";

export interface SearchRequest {
	/** Each known parameter given, with its values (more than one: all must hold). */
	values: Map<string, string[]>;
	count: number;
	page: number;
	sort?: { name: string; descending: boolean };
	total: "none" | "estimate" | "accurate";
	/** Parameters left out under lenient handling; `self` does not list them. */
	ignored: string[];
}

export const DEFAULT_COUNT = 20;
export const MAX_COUNT = 100;
/** Past this page an offset stops being a list (lib/domain/paging.ts bounds the REST lists alike). */
const MAX_PAGE = 1_000_000;

/** Result parameters MedSync honours on every search. */
export const RESULT_PARAMS = ["_count", "_page", "_sort", "_total"] as const;
/** Handled by the gateway (content negotiation) before a search sees them. */
const GATEWAY_PARAMS = new Set(["_format", "_pretty"]);

function integerIn(name: string, raw: string, min: number, max: number): number {
	if (!/^\d{1,9}$/.test(raw) || Number(raw) < min || Number(raw) > max) throw badRequest(`${name} must be a whole number from ${min} to ${max}`, name);
	return Number(raw);
}

/** A query value as a list of strings: qs turns `a[b]=1` into an object, which no FHIR parameter is. */
function valuesOf(name: string, raw: unknown): string[] {
	const list = Array.isArray(raw) ? raw : [raw];
	if (!list.every(v => typeof v === "string")) throw badRequest(`The search parameter ${name} is malformed`, name);
	for (const value of list as string[]) {
		if (value.length > 256) throw badRequest(`The search parameter ${name} is longer than 256 characters`, name);
		if (/(^|[^\\]),/.test(value)) throw badRequest(`MedSync does not search for one value or another (a comma in ${name}): search once per value`, name);
	}
	return (list as string[]).map(v => v.replace(/\\,/g, ","));
}

function single(name: string, values: string[]): string {
	if (values.length > 1) throw badRequest(`${name} may be given once`, name);
	return values[0];
}

export function parseSearch(query: Record<string, unknown>, definition: SearchDefinition, handling: Handling): SearchRequest {
	const known = new Set(definition.params.flatMap(p => [p.name, ...(p.chain ?? []).map(chained => `${p.name}.${chained}`)]));
	const request: SearchRequest = { values: new Map(), count: DEFAULT_COUNT, page: 1, total: "accurate", ignored: [] };
	for (const [name, raw] of Object.entries(query)) {
		if (GATEWAY_PARAMS.has(name)) continue;
		const values = valuesOf(name, raw);
		if (name === "_count") request.count = integerIn(name, single(name, values), 1, MAX_COUNT);
		else if (name === "_page") request.page = integerIn(name, single(name, values), 1, MAX_PAGE);
		else if (name === "_total") {
			const total = single(name, values);
			if (total !== "none" && total !== "estimate" && total !== "accurate") throw badRequest("_total must be none, estimate or accurate", name);
			request.total = total;
		} else if (name === "_sort") {
			const sort = single(name, values);
			const field = sort.replace(/^-/, "");
			if (!definition.sorts?.includes(field)) {
				throw badRequest(`_sort takes one of ${(definition.sorts ?? []).flatMap(s => [s, `-${s}`]).join(", ") || "nothing here"}`, name);
			}
			request.sort = { name: field, descending: sort.startsWith("-") };
		} else if (known.has(name)) {
			for (const value of values) if (value === "") throw badRequest(`The search parameter ${name} is empty`, name);
			request.values.set(name, values);
		} else if (handling === "strict") {
			throw badRequest(`MedSync does not support the search parameter ${name} here`, name);
		} else request.ignored.push(name);
	}
	return request;
}

/** The one value of a parameter that may appear once, or undefined. */
export function oneValue(request: SearchRequest, name: string): string | undefined {
	const values = request.values.get(name);
	return values ? single(name, values) : undefined;
}

/** The code of a token `system|code`, `|code` or `code`; null for a code of another system than `system`, which nothing of MedSync's has. */
export function tokenCode(name: string, value: string, system?: string): string | null {
	const bar = value.indexOf("|");
	if (bar < 0) return value;
	const [given, code] = [value.slice(0, bar), value.slice(bar + 1)];
	if (!code) throw badRequest(`${name} needs a code after the '|'`, name);
	return given && given !== system ? null : code;
}

const ID = /^[A-Za-z0-9\-.]{1,64}$/;

/** The id of a reference `Type/id`, `id` or a URL ending in `Type/id`, to one of `types`. */
export function referenceId(name: string, value: string, types: string[]): string {
	const match = /(?:^|\/)([A-Z][A-Za-z]+)\/([^/]+)$/.exec(value);
	const [type, id] = match ? [match[1], match[2]] : [types[0], value];
	if (!types.includes(type)) throw badRequest(`${name} refers to ${types.join(" or ")}, not ${type}`, name);
	if (!ID.test(id)) throw badRequest(`${name} names no ${type} id`, name);
	return id;
}

/** An interval of time, epoch ms: from inclusive, to exclusive; either end open. */
export interface TimeRange {
	from?: number;
	to?: number;
}

const DATE_VALUE = /^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

/** The instants a date value covers, [start, end), at its precision; a date or time without a zone is UTC's. */
function dateSpan(name: string, value: string): { prefix: string; start: number; end: number } {
	const m = DATE_VALUE.exec(value);
	if (!m) throw badRequest(`${name} must be a date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime), optionally after eq, gt, ge, lt or le`, name);
	const [, prefix = "eq", year, month, day, hour, minute, second, fraction, zone] = m;
	if (!["eq", "gt", "ge", "lt", "le"].includes(prefix)) throw badRequest(`${name}: MedSync supports the prefixes eq, gt, ge, lt and le, not ${prefix}`, name);
	const y = Number(year);
	if (month && !isRealDate(`${year}-${month}-${day ?? "01"}`)) throw badRequest(`${name} is not a real date`, name);
	if (hour !== undefined && (Number(hour) > 23 || Number(minute) > 59 || Number(second ?? 0) > 59)) throw badRequest(`${name} is not a real time`, name);
	if (hour === undefined) {
		const start = Date.UTC(y, month ? Number(month) - 1 : 0, day ? Number(day) : 1);
		const end = day ? Date.UTC(y, Number(month) - 1, Number(day) + 1) : month ? Date.UTC(y, Number(month), 1) : Date.UTC(y + 1, 0, 1);
		return { prefix, start, end };
	}
	const start = Date.parse(`${year}-${month}-${day}T${hour}:${minute}:${second ?? "00"}${fraction ?? ""}${zone ?? "Z"}`);
	const step = second === undefined ? 60_000 : fraction ? 1 : 1000;
	return { prefix, start, end: start + step };
}

/** Every value of a date parameter, intersected: `date=ge2026-01-01&date=lt2026-02-01` is January. */
export function dateRange(name: string, values: string[]): TimeRange {
	const range: TimeRange = {};
	const narrowFrom = (t: number) => (range.from = range.from === undefined ? t : Math.max(range.from, t));
	const narrowTo = (t: number) => (range.to = range.to === undefined ? t : Math.min(range.to, t));
	for (const value of values) {
		const { prefix, start, end } = dateSpan(name, value);
		if (prefix === "eq" || prefix === "ge") narrowFrom(start);
		if (prefix === "eq" || prefix === "le") narrowTo(end);
		if (prefix === "gt") narrowFrom(end);
		if (prefix === "lt") narrowTo(start);
	}
	return range;
}

/** An instant as `YYYY-MM-DD` in UTC: the day it falls in. */
export function utcDate(instant: number): string {
	return new Date(instant).toISOString().slice(0, 10);
}
