import crypto from "node:crypto";
import { decodePatientEvent } from "../../lib/domain/patient-events";
import { PatientEvent } from "../../proto/generated/patient_event";

function encoded(fields: Partial<PatientEvent>): Buffer {
	const event: PatientEvent = {
		patientId: crypto.randomUUID(),
		name: "Test Patient",
		email: "test@example.com",
		eventType: "PATIENT_CREATED",
		eventId: crypto.randomUUID(),
		occurredAt: new Date().toISOString(),
		mergedInto: "",
		...fields
	};
	return Buffer.from(PatientEvent.encode(event).finish());
}

describe("decodePatientEvent", () => {
	it("decodes each known event type", () => {
		for (const eventType of ["PATIENT_CREATED", "PATIENT_UPDATED", "PATIENT_DELETED"]) {
			expect(decodePatientEvent(encoded({ eventType })).eventType).toBe(eventType);
		}
	});

	it("takes a PATIENT_MERGED with its survivor, and refuses one without", () => {
		const survivor = crypto.randomUUID();
		expect(decodePatientEvent(encoded({ eventType: "PATIENT_MERGED", mergedInto: survivor })).mergedInto).toBe(survivor);
		expect(() => decodePatientEvent(encoded({ eventType: "PATIENT_MERGED" }))).toThrow(/merged_into/);
	});

	it("refuses an unknown type, and ids or times that are not what consumers rely on", () => {
		expect(() => decodePatientEvent(encoded({ eventType: "PATIENT_RENAMED" }))).toThrow(/event_type/);
		expect(() => decodePatientEvent(encoded({ eventId: "x" }))).toThrow(/event_id/);
		expect(() => decodePatientEvent(encoded({ patientId: "" }))).toThrow(/patientId/);
		expect(() => decodePatientEvent(encoded({ occurredAt: "yesterday" }))).toThrow(/occurred_at/);
	});
});
