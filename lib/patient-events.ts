import { QueryTypes, type Sequelize, type Transaction } from "sequelize";
import { isUuid } from "./sql";
import { PatientEvent } from "../proto/generated/patient_event";

export const PATIENT_EVENT_TYPES = ["PATIENT_CREATED", "PATIENT_UPDATED", "PATIENT_DELETED"] as const;


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
	if (Number.isNaN(Date.parse(event.occurredAt))) throw new Error("PatientEvent without a valid occurred_at");
	return event;
}

/**
 * Records the event as processed in the consumer's own `processed_events` table,
 * inside the transaction that applies it. False means it was processed before:
 * a redelivery, to be skipped.
 */
export async function firstDelivery(db: Sequelize, transaction: Transaction, eventId: string): Promise<boolean> {
	const inserted = await db.query("INSERT INTO processed_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING event_id", {
		bind: [eventId],
		type: QueryTypes.SELECT,
		transaction
	});
	return inserted.length > 0;
}

/** The migration that gives a consumer its `processed_events` table. */
export const PROCESSED_EVENTS_SQL = `
CREATE TABLE processed_events (
	event_id uuid PRIMARY KEY,
	processed_at timestamptz NOT NULL DEFAULT now()
);`;
