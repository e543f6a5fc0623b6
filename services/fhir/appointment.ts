import type { Appointment, AppointmentParticipant, Reference } from "@medplum/fhirtypes";
import { applyPatch } from "rfc6902";
import type { Page } from "../../lib/domain/paging";
import { checkIfMatch } from "../../lib/infra/http";
import { APPOINTMENT_ATTENDANTS, APPOINTMENT_READERS, APPOINTMENT_SCHEDULERS } from "../../lib/domain/roles";
import type { Appointment as AppointmentRecord } from "../appointments/queries";
import { callDomain, noneIfNotFound } from "./domain";
import { arrayAt, onlyElements, referencedId, resourceOf, stringAt, stringElements } from "./input";
import { badRequest, unprocessable } from "./outcome";
import type { FhirContext, ResourceDefinition } from "./resource";
import { type SearchRequest, dateRange, oneValue, referenceId, tokenCode } from "./search";
import { parseSlotId } from "./slot";

/**
 * Appointment ⇄ a booking (`appointments.*`). A create books (the same
 * no-overlap rule: a clash is 409); a change of status by PUT or PATCH is the
 * lifecycle's step (cancel, arrive, fulfil, no-show), a change of start a reschedule.
 */

const TYPE = "Appointment";
const STATUSES = ["booked", "arrived", "fulfilled", "cancelled", "noshow"] as const;
const STORED = ["id", "meta", "text", "status", "cancelationReason", "description", "start", "end", "minutesDuration", "created", "slot", "participant"] as const;

const PATHS: Record<string, string> = {
	patientId: "Appointment.participant",
	doctorId: "Appointment.participant",
	start: "Appointment.start",
	durationMinutes: "Appointment.minutesDuration",
	reason: "Appointment.description",
	id: "Appointment.id"
};

/** The lifecycle's action for each status an appointment can move to. */
const STEP_ACTIONS: Partial<Record<(typeof STATUSES)[number], string>> = {
	arrived: "appointments.arrive",
	fulfilled: "appointments.fulfil",
	noshow: "appointments.noShow",
	cancelled: "appointments.cancel"
};

export function toFhirAppointment(a: AppointmentRecord): Appointment {
	const participant = (reference: string): AppointmentParticipant => ({ actor: { reference }, required: "required", status: "accepted" });
	return {
		resourceType: TYPE,
		id: a.id,
		meta: { versionId: String(a.version), lastUpdated: a.updatedAt },
		status: a.status,
		// FHIR allows a reason for a cancelled or no-show appointment only (app-4).
		...(a.cancellationReason && (a.status === "cancelled" || a.status === "noshow") && { cancelationReason: { text: a.cancellationReason } }),
		...(a.reason && { description: a.reason }),
		start: a.start,
		end: a.end,
		minutesDuration: a.durationMinutes,
		created: a.createdAt,
		participant: [participant(`Patient/${a.patientId}`), participant(`Practitioner/${a.doctorId}`)]
	};
}

interface Booking {
	patientId: string;
	doctorId: string;
	start?: string;
	durationMinutes?: number;
	reason?: string;
	status?: string;
	cancellationReason?: string;
}

