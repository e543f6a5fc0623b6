import type { Money, PractitionerRole, PractitionerRoleAvailableTime } from "@medplum/fhirtypes";
import { config } from "../../lib/infra/config";
import { DOCTOR_READERS } from "../../lib/domain/roles";
import type { Doctor } from "../doctors/queries";
import { CONSULTATION_FEE_EXTENSION, TIMEZONE_EXTENSION } from "./conventions";
import { findDoctors, readDoctor } from "./doctor-directory";
import { doctorTelecom } from "./practitioner";
import type { ResourceDefinition } from "./resource";
import { oneValue, referenceId } from "./search";

/** PractitionerRole ⇄ a doctor's practice: specialty, weekly hours (the doctor's wall clock), fee. One per doctor, with the doctor's id. */

const DAYS = { monday: "mon", tuesday: "tue", wednesday: "wed", thursday: "thu", friday: "fri", saturday: "sat", sunday: "sun" } as const;

/** FHIR's time stops at 23:59:59; a window to midnight ends there. */
const fhirTime = (hhmm: string) => (hhmm === "24:00" ? "23:59:59" : `${hhmm}:00`);

export function availableTimes(d: Doctor): PractitionerRoleAvailableTime[] {
	return d.availability.map(w => ({ daysOfWeek: [DAYS[w.day]], availableStartTime: fhirTime(w.start), availableEndTime: fhirTime(w.end) }));
}

export function toFhirPractitionerRole(d: Doctor): PractitionerRole {
	const hours = availableTimes(d);
	return {
		resourceType: "PractitionerRole",
		id: d.id,
		meta: { lastUpdated: d.updatedAt },
		extension: [
			// Minor units to the currency's decimal amount: the fee is kept in cents.
			{ url: CONSULTATION_FEE_EXTENSION, valueMoney: { value: d.consultationFee / 100, currency: config.billingCurrency as Money["currency"] } },
			{ url: TIMEZONE_EXTENSION, valueCode: d.timezone }
		],
		active: true,
		period: { start: d.joiningDate },
		practitioner: { reference: `Practitioner/${d.id}`, display: d.name },
		specialty: [{ text: d.specialization }],
		telecom: doctorTelecom(d),
		...(hours.length && { availableTime: hours })
	};
}

export const practitionerRoleResource: ResourceDefinition<PractitionerRole> = {
	type: "PractitionerRole",
	documentation: `A doctor's practice, with the doctor's id: specialty (text), weekly availableTime on the doctor's wall clock (its IANA zone in ${TIMEZONE_EXTENSION}), the consultation fee in ${CONSULTATION_FEE_EXTENSION}.`,
	read: { roles: DOCTOR_READERS, run: async (ctx, id) => toFhirPractitionerRole(await readDoctor(ctx, id)) },
	search: {
		roles: DOCTOR_READERS,
		params: [
			{ name: "_id", type: "token", documentation: "The doctor's id." },
			{ name: "practitioner", type: "reference", target: ["Practitioner"], documentation: "Practitioner/<id>: that doctor's role." },
			{ name: "specialty", type: "token", documentation: "The specialty's text, exactly." }
		],
		async run(ctx, request) {
			const practitioner = oneValue(request, "practitioner");
			const id = oneValue(request, "_id");
			const doctorId = practitioner ? referenceId("practitioner", practitioner, ["Practitioner"]) : id;
			if (practitioner && id && doctorId !== id) return { resources: [], total: 0 };
			const { doctors, total } = await findDoctors(ctx, request, { id: doctorId, specialization: oneValue(request, "specialty") });
			return { resources: doctors.map(toFhirPractitionerRole), total };
		}
	}
};
