import crypto from "node:crypto";
import { config } from "../../lib/infra/config";
import type { PatientEventType } from "../../lib/domain/patient-events";
import type { OutgoingMessage } from "../../mixins/kafka.mixin";
import { PatientEvent } from "../../proto/generated/patient_event";
import type { OutboxEvent, OutboxRow, Patient } from "./queries";

/**
 * The PatientEvent announcing a change of `patient`, for the outbox; the
 * patient id is the key, so one patient's events keep their order.
 * `mergedInto` names the survivor of a PATIENT_MERGED.
 */
export function patientEvent(type: PatientEventType, patient: Pick<Patient, "id" | "name" | "email">, mergedInto = ""): OutboxEvent {
	const eventId = crypto.randomUUID();
	const payload = PatientEvent.encode({
		patientId: patient.id,
		name: patient.name,
		email: patient.email,
		eventType: type,
		eventId,
		occurredAt: new Date().toISOString(),
		mergedInto
	}).finish();
	return { eventId, topic: config.patientTopic, key: patient.id, eventType: type, payload };
}

/** An outbox row as the Kafka message the relay publishes; its key keeps one patient's events in order on one partition. */
export function outboxMessage(row: OutboxRow): OutgoingMessage {
	return { topic: row.topic, key: row.key, value: row.payload, headers: { "event-type": row.eventType, "event-id": row.eventId } };
}
