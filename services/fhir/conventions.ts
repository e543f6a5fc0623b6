/**
 * The names MedSync gives its own things in FHIR: the identifier systems and
 * extensions. A system URI is part of every stored reference a partner keeps,
 * so these never change once published (docs/fhir.md lists them).
 */

/** FHIR R4's version, as the CapabilityStatement and media type parameters name it. */
export const FHIR_VERSION = "4.0.1";

/** The media type of every answer. */
export const FHIR_JSON = "application/fhir+json; charset=utf-8";

/** MedSync's namespace for its identifier systems, extensions and code systems. */
export const MEDSYNC_FHIR_BASE = "https://medsync.dev/fhir";

/** The medical record number: 7-digit serial and its Luhn check digit, kept as one 8-digit value (lib/domain/mrn.ts). */
export const MRN_SYSTEM = `${MEDSYNC_FHIR_BASE}/sid/mrn`;

/** A staff account (the audit trail's agents). */
export const STAFF_SYSTEM = `${MEDSYNC_FHIR_BASE}/sid/staff`;

/** The gateway action an audit record names, e.g. `patients.get`. */
export const ACTION_SYSTEM = `${MEDSYNC_FHIR_BASE}/CodeSystem/action`;

/** A doctor's consultation fee (valueMoney), on PractitionerRole: R4 has no element for it. */
export const CONSULTATION_FEE_EXTENSION = `${MEDSYNC_FHIR_BASE}/StructureDefinition/consultation-fee`;

/** The IANA timezone of a doctor's wall clock (valueCode), on PractitionerRole and Schedule: availableTime is local time. */
export const TIMEZONE_EXTENSION = `${MEDSYNC_FHIR_BASE}/StructureDefinition/timezone`;
