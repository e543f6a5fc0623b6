import { config } from "../../lib/infra/config";
import { decodePatientEvent } from "../../lib/domain/patient-events";
import type { DbThis } from "../../mixins/db.mixin";
import type { KafkaConsumerDefinition } from "../../mixins/kafka.mixin";
import type { PatientEvent } from "../../proto/generated/patient_event";
import { followMerge } from "./merges";

/**
 * The patient events appointments acts on: a merge moves the merged patient's
 * appointments to the survivor. (A deletion arrives as the broker event
 * `patient.deleted`, which the service handles; the other types need nothing.)
 */
export const patientEventsConsumer: KafkaConsumerDefinition<DbThis, PatientEvent> = {
	topic: () => config.patientTopic,
	decode: decodePatientEvent,
	async handler(event) {
		if (event.eventType !== "PATIENT_MERGED") return;
		const moved = await followMerge(this.db, event.eventId, event.patientId, event.mergedInto);
		for (const { appointment, cancelledByMerge } of moved) {
			if (cancelledByMerge) await this.broker.emit("appointment.cancelled", appointment);
		}
	}
};
