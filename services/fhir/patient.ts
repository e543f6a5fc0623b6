import type { ContactPoint, HumanName, Address, Identifier, Patient } from "@medplum/fhirtypes";
import { isValidMrn } from "../../lib/domain/mrn";
import { NotFoundError } from "../../lib/infra/errors";
import type { Page } from "../../lib/domain/paging";
import { PATIENT_DELETERS, PATIENT_READERS, PATIENT_WRITERS } from "../../lib/domain/roles";
import type { Patient as PatientRecord, PatientFields, PatientVersion } from "../patients/queries";
import { MRN_SYSTEM } from "./conventions";
import { callDomain, noneIfNotFound } from "./domain";
import { arrayAt, onlyElements, resourceOf, stringAt, stringElements } from "./input";
import { badRequest, unprocessable } from "./outcome";
import type { FhirContext, ResourceDefinition } from "./resource";
import { type SearchRequest, dateRange, oneValue, tokenCode, utcDate } from "./search";

/** Patient ⇄ the patient registry (`patients.*`): one name, one email (required), a phone, one address, birthDate, gender; the MRN as the identifier. */

const TYPE = "Patient";

/** The elements a Patient may carry in: everything else MedSync would drop. */
const STORED = ["id", "meta", "text", "identifier", "active", "name", "telecom", "gender", "birthDate", "address"] as const;

/** The registry's field names → FHIRPaths, for its validation errors. */
const PATHS: Record<string, string> = {
	name: "Patient.name",
	email: "Patient.telecom",
	phone: "Patient.telecom",
	address: "Patient.address",
	dateOfBirth: "Patient.birthDate",
	gender: "Patient.gender",
	id: "Patient.id"
};

export function mrnIdentifier(mrn: string): Identifier {
	return {
		use: "usual",
		type: { coding: [{ system: "http://terminology.hl7.org/CodeSystem/v2-0203", code: "MR", display: "Medical record number" }] },
		system: MRN_SYSTEM,
		value: mrn
	};
}

export function toFhirPatient(p: PatientRecord): Patient {
	const telecom: ContactPoint[] = [{ system: "email", value: p.email }];
	if (p.phone) telecom.push({ system: "phone", value: p.phone });
	return {
		resourceType: TYPE,
		id: p.id,
		meta: { versionId: String(p.version), lastUpdated: p.updatedAt },
		identifier: [mrnIdentifier(p.mrn)],
		active: true,
		name: [{ text: p.name }],
		telecom,
		...(p.gender && { gender: p.gender }),
		birthDate: p.dateOfBirth,
		address: [{ text: p.address }]
	};
}

/** A duplicate merged into another patient: no longer active, replaced by the survivor (FHIR's link). */
function mergedPatient(id: string, survivor: string, record?: PatientRecord): Patient {
	return {
		...(record ? toFhirPatient(record) : { resourceType: TYPE, id }),
		active: false,
		link: [{ other: { reference: `Patient/${survivor}` }, type: "replaced-by" }]
	};
}

/** The live patient, or a merged one as FHIR shows it; patients.get answers a merged one with where it went. */
async function readPatient(ctx: FhirContext, id: string): Promise<Patient> {
	const found = await callDomain<PatientRecord | { id: string; mergedInto: string }>(ctx, "patients.get", { id });
	return "mergedInto" in found ? mergedPatient(found.id, found.mergedInto) : toFhirPatient(found);
}

/** A version of the patient as it was stored; a deletion's version has no resource to show (410). */
function versionResource(version: PatientVersion): Patient | undefined {
	if (version.kind === "deleted") return undefined;
	const patient = version.record.mergedInto ? mergedPatient(version.record.id, version.record.mergedInto, version.record) : toFhirPatient(version.record);
	return { ...patient, meta: { versionId: String(version.version), lastUpdated: version.changedAt } };
}

function gone(id: string, version: number): Error {
	const err = new NotFoundError("Patient version", version);
	err.message = `Patient ${id} was deleted at version ${version}`;
	err.code = 410;
	err.type = "GONE";
	return err;
}

function nameText(name: HumanName): string | undefined {
	return name.text?.trim() || [...(name.prefix ?? []), ...(name.given ?? []), name.family, ...(name.suffix ?? [])].filter(Boolean).join(" ").trim() || undefined;
}

function addressText(address: Address): string | undefined {
	return address.text?.trim() || [...(address.line ?? []), address.city, address.district, address.state, address.postalCode, address.country].filter(Boolean).join(", ") || undefined;
}

