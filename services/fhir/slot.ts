import type { Slot } from "@medplum/fhirtypes";
import { todayIn } from "../../lib/domain/dates";
import { DOCTOR_READERS } from "../../lib/domain/roles";
import { dayCount, localParts } from "../../lib/domain/zoned-time";
import { isUuid } from "../../lib/infra/sql";
import { NotFoundError } from "../../lib/infra/errors";
import { readDoctor } from "./doctor-directory";
import { callDomain } from "./domain";
import { badRequest } from "./outcome";
import type { FhirContext, ResourceDefinition } from "./resource";
import { type SearchRequest, dateRange, oneValue, referenceId, tokenCode } from "./search";

/**
 * Slot ⇄ a doctor's free slot (`doctors.slots`): computed from the weekly
 * availability and the bookings, never stored. Its id names the doctor and the
 * start (`<doctor id>-<YYYYMMDDHHmm>`, UTC), so it resolves while the slot is free.
 */

interface FreeSlots {
	doctorId: string;
	timezone: string;
	slots: { start: string; end: string }[];
}

/** What doctors.slots covers at once. */
const MAX_DAYS = 31;
/** A search without a start covers this week. */
const DEFAULT_DAYS = 7;

const compact = (instant: number) => new Date(instant).toISOString().slice(0, 16).replace(/[-:T]/g, "");

export function slotId(doctorId: string, start: string): string {
	return `${doctorId}-${compact(Date.parse(start))}`;
}

function toFhirSlot(doctorId: string, slot: { start: string; end: string }): Slot {
	return { resourceType: "Slot", id: slotId(doctorId, slot.start), schedule: { reference: `Schedule/${doctorId}` }, status: "free", start: slot.start, end: slot.end };
}

/** The doctor and start instant a slot id names, or undefined. */
export function parseSlotId(id: string): { doctorId: string; start: number } | undefined {
	const match = /^(.{36})-(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(id);
	if (!match || !isUuid(match[1])) return undefined;
	const start = Date.parse(`${match[2]}-${match[3]}-${match[4]}T${match[5]}:${match[6]}:00Z`);
	return Number.isNaN(start) ? undefined : { doctorId: match[1], start };
}

async function freeSlots(ctx: FhirContext, doctorId: string, from: string, to: string): Promise<FreeSlots> {
	return callDomain<FreeSlots>(ctx, "doctors.slots", { id: doctorId, from, to });
}

/** The free slot with this id, or a 404: booked, past, outside the hours, or no such doctor. */
export async function findFreeSlot(ctx: FhirContext, id: string): Promise<Slot> {
	const named = parseSlotId(id);
	if (named) {
		const doctor = await readDoctor(ctx, named.doctorId);
		const date = localParts(named.start, doctor.timezone).date;
		const { slots } = await freeSlots(ctx, doctor.id, date, date);
		const slot = slots.find(s => Date.parse(s.start) === named.start);
		if (slot) return toFhirSlot(doctor.id, slot);
	}
	throw new NotFoundError("Slot", id);
}

async function searchSlots(ctx: FhirContext, request: SearchRequest) {
	const schedule = oneValue(request, "schedule");
	const actor = oneValue(request, "schedule.actor");
	if (!schedule && !actor) throw badRequest("A Slot search names its schedule: schedule=Schedule/<id> or schedule.actor=Practitioner/<id>", "schedule");
	const ids = [schedule && referenceId("schedule", schedule, ["Schedule"]), actor && referenceId("schedule.actor", actor, ["Practitioner"])].filter(Boolean);
	if (ids.length === 2 && ids[0] !== ids[1]) return { resources: [], total: 0 };
	const status = oneValue(request, "status");
	if (status !== undefined && tokenCode("status", status, "http://hl7.org/fhir/slotstatus") !== "free") {
		throw badRequest("MedSync lists free slots only: status=free", "status");
	}
	const doctor = await readDoctor(ctx, ids[0]!);
	const range = dateRange("start", request.values.get("start") ?? []);
	const from = range.from === undefined ? todayIn(doctor.timezone) : localParts(Math.max(range.from, Date.now()), doctor.timezone).date;
	const to = range.to === undefined ? localParts(Date.parse(`${from}T12:00:00Z`) + (DEFAULT_DAYS - 1) * 86_400_000, "UTC").date : localParts(range.to - 1, doctor.timezone).date;
	if (to < from) return { resources: [], total: 0 };
	if (dayCount(from, to) > MAX_DAYS) throw badRequest(`A Slot search covers at most ${MAX_DAYS} days of start`, "start");
	const { slots } = await freeSlots(ctx, doctor.id, from, to);
	const kept = slots.filter(s => (range.from === undefined || Date.parse(s.start) >= range.from) && (range.to === undefined || Date.parse(s.start) < range.to));
	const first = (request.page - 1) * request.count;
	return { resources: kept.slice(first, first + request.count).map(s => toFhirSlot(doctor.id, s)), total: kept.length };
}

export const slotResource: ResourceDefinition<Slot> = {
	type: "Slot",
	documentation: `A doctor's free slot, computed from the Schedule and the bookings; its id is <doctor id>-<start as YYYYMMDDHHmm, UTC> and resolves while the slot is free. Searches cover at most ${MAX_DAYS} days, this week when start is left out.`,
	read: { roles: DOCTOR_READERS, run: findFreeSlot },
	search: {
		roles: DOCTOR_READERS,
		params: [
			{ name: "schedule", type: "reference", target: ["Schedule"], chain: ["actor"], documentation: "Schedule/<id>, or chained as schedule.actor=Practitioner/<id>: the doctor whose slots. Required." },
			{ name: "start", type: "date", documentation: "When the slot starts; prefixes eq, gt, ge, lt, le." },
			{ name: "status", type: "token", documentation: "free (the only status listed)." }
		],
		run: searchSlots
	}
};
