import crypto from "node:crypto";
import { WEEKDAYS } from "../../lib/domain/zoned-time";
import type { AppointmentRow, Status } from "../../services/appointments/queries";
import type { AccountRow } from "../../services/billing/queries";
import type { DoctorRow } from "../../services/doctors/queries";
import type { PatientEvent } from "../../proto/generated/patient_event";
import type { DuplicateRow } from "../../services/patients/duplicate-queries";
import type { PatientRow } from "../../services/patients/queries";
import type { JsonResponse } from "./cluster";

/**
 * The test data every suite shares: request bodies for the API, and rows as the
 * services' query modules read them (for a StubDatabase's answers). Each body
 * is valid as it is; a test overrides only what it is about.
 */

/** An email no other test uses: `<tag>.<random>@<domain>`. */
export function uniqueEmail(tag: string, domain = "example.org"): string {
	return `${tag}.${crypto.randomBytes(4).toString("hex")}@${domain}`;
}

/** A staff account's email, in the domain of the test run's admin. */
export const staffEmail = (tag: string) => uniqueEmail(tag, "test.medsync.local");

/** A password the sign-up rules take (long, not a common one), different each time. */
export const staffPassword = () => `Clinic-${crypto.randomBytes(12).toString("base64url")}`;

/** Every day of the week, 08:00 to 18:00 on the doctor's wall clock. */
export const EVERY_DAY = WEEKDAYS.map(day => ({ day, start: "08:00", end: "18:00" }));

/** A valid body for POST /patients, with an email of its own. */
export function patientBody(overrides: Record<string, unknown> = {}) {
	return { name: "Test Patient", email: uniqueEmail("patient"), address: "12 Harbour Road, Portsmouth", dateOfBirth: "1984-06-15", ...overrides };
}

/** A valid FHIR Patient for POST /fhir/Patient, with an email of its own. */
export function fhirPatientBody(overrides: Record<string, unknown> = {}) {
	return {
		resourceType: "Patient",
		name: [{ family: "Patient", given: ["Fhir"] }],
		telecom: [{ system: "email", value: uniqueEmail("fhir.patient") }],
		gender: "female",
		birthDate: "1984-06-15",
		address: [{ line: ["12 Harbour Road"], city: "Portsmouth" }],
		...overrides
	};
}

/** A valid body for POST /doctors, with a name and email of its own: every day 08:00–18:00 (UTC unless a timezone is given), a fee of 7 500. */
export function doctorBody(overrides: Record<string, unknown> = {}) {
	return {
		name: `Dr ${crypto.randomBytes(3).toString("hex")}`,
		email: uniqueEmail("dr", "clinic.example"),
		specialization: "Cardiology",
		address: "1 Heart Street",
		joiningDate: "2020-01-01",
		consultationFee: 7_500,
		availability: EVERY_DAY,
		...overrides
	};
}

/** A test's own request function, carrying its token: `api(method, path, body)`. */
export type Api = (method: string, path: string, body?: unknown) => Promise<JsonResponse>;

/** Registers a patient through the gateway (anything but 201 fails the test); the patient as answered. */
export async function createPatient(api: Api, overrides: Record<string, unknown> = {}) {
	const res = await api("POST", "/patients", patientBody(overrides));
	expect(res.status).toBe(201);
	return res.body;
}

/** The fields a client writes, from a patient as answered: a body for PUT /patients/:id. */
export function patientFieldsOf({ name, email, address, dateOfBirth, registerDate, phone, gender }: Record<string, unknown>) {
	return { name, email, address, dateOfBirth, registerDate, phone, gender };
}

/** Adds a doctor through the gateway (anything but 201 fails the test); the doctor as answered. */
export async function createDoctor(api: Api, overrides: Record<string, unknown> = {}) {
	const res = await api("POST", "/doctors", doctorBody(overrides));
	expect(res.status).toBe(201);
	return res.body;
}

const CREATED = new Date("2030-01-01T00:00:00Z");

/** A live patient as patients/queries.ts reads it, at version 3. */
export function patientRow(overrides: Partial<PatientRow> = {}): PatientRow {
	return {
		id: crypto.randomUUID(),
		mrn: "10000413",
		name: "Test Patient",
		email: "patient@example.org",
		address: "12 Harbour Road, Portsmouth",
		dateOfBirth: "1984-06-15",
		registerDate: "2030-01-01",
		phone: null,
		gender: null,
		billingAccountId: null,
		version: 3,
		createdAt: CREATED,
		updatedAt: CREATED,
		...overrides
	};
}

/** A doctor as doctors/queries.ts reads it. */
export function doctorRow(overrides: Partial<DoctorRow> = {}): DoctorRow {
	return {
		id: crypto.randomUUID(),
		name: "Dr Row",
		email: "dr.row@clinic.example",
		specialization: "Cardiology",
		address: "1 Heart Street",
		joiningDate: "2020-01-01",
		phone: null,
		timezone: "UTC",
		consultationFee: "7500",
		slotMinutes: 30,
		availability: EVERY_DAY,
		createdAt: CREATED,
		updatedAt: CREATED,
		version: 1,
		...overrides
	};
}

/** An appointment as appointments/queries.ts reads it: half an hour from `startAt`. */
export function appointmentRow(status: Status, overrides: Partial<AppointmentRow> = {}): AppointmentRow {
	const startAt = overrides.startAt ?? new Date("2031-03-03T09:00:00Z");
	return {
		id: crypto.randomUUID(),
		patientId: crypto.randomUUID(),
		doctorId: crypto.randomUUID(),
		startAt,
		endAt: new Date(startAt.getTime() + 30 * 60_000),
		durationMinutes: 30,
		timezone: "UTC",
		consultationFee: "7500",
		status,
		reason: null,
		cancellationReason: null,
		createdAt: CREATED,
		updatedAt: CREATED,
		version: 1,
		...overrides
	};
}

/** A billing account as billing/queries.ts reads it. */
export function accountRow(overrides: Partial<AccountRow> = {}): AccountRow {
	return {
		id: crypto.randomUUID(),
		patientId: crypto.randomUUID(),
		name: "Test Patient",
		email: "patient@example.org",
		currency: "EUR",
		status: "ACTIVE",
		version: 1,
		mergedIntoAccountId: null,
		createdAt: CREATED,
		updatedAt: CREATED,
		...overrides
	};
}

/** A patient event as the patients service's outbox publishes it (to encode with PatientEvent.encode), with an id of its own. */
export function patientEvent(eventType: PatientEvent["eventType"], overrides: Partial<PatientEvent> = {}): PatientEvent {
	return {
		eventId: crypto.randomUUID(),
		eventType,
		patientId: crypto.randomUUID(),
		name: "",
		email: "",
		occurredAt: new Date().toISOString(),
		mergedInto: "",
		...overrides
	};
}

/** A duplicate candidate as patients/duplicate-queries.ts reads it: by default, a name of similarity 0.6 and the same birth date. */
export function duplicateRow(overrides: Partial<DuplicateRow> = {}): DuplicateRow {
	return {
		...patientRow(),
		nameSimilarity: 0.6,
		nameWeight: 0.3,
		sameDateOfBirth: true,
		samePhone: false,
		sameEmail: false,
		score: 0.5,
		...overrides
	};
}