/** What the registry's create and replace take, from a Patient; `mrn` is the MRN it names, if any. */
export function fromFhirPatient(body: unknown): { fields: Partial<PatientFields>; mrn?: string } {
	const resource = resourceOf<Patient>(body, TYPE);
	const r = resource as unknown as Record<string, unknown>;
	onlyElements(resource, TYPE, STORED);
	const problems: { field: string; message: string }[] = [];
	const names = arrayAt<HumanName>(r, TYPE, "name");
	const telecom = arrayAt<ContactPoint>(r, TYPE, "telecom");
	const addresses = arrayAt<Address>(r, TYPE, "address");
	const identifiers = arrayAt<Identifier>(r, TYPE, "identifier");
	for (const name of names) stringElements(name, "Patient.name", ["text", "family"], ["given", "prefix", "suffix"]);
	for (const address of addresses) stringElements(address, "Patient.address", ["text", "city", "district", "state", "postalCode", "country"], ["line"]);
	for (const contact of telecom) stringElements(contact, "Patient.telecom", ["system", "value"]);
	for (const identifier of identifiers) stringElements(identifier, "Patient.identifier", ["system", "value"]);
	if (names.length > 1) problems.push({ field: "Patient.name", message: "MedSync keeps one name per patient." });
	if (addresses.length > 1) problems.push({ field: "Patient.address", message: "MedSync keeps one address per patient." });
	if (resource.active === false) problems.push({ field: "Patient.active", message: "MedSync keeps no inactive patients: DELETE removes one." });
	const emails = telecom.filter(t => t.system === "email");
	const phones = telecom.filter(t => t.system === "phone");
	if (emails.length !== 1) problems.push({ field: "Patient.telecom", message: "A patient needs exactly one telecom with system 'email'." });
	if (phones.length > 1) problems.push({ field: "Patient.telecom", message: "MedSync keeps one phone per patient." });
	if (telecom.length > emails.length + phones.length) problems.push({ field: "Patient.telecom", message: "MedSync keeps only an email and a phone." });
	const mrns = identifiers.filter(i => i.system === MRN_SYSTEM);
	if (identifiers.length > mrns.length || mrns.length > 1) problems.push({ field: "Patient.identifier", message: `MedSync keeps one identifier, its MRN (${MRN_SYSTEM}).` });
	if (problems.length) throw unprocessable(problems);
	const fields: Partial<PatientFields> = {
		name: names[0] && nameText(names[0]),
		email: emails[0]?.value,
		address: addresses[0] && addressText(addresses[0]),
		dateOfBirth: stringAt(r, TYPE, "birthDate"),
		...(phones[0] && { phone: phones[0].value }),
		...(resource.gender && { gender: resource.gender })
	};
	const missing = (["name", "email", "address", "dateOfBirth"] as const).filter(key => fields[key] === undefined);
	if (missing.length) throw unprocessable(missing.map(key => ({ field: PATHS[key], message: `${PATHS[key]} is required.`, type: "required" as const })));
	return { fields, mrn: mrns[0]?.value };
}

const SORTS: Record<string, string> = { name: "name", birthdate: "dateOfBirth", identifier: "mrn" };

/** A value that the registry's one search box would also match as an email or an MRN: a name search for it would not be a name search. */
const NOT_A_NAME = /@|^\d{8}$/;

async function searchPatients(ctx: FhirContext, request: SearchRequest): Promise<{ resources: Patient[]; total: number }> {
	const id = oneValue(request, "_id");
	const identifier = oneValue(request, "identifier");
	const email = oneValue(request, "email");
	const name = oneValue(request, "name");
	const born = dateRange("birthdate", request.values.get("birthdate") ?? []);
	const mrn = identifier && tokenCode("identifier", identifier, MRN_SYSTEM);
	if (name && NOT_A_NAME.test(name)) throw badRequest("name takes a name: search an email with email=, an MRN with identifier=", "name");
	const bornFrom = born.from === undefined ? undefined : utcDate(born.from);
	const bornTo = born.to === undefined ? undefined : utcDate(born.to - 1);
	const sort = request.sort && `${request.sort.descending ? "-" : ""}${SORTS[request.sort.name]}`;
	const matches = (p: PatientRecord) =>
		(!mrn || p.mrn === mrn) &&
		(!email || p.email.toLowerCase() === email.toLowerCase()) &&
		(!name || p.name.toLowerCase().startsWith(name.toLowerCase())) &&
		(!bornFrom || p.dateOfBirth >= bornFrom) &&
		(!bornTo || p.dateOfBirth <= bornTo);

	// An id, an MRN or an email names one patient at most: find it, then check the other criteria here.
	if (mrn === null) return { resources: [], total: 0 };
	if (id || mrn !== undefined || email) {
		let found: PatientRecord[];
		if (id) {
			// A merged patient answers with where it went: not a match of any criterion.
			found = await callDomain<PatientRecord | { mergedInto: string }>(ctx, "patients.get", { id }).then(p => ("mergedInto" in p ? [] : [p]), noneIfNotFound<PatientRecord>);
		}
		else if (mrn !== undefined && !isValidMrn(mrn)) found = [];
		else found = (await callDomain<Page<PatientRecord>>(ctx, "patients.list", { search: mrn ?? email, pageSize: 100 })).rows;
		const kept = found.filter(matches);
		const start = (request.page - 1) * request.count;
		return { resources: kept.slice(start, start + request.count).map(toFhirPatient), total: kept.length };
	}
	const page = await callDomain<Page<PatientRecord>>(ctx, "patients.list", {
		page: request.page,
		pageSize: request.count,
		...(name && { search: name }),
		...(bornFrom && { bornFrom }),
		...(bornTo && { bornTo }),
		...(sort && { sort })
	});
	return { resources: page.rows.map(toFhirPatient), total: page.total };
}

