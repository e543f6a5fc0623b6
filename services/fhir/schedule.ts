import type { Schedule } from "@medplum/fhirtypes";
import { DOCTOR_READERS } from "../../lib/domain/roles";
import type { Doctor } from "../doctors/queries";
import { TIMEZONE_EXTENSION } from "./conventions";
import { findDoctors, readDoctor } from "./doctor-directory";
import type { ResourceDefinition } from "./resource";
import { oneValue, referenceId } from "./search";

/** Schedule ⇄ a doctor's weekly availability: one per doctor, with the doctor's id; its free Slots are computed from it. */

function hoursText(d: Doctor): string {
	const hours = d.availability.map(w => `${w.day} ${w.start}-${w.end}`).join(", ");
	return `${hours || "No hours"} (${d.timezone}); slots of ${d.slotMinutes} minutes`;
}

export function toFhirSchedule(d: Doctor): Schedule {
	return {
		resourceType: "Schedule",
		id: d.id,
		meta: { lastUpdated: d.updatedAt },
		extension: [{ url: TIMEZONE_EXTENSION, valueCode: d.timezone }],
		active: true,
		specialty: [{ text: d.specialization }],
		actor: [{ reference: `Practitioner/${d.id}`, display: d.name }],
		comment: hoursText(d)
	};
}

export const scheduleResource: ResourceDefinition<Schedule> = {
	type: "Schedule",
	documentation: "A doctor's weekly availability, with the doctor's id; the hours in comment, the doctor as actor. Its free slots: Slot?schedule=Schedule/<id>.",
	read: { roles: DOCTOR_READERS, run: async (ctx, id) => toFhirSchedule(await readDoctor(ctx, id)) },
	search: {
		roles: DOCTOR_READERS,
		params: [
			{ name: "_id", type: "token", documentation: "The doctor's id." },
			{ name: "actor", type: "reference", target: ["Practitioner"], documentation: "Practitioner/<id>: that doctor's schedule." }
		],
		async run(ctx, request) {
			const actor = oneValue(request, "actor");
			const id = oneValue(request, "_id");
			const doctorId = actor ? referenceId("actor", actor, ["Practitioner"]) : id;
			if (actor && id && doctorId !== id) return { resources: [], total: 0 };
			const { doctors, total } = await findDoctors(ctx, request, { id: doctorId });
			return { resources: doctors.map(toFhirSchedule), total };
		}
	}
};
