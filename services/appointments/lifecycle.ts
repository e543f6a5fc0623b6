import type { Context } from "moleculer";
import type { Queryable } from "../../lib/infra/database";
import { ConflictError, NotFoundError } from "../../lib/infra/errors";
import { type RequestMeta, checkIfMatch, withVersion } from "../../lib/infra/http";
import { METRICS, countCommitted } from "../../lib/infra/metrics";
import { isUuid } from "../../lib/infra/sql";
import { type Charging, requestCharge } from "./charges";
import { type Appointment, type AppointmentRow, type Status, appointmentById, changeStatus, toAppointment } from "./queries";

/** An appointment's way from booked to its end: which steps are allowed, and what each one sets off. */

/** Each step: the states it may start from, and the state it leads to. */
export const STEPS = {
	arrive: { from: ["booked"], to: "arrived" },
	fulfil: { from: ["arrived"], to: "fulfilled" },
	noShow: { from: ["booked"], to: "noshow" },
	cancel: { from: ["booked", "arrived"], to: "cancelled" }
} as const satisfies Record<string, { from: readonly Status[]; to: Status }>;

/** The appointment as stored; 404 if there is none, a malformed id included. */
export async function findAppointment(db: Queryable, id: string): Promise<AppointmentRow> {
	const [row] = isUuid(id) ? await db.query<AppointmentRow>(appointmentById(id)) : [];
	if (!row) throw new NotFoundError("Appointment", id);
	return row;
}

/** Takes one step, only from the states it allows and at a version the If-Match allows, atomically; else 404, 412 or 409. */
export async function transition(
	service: Charging,
	ctx: Context<unknown, RequestMeta>,
	id: string,
	step: keyof typeof STEPS,
	cancellationReason?: string
): Promise<Appointment> {
	const { from, to } = STEPS[step];
	const [row] = isUuid(id) ? await service.db.query<AppointmentRow>(changeStatus(id, from, to, cancellationReason ?? null, ctx.meta.ifMatch, ctx.meta.user?.id ?? null)) : [];
	if (!row) {
		// Only a failed step reads the row: to answer 404 if there is none, 412 if its version is not the one named, else 409 naming its status.
		const now = await findAppointment(service.db, id);
		checkIfMatch(ctx.meta, "Appointment", now.version);
		throw new ConflictError(`A ${now.status} appointment cannot become ${to}`, { status: now.status });
	}
	const appointment = toAppointment(row);
	// The step has committed (one statement): counted before anything else can fail.
	if (to === "cancelled") countCommitted(ctx.broker.metrics, METRICS.appointmentsCancelled);
	if (to === "fulfilled") countCommitted(ctx.broker.metrics, METRICS.appointmentsFulfilled);
	if (to === "cancelled" || to === "fulfilled") await ctx.emit(`appointment.${to}`, appointment);
	// Billing is asked now, not awaited: the charge timer asks again until billing answers.
	if (to === "fulfilled") void requestCharge(service, appointment);
	return withVersion(ctx, appointment);
}
