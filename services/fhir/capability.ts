import type { CapabilityStatement, CapabilityStatementRestResource } from "@medplum/fhirtypes";
import { FHIR_VERSION } from "./conventions";
import { INTERACTION_CODES, type InteractionName, type ResourceDefinition } from "./resource";
import { RESULT_PARAMS } from "./search";

/**
 * The CapabilityStatement, made from the resource table the actions are made
 * from: it lists an interaction or a search parameter only if a handler serves it.
 */

const RESULT_PARAM_DOCS: Record<(typeof RESULT_PARAMS)[number], string> = {
	_count: "Matches per page, 1 to 100 (default 20).",
	_page: "The page, from 1: the next and previous links carry it.",
	_sort: "One of the resource's sort keys, '-' first for descending.",
	_total: "none leaves the total out; estimate and accurate both count exactly."
};

function resourceCapability(definition: ResourceDefinition): CapabilityStatementRestResource {
	const interactions = (Object.keys(INTERACTION_CODES) as InteractionName[]).filter(name => definition[name]);
	return {
		type: definition.type,
		documentation: definition.documentation,
		interaction: interactions.map(name => ({ code: INTERACTION_CODES[name] })),
		versioning: definition.versioning ?? "no-version",
		readHistory: Boolean(definition.vread),
		updateCreate: false,
		conditionalCreate: Boolean(definition.create?.conditional),
		conditionalRead: "not-supported",
		conditionalUpdate: false,
		conditionalDelete: "not-supported",
		...(definition.search && {
			searchParam: [
				...definition.search.params.map(({ name, type, documentation }) => ({ name, type, documentation })),
				...RESULT_PARAMS.filter(name => name !== "_sort" || definition.search?.sorts?.length).map(name => ({
					name,
					type: name === "_count" || name === "_page" ? ("number" as const) : ("special" as const),
					documentation: name === "_sort" ? `${RESULT_PARAM_DOCS._sort} Keys: ${definition.search?.sorts?.join(", ")}.` : RESULT_PARAM_DOCS[name]
				}))
			]
		})
	};
}

export function capabilityStatement(resources: ResourceDefinition[], software: { version: string; date: string; base: string }): CapabilityStatement {
	return {
		resourceType: "CapabilityStatement",
		status: "active",
		date: software.date,
		publisher: "MedSync",
		kind: "instance",
		software: { name: "MedSync", version: software.version },
		implementation: { description: "MedSync's FHIR R4 API, over the same records, roles and audit trail as its REST API", url: software.base },
		fhirVersion: FHIR_VERSION,
		format: ["application/fhir+json", "json"],
		patchFormat: ["application/json-patch+json"],
		rest: [
			{
				mode: "server",
				documentation:
					"Search parameters a resource does not list are ignored (and left out of the self link) unless the request says Prefer: handling=strict, which refuses them with 400. A value with a comma (one value or another) is refused.",
				security: {
					cors: false,
					service: [{ coding: [{ system: "http://terminology.hl7.org/CodeSystem/restful-security-service", code: "OAuth" }] }],
					description: "Every interaction but this statement needs a Bearer access token from POST /auth/login; each is allowed to the roles of the REST action it maps onto, and every access to patient data is audited."
				},
				resource: resources.map(resourceCapability)
			}
		]
	};
}
