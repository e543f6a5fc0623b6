import { config } from "../../lib/infra/config";
import { decodePatientEvent } from "../../lib/domain/patient-events";
import type { DbThis } from "../../mixins/db.mixin";
import type { KafkaConsumerDefinition } from "../../mixins/kafka.mixin";
import type { PatientEvent } from "../../proto/generated/patient_event";
import { announceAccount, newAccount } from "./accounts";
import { insertAccountOnFirstDelivery } from "./queries";

/** Opens the account if the gRPC call has not: one account per patient, whichever arrives first. */
export const patientEventsConsumer: KafkaConsumerDefinition<DbThis, PatientEvent> = {
	topic: () => config.patientTopic,
	decode: decodePatientEvent,
	async handler(event) {
		if (event.eventType !== "PATIENT_CREATED") return;
		const [opened] = await this.db.query<{ id: string }>(insertAccountOnFirstDelivery(event.eventId, newAccount(event)));
		if (opened) await announceAccount(this.broker, event.patientId, opened.id);
	}
};