/** What an Appointment asks of the booking: its patient and doctor, when and for how long, and the status it wants. */
function bookingOf(body: unknown): Booking {
	const resource = resourceOf<Appointment>(body, TYPE);
	const r = resource as unknown as Record<string, unknown>;
	onlyElements(resource, TYPE, STORED);
	const participants = arrayAt<AppointmentParticipant>(r, TYPE, "participant");
	const reason = resource.cancelationReason;
	if (reason !== undefined) stringElements(typeof reason === "object" && reason !== null ? reason : { text: reason }, "Appointment.cancelationReason", ["text"]);
	const actors = participants.map(p => p.actor?.reference ?? "");
	const patients = participants.filter(p => /(^|\/)Patient\//.test(p.actor?.reference ?? ""));
	const doctors = participants.filter(p => /(^|\/)Practitioner\//.test(p.actor?.reference ?? ""));
	if (patients.length !== 1 || doctors.length !== 1 || actors.length !== 2) {
		throw unprocessable([{ field: "Appointment.participant", message: "An appointment has two participants: one Patient and one Practitioner." }]);
	}
	const booking: Booking = {
		patientId: referencedId(patients[0].actor, ["Patient"], "Appointment.participant"),
		doctorId: referencedId(doctors[0].actor, ["Practitioner"], "Appointment.participant"),
		status: stringAt(r, TYPE, "status"),
		reason: stringAt(r, TYPE, "description"),
		cancellationReason: resource.cancelationReason?.text
	};
	const slots = arrayAt<Reference>(r, TYPE, "slot");
	if (slots.length > 1) throw unprocessable([{ field: "Appointment.slot", message: "An appointment takes one slot." }]);
	const start = stringAt(r, TYPE, "start");
	const end = stringAt(r, TYPE, "end");
	if (slots.length) {
		const slot = parseSlotId(referencedId(slots[0], ["Slot"], "Appointment.slot"));
		if (!slot || slot.doctorId !== booking.doctorId) throw unprocessable([{ field: "Appointment.slot", message: "The slot is not one of the practitioner's." }]);
		if (start !== undefined && Date.parse(start) !== slot.start) throw unprocessable([{ field: "Appointment.start", message: "The start is not the slot's." }]);
		booking.start = new Date(slot.start).toISOString();
	} else booking.start = start;
	const minutes = resource.minutesDuration;
	if (minutes !== undefined && (!Number.isInteger(minutes) || minutes < 1)) throw unprocessable([{ field: "Appointment.minutesDuration", message: "minutesDuration is a positive whole number." }]);
	if (end !== undefined && booking.start !== undefined) {
		const span = (Date.parse(end) - Date.parse(booking.start)) / 60_000;
		if (!Number.isInteger(span) || span < 1 || (minutes !== undefined && minutes !== span)) {
			throw unprocessable([{ field: "Appointment.end", message: "The end must come a whole number of minutes after the start, and agree with minutesDuration." }]);
		}
		booking.durationMinutes = span;
	} else if (minutes !== undefined) booking.durationMinutes = minutes;
	return booking;
}

async function book(ctx: FhirContext, body: Appointment): Promise<Appointment> {
	const { status, cancellationReason, ...booking } = bookingOf(body);
	if (status !== "booked") throw unprocessable([{ field: "Appointment.status", message: "A new appointment is booked: status 'booked'." }]);
	if (cancellationReason !== undefined) throw unprocessable([{ field: "Appointment.cancelationReason", message: "A new appointment has no cancelation reason." }]);
	if (booking.start === undefined) throw unprocessable([{ field: "Appointment.start", message: "Appointment.start (or a slot) is required.", type: "required" }]);
	return toFhirAppointment(await callDomain<AppointmentRecord>(ctx, "appointments.book", booking));
}

/** Applies what a new version of the appointment changes: its status (a lifecycle step) or its time (a reschedule), one at a time. */
async function change(ctx: FhirContext, id: string, body: Appointment): Promise<Appointment> {
	const wanted = bookingOf(body);
	const current = await callDomain<AppointmentRecord>(ctx, "appointments.get", { id });
	if (wanted.patientId !== current.patientId || wanted.doctorId !== current.doctorId) {
		throw unprocessable([{ field: "Appointment.participant", message: "An appointment's patient and practitioner do not change: book another." }]);
	}
	const moved = wanted.start !== undefined && Date.parse(wanted.start) !== Date.parse(current.start);
	const resized = wanted.durationMinutes !== undefined && wanted.durationMinutes !== current.durationMinutes;
	if (wanted.status !== current.status) {
		if (moved || resized) throw unprocessable([{ field: "Appointment.status", message: "Change the status or the time, not both at once." }]);
		const action = STEP_ACTIONS[wanted.status as keyof typeof STEP_ACTIONS];
		if (!action) throw unprocessable([{ field: "Appointment.status", message: `MedSync cannot move an appointment to '${wanted.status}'.` }]);
		if (wanted.status === "cancelled" && !wanted.cancellationReason?.trim()) {
			throw unprocessable([{ field: "Appointment.cancelationReason", message: "A cancellation needs cancelationReason.text." }]);
		}
		const reason = wanted.status === "cancelled" ? { reason: wanted.cancellationReason } : {};
		return toFhirAppointment(await callDomain<AppointmentRecord>(ctx, action, { id, ...reason }));
	}
	if (moved || resized) {
		return toFhirAppointment(
			await callDomain<AppointmentRecord>(ctx, "appointments.reschedule", { id, start: wanted.start ?? current.start, ...(wanted.durationMinutes && { durationMinutes: wanted.durationMinutes }) })
		);
	}
	// Nothing to change: still, a stale If-Match is told, as a change would be.
	checkIfMatch(ctx.meta, "Appointment", current.version);
	return toFhirAppointment(current);
}

/** A JSON Patch applied to the appointment as FHIR shows it, then taken as a PUT of the result. */
async function patch(ctx: FhirContext, id: string, operations: unknown[]): Promise<Appointment> {
	const current = toFhirAppointment(await callDomain<AppointmentRecord>(ctx, "appointments.get", { id }));
	let results: unknown[];
	try {
		results = applyPatch(current, operations as Parameters<typeof applyPatch>[1]);
	} catch {
		throw badRequest("The JSON Patch is malformed");
	}
	const failed = results.findIndex(result => result !== null);
	if (failed >= 0) throw unprocessable([{ field: "Appointment", message: `Patch operation ${failed} failed: ${(results[failed] as Error).message}` }]);
	if (current.id !== id || current.resourceType !== TYPE) throw unprocessable([{ field: "Appointment.id", message: "A patch does not change the resource's type or id." }]);
	return change(ctx, id, current);
}

async function searchAppointments(ctx: FhirContext, request: SearchRequest) {
	const id = oneValue(request, "_id");
	const patient = oneValue(request, "patient");
	const practitioner = oneValue(request, "practitioner");
	const status = oneValue(request, "status");
	const range = dateRange("date", request.values.get("date") ?? []);
	const code = status && tokenCode("status", status, "http://hl7.org/fhir/appointmentstatus");
	// FHIR's other statuses (proposed, pending, …) never occur in MedSync: nothing matches them.
	if (code === null || (code && !(STATUSES as readonly string[]).includes(code))) return { resources: [], total: 0 };
	const criteria = {
		...(patient && { patientId: referenceId("patient", patient, ["Patient"]) }),
		...(practitioner && { doctorId: referenceId("practitioner", practitioner, ["Practitioner"]) }),
		...(code && { status: code }),
		...(range.from !== undefined && { from: new Date(range.from).toISOString() }),
		...(range.to !== undefined && { to: new Date(range.to).toISOString() })
	};
	if (id) {
		const found = await callDomain<AppointmentRecord>(ctx, "appointments.get", { id }).then(a => [a], noneIfNotFound<AppointmentRecord>);
		const kept = found.filter(
			a =>
				(!criteria.patientId || a.patientId === criteria.patientId) &&
				(!criteria.doctorId || a.doctorId === criteria.doctorId) &&
				(!criteria.status || a.status === criteria.status) &&
				(range.from === undefined || Date.parse(a.start) >= range.from) &&
				(range.to === undefined || Date.parse(a.start) < range.to)
		);
		return { resources: request.page === 1 ? kept.map(toFhirAppointment) : [], total: kept.length };
	}
	const page = await callDomain<Page<AppointmentRecord>>(ctx, "appointments.list", { ...criteria, page: request.page, pageSize: request.count });
	return { resources: page.rows.map(toFhirAppointment), total: page.total };
}

export const appointmentResource: ResourceDefinition<Appointment> = {
	type: TYPE,
	audit: "patient",
	versioning: "versioned-update",
	documentation:
		"A booking between one Patient and one Practitioner. Create books it (status booked; start and end or minutesDuration, or a free Slot): an overlap is 409. A PUT or PATCH changes the status (cancelled with cancelationReason.text, arrived, fulfilled, noshow) or the time, one at a time, with the roles of the matching REST action.",
	paths: PATHS,
	read: { roles: APPOINTMENT_READERS, run: async (ctx, id) => toFhirAppointment(await callDomain<AppointmentRecord>(ctx, "appointments.get", { id })) },
	search: {
		roles: APPOINTMENT_READERS,
		params: [
			{ name: "_id", type: "token", documentation: "The appointment's id." },
			{ name: "patient", type: "reference", target: ["Patient"], documentation: "Patient/<id>." },
			{ name: "practitioner", type: "reference", target: ["Practitioner"], documentation: "Practitioner/<id>." },
			{ name: "date", type: "date", documentation: "When the appointment starts; prefixes eq, gt, ge, lt, le (a date without a time is UTC's)." },
			{ name: "status", type: "token", documentation: "booked, arrived, fulfilled, cancelled or noshow." }
		],
		run: searchAppointments
	},
	create: { roles: APPOINTMENT_SCHEDULERS, run: book },
	// Each change is checked again against the roles of the lifecycle action it becomes (services/fhir/domain.ts).
	update: { roles: APPOINTMENT_ATTENDANTS, run: change },
	patch: { roles: APPOINTMENT_ATTENDANTS, run: patch }
};
