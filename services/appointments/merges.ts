import type { Database } from "../../lib/infra/database";
import { type Appointment, type MovedRow, lockKeys, moveToSurvivor, toAppointment } from "./queries";

/** Appointments follow a merged (duplicate) patient to the survivor. */

/** An appointment the merge moved, and whether it was cancelled on the way as the survivor's double booking. */
export interface MovedAppointment {
	appointment: Appointment;
	cancelledByMerge: boolean;
}

/**
 * Moves the merged patient's appointments to the survivor, once per event, in one transaction.
 * It first takes both patients' booking locks (in the order bookings take them), so no booking for
 * either slips in between what the move reads and what it writes. Nothing on a redelivery.
 */
export async function followMerge(db: Pick<Database, "transaction">, eventId: string, mergedId: string, survivorId: string): Promise<MovedAppointment[]> {
	if (mergedId === survivorId) return [];
	const rows = await db.transaction(async tx => {
		await tx.query(lockKeys([`appointment-patient:${mergedId}`, `appointment-patient:${survivorId}`].sort()));
		return tx.query<MovedRow>(moveToSurvivor(eventId, mergedId, survivorId));
	});
	return rows.map(row => ({ appointment: toAppointment(row), cancelledByMerge: row.cancelledByMerge }));
}