/** The MRN a PUT names must be the patient's: MedSync assigns it, and never changes it. */
async function replacePatient(ctx: FhirContext, id: string, body: Patient): Promise<Patient> {
	const { fields, mrn } = fromFhirPatient(body);
	if (mrn !== undefined) {
		const current = await callDomain<PatientRecord>(ctx, "patients.get", { id });
		if (current.mrn !== mrn) throw unprocessable([{ field: "Patient.identifier", message: "The MRN is MedSync's to assign; it cannot change." }]);
	}
	return toFhirPatient(await callDomain<PatientRecord>(ctx, "patients.replace", { id, ...fields }));
}

export const patientResource: ResourceDefinition<Patient> = {
	type: TYPE,
	audit: "patient",
	versioning: "versioned-update",
	documentation: `The patient registry. identifier: the MRN (${MRN_SYSTEM}), 8 digits with its Luhn check digit, assigned by MedSync. One name (text), one email (required) and a phone in telecom, one address (text), birthDate, gender.`,
	paths: PATHS,
	read: { roles: PATIENT_READERS, run: readPatient },
	vread: {
		roles: PATIENT_READERS,
		async run(ctx, id, versionId) {
			const version = await callDomain<PatientVersion>(ctx, "patients.historyVersion", { id, version: versionId });
			const resource = versionResource(version);
			if (!resource) throw gone(id, versionId);
			return resource;
		}
	},
	history: {
		roles: PATIENT_READERS,
		async run(ctx, id, { page, count }) {
			const versions = await callDomain<Page<PatientVersion>>(ctx, "patients.history", { id, page, pageSize: count });
			const method = (v: PatientVersion) => (v.kind === "deleted" ? "DELETE" : v.kind === "created" ? "POST" : "PUT");
			return { entries: versions.rows.map(v => ({ versionId: v.version, method: method(v), at: v.changedAt, resource: versionResource(v) })), total: versions.total };
		}
	},
	search: {
		roles: PATIENT_READERS,
		params: [
			{ name: "_id", type: "token", documentation: "The patient's id." },
			{ name: "identifier", type: "token", documentation: `The MRN, as ${MRN_SYSTEM}|<mrn> or <mrn>.` },
			{ name: "name", type: "string", documentation: "The start of the patient's full name, in any case (not an email or an MRN: use email or identifier)." },
			{ name: "email", type: "token", documentation: "The patient's email, in any case." },
			{ name: "birthdate", type: "date", documentation: "The date of birth; prefixes eq, gt, ge, lt, le; YYYY, YYYY-MM or YYYY-MM-DD." }
		],
		sorts: Object.keys(SORTS),
		run: searchPatients
	},
	create: {
		roles: PATIENT_WRITERS,
		conditional: true,
		async run(ctx, body) {
			const { fields, mrn } = fromFhirPatient(body);
			if (mrn !== undefined) throw unprocessable([{ field: "Patient.identifier", message: "The MRN is MedSync's to assign: leave it out of a new patient." }]);
			return toFhirPatient(await callDomain<PatientRecord>(ctx, "patients.create", fields));
		}
	},
	update: { roles: PATIENT_WRITERS, run: replacePatient },
	delete: {
		roles: PATIENT_DELETERS,
		run: async (ctx, id) => {
			await callDomain(ctx, "patients.remove", { id });
		}
	}
};
