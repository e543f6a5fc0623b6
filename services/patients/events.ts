import crypto from "node:crypto";
import { SpanKind, trace } from "@opentelemetry/api";
import { config } from "../../lib/infra/config";
import { activeTracer, contextFrom, injectInto, recordFailure, traceCarrier } from "../../lib/infra/tracing";
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
	// The change's trace goes with its event, so that the consumers' work joins the trace of the request that made it.
	return { eventId, topic: config.patientTopic, key: patient.id, eventType: type, payload, traceContext: traceCarrier() };
}

/**
 * An outbox row as the Kafka message the relay publishes; its key keeps one
 * patient's events in order on one partition. Its headers carry the trace
 * context the row was written with.
 */
export function outboxMessage(row: OutboxRow): OutgoingMessage {
	return { topic: row.topic, key: row.key, value: row.payload, headers: { ...row.traceContext, "event-type": row.eventType, "event-id": row.eventId } };
}

/**
 * Publishes outbox rows with `send`. With tracing on, each row written in a
 * trace gets a producer span in that trace, lasting until the broker has the
 * batch, and its message carries that span's context instead.
 */
export async function publishOutbox(rows: OutboxRow[], send: (messages: OutgoingMessage[]) => Promise<void>): Promise<void> {
	const messages = rows.map(outboxMessage);
	const tracer = activeTracer();
	if (!tracer) return send(messages);
	const spans = rows.flatMap((row, i) => {
		if (!row.traceContext) return [];
		const parent = contextFrom(row.traceContext);
		const attributes = { "messaging.system": "kafka", "messaging.operation.type": "send", "messaging.destination.name": row.topic, "messaging.message.id": row.eventId };
		const span = tracer.startSpan(`send ${row.topic}`, { kind: SpanKind.PRODUCER, attributes }, parent);
		injectInto(trace.setSpan(parent, span), messages[i].headers!, (headers, key, value) => (headers[key] = value));
		return [span];
	});
	try {
		await send(messages);
	} catch (err) {
		for (const span of spans) recordFailure(span, err);
		throw err;
	} finally {
		for (const span of spans) span.end();
	}
}
