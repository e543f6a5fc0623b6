import type { FhirParams } from "./resource";

/**
 * Whose data a FHIR request touches, for the gateway's audit record: the same
 * patient a REST request for the same data names (its `id` or `patientId`),
 * from the request before the call, so a refused one is journaled with it too,
 * and from the answer after it.
 */

function patientReference(value: unknown): string | undefined {
	const match = typeof value === "string" ? /(?:^|\/)Patient\/([^/]+)$/.exec(value) : null;
	return match?.[1];
}

/** The patient of an Appointment's participants. */
function participantPatient(resource: unknown): string | undefined {
	const participants = (resource as { participant?: unknown })?.participant;
	if (!Array.isArray(participants)) return undefined;
	for (const participant of participants) {
		const id = patientReference((participant as { actor?: { reference?: unknown } })?.actor?.reference);
		if (id) return id;
	}
	return undefined;
}

/** The patient a request names: a Patient's id, a search's `patient`, an Appointment's patient participant. */
export function patientNamedBy(action: string | undefined, params: FhirParams): string | undefined {
	if (/^fhir\.patient(Read|Vread|History|Update|Patch|Delete)$/.test(action ?? "")) return params.params?.id;
	const searched = params.query?.patient;
	if (typeof searched === "string") return patientReference(searched) ?? searched;
	if (action?.startsWith("fhir.appointment")) return participantPatient(params.body);
	return undefined;
}

/** The patient an answer shows: a Patient, or an Appointment's patient; a Bundle names none, as a REST list names none. */
export function patientShownBy(answer: unknown): string | undefined {
	const resource = answer as { resourceType?: unknown; id?: unknown } | undefined;
	if (resource?.resourceType === "Patient" && typeof resource.id === "string") return resource.id;
	if (resource?.resourceType === "Appointment") return participantPatient(resource);
	return undefined;
}
