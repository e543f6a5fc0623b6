import type { ContactPoint, Practitioner } from "@medplum/fhirtypes";
import { DOCTOR_READERS } from "../../lib/domain/roles";
import type { Doctor } from "../doctors/queries";
import { findDoctors, readDoctor } from "./doctor-directory";
import type { ResourceDefinition } from "./resource";
import { oneValue } from "./search";

/** Practitioner ⇄ a doctor (`doctors.*`): the person; the role they play (specialty, hours, fee) is their PractitionerRole. */

export function doctorTelecom(d: Doctor): ContactPoint[] {
	const telecom: ContactPoint[] = [{ system: "email", value: d.email, use: "work" }];
	if (d.phone) telecom.push({ system: "phone", value: d.phone, use: "work" });
	return telecom;
}

export function toFhirPractitioner(d: Doctor): Practitioner {
	return {
		resourceType: "Practitioner",
		id: d.id,
		meta: { lastUpdated: d.updatedAt },
		active: true,
		name: [{ text: d.name }],
		telecom: doctorTelecom(d),
		address: [{ use: "work", text: d.address }]
	};
}

export const practitionerResource: ResourceDefinition<Practitioner> = {
	type: "Practitioner",
	documentation: "A doctor: name (text), work email and phone, work address. Read-only here: doctors are kept through the REST API.",
	read: { roles: DOCTOR_READERS, run: async (ctx, id) => toFhirPractitioner(await readDoctor(ctx, id)) },
	search: {
		roles: DOCTOR_READERS,
		params: [
			{ name: "_id", type: "token", documentation: "The doctor's id." },
			{ name: "name", type: "string", documentation: "The start of the doctor's full name, in any case." }
		],
		async run(ctx, request) {
			const { doctors, total } = await findDoctors(ctx, request, { id: oneValue(request, "_id"), name: oneValue(request, "name") });
			return { resources: doctors.map(toFhirPractitioner), total };
		}
	}
};
