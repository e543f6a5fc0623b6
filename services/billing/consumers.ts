import { config } from "../../lib/infra/config";
import { decodePatientEvent } from "../../lib/domain/patient-events";
import type { DbThis } from "../../mixins/db.mixin";
import type { KafkaConsumerDefinition } from "../../mixins/kafka.mixin";
import type { PatientEvent } from "../../proto/generated/patient_event";
import { newAccount } from "./accounts";
import { mergeAccounts } from "./merge";
import { deactivateAccountOnFirstDelivery, insertAccountOnFirstDelivery, renameAccountOnFirstDelivery } from "./queries";

/**
 * Each patient's account follows the patient's events, each applied once (by
 * its event id) and, the patient id being the message key, in order: created,
 * it opens (if the gRPC call has not); updated, it takes the name and email;
 * deleted, it becomes INACTIVE; merged, it closes and its balance moves to
 * the survivor's account (services/billing/merge.ts). The patients service learns an account's id
 * only from CreateBillingAccount's answer (at registration, or from its
 * reconciler): nothing here tells it.
 */
export const patientEventsConsumer: KafkaConsumerDefinition<DbThis, PatientEvent> = {
	topic: () => config.patientTopic,
	decode: decodePatientEvent,
	async handler(event) {
		switch (event.eventType) {
			case "PATIENT_CREATED":
				await this.db.query(insertAccountOnFirstDelivery(event.eventId, newAccount(event)));
				return;
			case "PATIENT_UPDATED":
				await this.db.query(renameAccountOnFirstDelivery(event.eventId, newAccount(event)));
				return;
			case "PATIENT_DELETED":
				await this.db.query(deactivateAccountOnFirstDelivery(event.eventId, newAccount(event)));
				return;
			case "PATIENT_MERGED":
				await mergeAccounts(this.db, async id => this.broker.call<{ name: string; email: string }, { id: string }>("patients.get", { id }), event);
				return;
		}
	}
};
