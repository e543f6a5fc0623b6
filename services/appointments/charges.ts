import type { Logger, ServiceBroker } from "moleculer";
import type { Queryable } from "../../lib/infra/database";
import { type Appointment, type UnchargedRow, markCharged, unchargedAppointments } from "./queries";

/**
 * Charging fulfilled visits through billing. The charge must not depend on
 * billing being up, nor hold up the answer: fulfilment asks once, and a timer
 * asks again for every visit billing has not confirmed.
 */

/** What charging uses of the service. */
export interface Charging {
	db: Queryable;
	broker: Pick<ServiceBroker, "call">;
	logger: Pick<Logger, "warn">;
}

/** Asks billing to charge the appointment (idempotent there); remembers success. */
export async function requestCharge(service: Charging, appointment: Pick<Appointment, "id" | "patientId" | "consultationFee">): Promise<boolean> {
	try {
		await service.broker.call(
			"billing.chargeAppointment",
			{ appointmentId: appointment.id, patientId: appointment.patientId, consultationFee: appointment.consultationFee },
			{ timeout: 3000 }
		);
		await service.db.query(markCharged(appointment.id));
		return true;
	} catch (err) {
		service.logger.warn(`Appointment ${appointment.id} not charged yet (${(err as Error).message}); will retry`);
		return false;
	}
}

/** Asks again for the oldest uncharged visits, stopping at the first billing does not take. */
export async function chargeFulfilled(service: Charging): Promise<void> {
	for (const row of await service.db.query<UnchargedRow>(unchargedAppointments())) {
		if (!(await requestCharge(service, { id: row.id, patientId: row.patientId, consultationFee: Number(row.consultationFee) }))) return;
	}
}
