import { isUuid } from "../infra/sql";
import { PatientEvent } from "../../proto/generated/patient_event";

export const PATIENT_EVENT_TYPES = ["PATIENT_CREATED", "PATIENT_UPDATED", "PATIENT_DELETED", "PATIENT_MERGED"] as const;

export type PatientEventType = (typeof PATIENT_EVENT_TYPES)[number];

/**
 * Decodes a PatientEvent and checks what consumers rely on. Protobuf decodes
 * most garbage without complaint, so a message that fails these checks is
 * poison: it goes to the dead-letter topic rather than being retried.
 */
export function decodePatientEvent(value: Buffer): PatientEvent {
	const event = PatientEvent.decode(value);
	if (!isUuid(event.eventId)) throw new Error("PatientEvent without a valid event_id");
	if (!isUuid(event.patientId)) throw new Error("PatientEvent without a valid patientId");
	if (!(PATIENT_EVENT_TYPES as readonly string[]).includes(event.eventType)) throw new Error(`Unknown event_type "${event.eventType}"`);
	if (event.eventType === "PATIENT_MERGED" && !isUuid(event.mergedInto)) throw new Error("PATIENT_MERGED without a valid merged_into");
	if (Number.isNaN(Date.parse(event.occurredAt))) throw new Error("PatientEvent without a valid occurred_at");
	return event;
}
/**
 * Wraps the statement that applies an event so that it applies it once: the
 * event id ($1) goes into the consumer's `processed_events`, and `statement`
 * reads its input from `first_delivery`, which is empty on a redelivery. One
 * statement is one transaction, so the event is recorded if and only if it was
 * applied, in a single round trip.
 */
export function onFirstDelivery(statement: string): string {
	return `WITH first_delivery AS (INSERT INTO processed_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING event_id) ${statement}`;
}

/** The migration that gives a consumer its `processed_events` table. */
export const PROCESSED_EVENTS_SQL = `
CREATE TABLE processed_events (
	event_id uuid PRIMARY KEY,
	processed_at timestamptz NOT NULL DEFAULT now()
);`;
