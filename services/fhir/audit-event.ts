import type { AuditEvent } from "@medplum/fhirtypes";
import type { Page } from "../../lib/domain/paging";
import { ADMIN_ONLY } from "../../lib/domain/roles";
import type { AuditRecord } from "../../lib/infra/audit-journal";
import { isUuid } from "../../lib/infra/sql";
import { ACTION_SYSTEM } from "./conventions";
import { callDomain } from "./domain";
import type { FhirContext, ResourceDefinition } from "./resource";
import { type SearchRequest, dateRange, oneValue, referenceId } from "./search";

/** AuditEvent ⇄ a record of the audit trail (`audit.list`), newest first: who did what to whose data, and how it ended. */

/** FHIR's outcome codes: 0 success, 4 minor failure (refused or the client's mistake), 8 serious failure (the server's). */
function outcomeOf(record: AuditRecord): AuditEvent["outcome"] {
	if (record.outcome === "success") return "0";
	return record.status >= 500 ? "8" : "4";
}

export function toFhirAuditEvent(record: AuditRecord): AuditEvent {
	return {
		resourceType: "AuditEvent",
		id: record.id,
		type: { system: "http://terminology.hl7.org/CodeSystem/audit-event-type", code: "rest", display: "RESTful Operation" },
		subtype: [{ system: ACTION_SYSTEM, code: record.action }],
		recorded: record.at,
		outcome: outcomeOf(record),
		outcomeDesc: `${record.outcome}, HTTP ${record.status}`,
		agent: [
			{
				...(record.userId && { altId: record.userId }),
				...(record.role && { role: [{ text: record.role }] }),
				requestor: true,
				...(record.ip && { network: { address: record.ip, type: "2" as const } })
			}
		],
		source: { observer: { display: "MedSync gateway" } },
		...(record.patientId && { entity: [{ what: { reference: `Patient/${record.patientId}` }, type: { system: "http://terminology.hl7.org/CodeSystem/audit-entity-type", code: "1", display: "Person" } }] })
	};
}

async function searchAuditEvents(ctx: FhirContext, request: SearchRequest) {
	const patient = oneValue(request, "patient");
	const altid = oneValue(request, "altid");
	const patientId = patient && referenceId("patient", patient, ["Patient"]);
	// The trail's ids are UUIDs: another id names no record.
	if ((patientId && !isUuid(patientId)) || (altid && !isUuid(altid))) return { resources: [], total: 0 };
	const range = dateRange("date", request.values.get("date") ?? []);
	const page = await callDomain<Page<AuditRecord>>(ctx, "audit.list", {
		page: request.page,
		pageSize: request.count,
		...(patientId && { patientId }),
		...(altid && { userId: altid }),
		...(range.from !== undefined && { from: new Date(range.from).toISOString() }),
		// The trail's `to` is inclusive; a FHIR range ends before its end.
		...(range.to !== undefined && { to: new Date(range.to - 1).toISOString() })
	});
	return { resources: page.rows.map(toFhirAuditEvent), total: page.total };
}

export const auditEventResource: ResourceDefinition<AuditEvent> = {
	type: "AuditEvent",
	documentation: `The audit trail, newest first, for ADMIN: subtype the action (${ACTION_SYSTEM}), agent.altId the staff account, entity the Patient.`,
	search: {
		roles: ADMIN_ONLY,
		params: [
			{ name: "patient", type: "reference", target: ["Patient"], documentation: "Patient/<id>: accesses to that patient's data." },
			{ name: "altid", type: "token", documentation: "The staff account's id: its accesses." },
			{ name: "date", type: "date", documentation: "When it was recorded; prefixes eq, gt, ge, lt, le." }
		],
		run: searchAuditEvents
	}
};
