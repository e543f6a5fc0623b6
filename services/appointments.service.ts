import crypto from "node:crypto";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { KafkaMixin } from "../mixins/kafka.mixin";
import { appointmentMigrations } from "../migrations/appointments";
import { config } from "../lib/infra/config";
import { type PeriodicJob, runPeriodically } from "../lib/infra/periodic";
import { ConflictError } from "../lib/infra/errors";
import { type Page, type PageRequest, pagingParams, toPage } from "../lib/domain/paging";
import { APPOINTMENT_ATTENDANTS, APPOINTMENT_READERS, APPOINTMENT_SCHEDULERS } from "../lib/domain/roles";
import type { Interval } from "../lib/domain/scheduling";
import { instant, idParam, uuidRule } from "../lib/domain/validation";
import { errorFields } from "../lib/infra/log-fields";
import { METRICS, countCommitted, registerBusinessCounter } from "../lib/infra/metrics";
import { type RequestMeta, checkIfMatch, created, withVersion } from "../lib/infra/http";
import { idempotencyLock, idempotentRequest, replayCreated } from "../lib/infra/idempotent-create";
import { type WhenInput, doctorFor, exclusive, participants, reasonParam, schedule, whenParams } from "./appointments/booking";
import { chargeFulfilled } from "./appointments/charges";
import { patientEventsConsumer } from "./appointments/consumers";
import { findAppointment, transition } from "./appointments/lifecycle";
import {
	APPOINTMENT_STATUSES,
	type Appointment,
	type AppointmentFilter,
	type AppointmentRow,
	type EarlierBooking,
	type HistoryEntry,
	type HistoryRow,
	appointmentBookedByKey,
	appointmentPage,
	busyTimes,
	cancelFutureOfPatient,
	countUpcoming,
	historyPage,
	insertAppointment,
	moveAppointment,
	rememberAnswer,
	toAppointment,
	toHistoryEntry
} from "./appointments/queries";

interface AppointmentsVars extends DbVars {
	charger?: PeriodicJob;
}

type AppointmentsThis = Service<ServiceSettingSchema> & AppointmentsVars;

/**
 * Appointments, which can never collide: an exclusion constraint over each
 * doctor's and each patient's active time ranges makes the database refuse the
 * second of two overlapping bookings, however close together they arrive. They
 * follow a merged patient to the survivor (the patient topic's PATIENT_MERGED).
 */
const AppointmentsService: ServiceSchema<ServiceSettingSchema, Record<string, never>, AppointmentsVars> = {
	name: "appointments",

	// The last mixin starts first and stops last (DbMixin): no patient event is handled before the database is open.
	mixins: [KafkaMixin(), DbMixin("appointments", appointmentMigrations)],

	kafka: {
		consumers: [patientEventsConsumer]
	},

	settings: {
		rest: "/appointments"
	},

	actions: {
		book: {
			roles: APPOINTMENT_SCHEDULERS,
			audit: "patient",
			rest: "POST /",
			params: { $$strict: true, patientId: idParam, doctorId: idParam, ...whenParams, reason: reasonParam },
			async handler(ctx: Context<WhenInput & { patientId: string; doctorId: string; reason?: string }, RequestMeta>): Promise<Appointment> {
				const { patientId, doctorId } = ctx.params;
				const request = idempotentRequest(ctx);
				// A retry of a booking that was made gets its answer, whatever the slot or the patient has become since.
				const replay = (earlier: EarlierBooking) => replayCreated(ctx, request!, earlier, a => `/appointments/${a.id}`);
				const [earlier] = request ? await this.db.query<EarlierBooking>(appointmentBookedByKey(request)) : [];
				if (earlier) return replay(earlier);
				const doctor = await participants(ctx, patientId, doctorId);
				const span = schedule(doctor, ctx.params, ctx.params.start ? doctor.slotMinutes : 60);
				const booking = { id: crypto.randomUUID(), patientId, doctorId, span, timezone: doctor.timezone, consultationFee: doctor.consultationFee, reason: ctx.params.reason ?? null };
				const outcome = await exclusive(
					this.db,
					{ doctorId, patientId },
					async tx => {
						// A retry that raced the first attempt waited for its key's lock, and finds its booking now rather than colliding with it.
						const [raced] = request ? await tx.query<EarlierBooking>(appointmentBookedByKey(request)) : [];
						if (raced) return { raced };
						const [row] = await tx.query<AppointmentRow>(insertAppointment(booking, request, ctx.meta.user?.id ?? null));
						const appointment = toAppointment(row);
						if (request) await tx.query(rememberAnswer(appointment.id, appointment));
						return { appointment };
					},
					request ? [idempotencyLock("appointments", request)] : []
				);
				if (outcome.raced) return replay(outcome.raced);
				const { appointment } = outcome;
				countCommitted(this.broker.metrics, METRICS.appointmentsBooked);
				created(ctx, `/appointments/${appointment.id}`, withVersion(ctx, appointment));
				await ctx.emit("appointment.booked", appointment);
				return appointment;
			}
		},

		list: {
			roles: APPOINTMENT_READERS,
			audit: "patient",
			rest: "GET /",
			params: {
				$$strict: true,
				...pagingParams(),
				doctorId: uuidRule({ optional: true }),
				patientId: uuidRule({ optional: true }),
				status: { type: "enum", values: APPOINTMENT_STATUSES, optional: true },
				from: instant({ optional: true }),
				to: instant({ optional: true })
			},
			async handler(ctx: Context<AppointmentFilter>): Promise<Page<Appointment>> {
				const page = appointmentPage(ctx.params);
				const [{ total }] = await this.db.query<{ total: number }>(page.count);
				const rows = await this.db.query<AppointmentRow>(page.rows);
				return toPage(rows.map(toAppointment), total, ctx.params);
			}
		},

		get: {
			roles: APPOINTMENT_READERS,
			audit: "patient",
			rest: "GET /:id",
			params: { id: idParam },
			async handler(ctx: Context<{ id: string }, RequestMeta>): Promise<Appointment> {
				return withVersion(ctx, toAppointment(await findAppointment(this.db, ctx.params.id)));
			}
		},

		history: {
			roles: APPOINTMENT_READERS,
			audit: "patient",
			rest: "GET /:id/history",
			params: { $$strict: true, id: idParam, ...pagingParams() },
			async handler(ctx: Context<{ id: string } & PageRequest>): Promise<Page<HistoryEntry> & { appointmentId: string; patientId: string }> {
				const appointment = await findAppointment(this.db, ctx.params.id);
				const page = historyPage(appointment.id, ctx.params);
				const [{ total }] = await this.db.query<{ total: number }>(page.count);
				const rows = await this.db.query<HistoryRow>(page.rows);
				// The patient it belongs to now: the audit trail names them.
				return { ...toPage(rows.map(toHistoryEntry), total, ctx.params), appointmentId: appointment.id, patientId: appointment.patientId };
			}
		},

		reschedule: {
			roles: APPOINTMENT_SCHEDULERS,
			audit: "patient",
			rest: "PATCH /:id",
			params: { $$strict: true, id: idParam, ...whenParams, reason: reasonParam },
			async handler(ctx: Context<WhenInput & { id: string; reason?: string }, RequestMeta>): Promise<Appointment> {
				const current = await findAppointment(this.db, ctx.params.id);
				checkIfMatch(ctx.meta, "Appointment", current.version);
				if (current.status !== "booked") throw new ConflictError(`A ${current.status} appointment cannot be rescheduled`, { status: current.status });
				const doctor = await doctorFor(ctx, current.doctorId);
				const keepStart = !ctx.params.start && !ctx.params.date && !ctx.params.startTime;
				const span = schedule(doctor, keepStart ? { ...ctx.params, start: current.startAt.toISOString() } : ctx.params, current.durationMinutes);
				const [row] = await exclusive(this.db, current, tx =>
					tx.query<AppointmentRow>(moveAppointment(current.id, span, ctx.params.reason ?? null, ctx.meta.ifMatch))
				);
				if (!row) {
					checkIfMatch(ctx.meta, "Appointment", (await findAppointment(this.db, current.id)).version);
					throw new ConflictError("The appointment changed meanwhile; reload it");
				}
				return withVersion(ctx, toAppointment(row));
			}
		},

		arrive: {
			roles: APPOINTMENT_ATTENDANTS,
			audit: "patient",
			rest: "POST /:id/arrive",
			params: { $$strict: true, id: idParam },
			handler(ctx: Context<{ id: string }, RequestMeta>): Promise<Appointment> {
				return transition(this, ctx, ctx.params.id, "arrive");
			}
		},

		fulfil: {
			roles: APPOINTMENT_ATTENDANTS,
			audit: "patient",
			rest: "POST /:id/fulfil",
			params: { $$strict: true, id: idParam },
			handler(ctx: Context<{ id: string }, RequestMeta>): Promise<Appointment> {
				return transition(this, ctx, ctx.params.id, "fulfil");
			}
		},

		noShow: {
			roles: APPOINTMENT_ATTENDANTS,
			audit: "patient",
			rest: "POST /:id/no-show",
			params: { $$strict: true, id: idParam },
			handler(ctx: Context<{ id: string }, RequestMeta>): Promise<Appointment> {
				return transition(this, ctx, ctx.params.id, "noShow");
			}
		},

		cancel: {
			roles: APPOINTMENT_SCHEDULERS,
			audit: "patient",
			rest: "POST /:id/cancel",
			params: { $$strict: true, id: idParam, reason: { type: "string", trim: true, empty: false, max: 500 } },
			handler(ctx: Context<{ id: string; reason: string }, RequestMeta>): Promise<Appointment> {
				return transition(this, ctx, ctx.params.id, "cancel", ctx.params.reason);
			}
		},

		/** Active appointments of a doctor overlapping a time range, as intervals. For the doctors service's slots; not routed. */
		busy: {
			visibility: "public",
			params: { doctorId: uuidRule(), from: instant(), to: instant() },
			async handler(ctx: Context<{ doctorId: string; from: string; to: string }>): Promise<Interval[]> {
				const rows = await this.db.query<Pick<AppointmentRow, "startAt" | "endAt">>(busyTimes(ctx.params.doctorId, new Date(ctx.params.from), new Date(ctx.params.to)));
				return rows.map(r => ({ start: r.startAt.getTime(), end: r.endAt.getTime() }));
			}
		},

		/** A doctor's booked or arrived appointments still to come. Not routed. */
		countUpcoming: {
			visibility: "public",
			params: { doctorId: uuidRule() },
			async handler(ctx: Context<{ doctorId: string }>): Promise<number> {
				const [{ count }] = await this.db.query<{ count: number }>(countUpcoming(ctx.params.doctorId, new Date()));
				return count;
			}
		}
	},

	events: {
		/** A deleted patient keeps no future appointments. */
		async "patient.deleted"(this: AppointmentsThis, ctx: Context<{ id: string; mergedInto?: string | null }>) {
			// A duplicate that a merge retired keeps them: they follow it to the survivor (PATIENT_MERGED) instead.
			if (ctx.params.mergedInto) return;
			const rows = await this.db.query<AppointmentRow>(cancelFutureOfPatient(ctx.params.id));
			countCommitted(this.broker.metrics, METRICS.appointmentsCancelled, undefined, rows.length);
			for (const row of rows) await ctx.emit("appointment.cancelled", toAppointment(row));
		}
	},

	created(this: AppointmentsThis) {
		const metrics = this.broker.metrics;
		registerBusinessCounter(metrics, METRICS.appointmentsBooked, "Appointments booked (committed; a retry under the same Idempotency-Key counts once)");
		registerBusinessCounter(metrics, METRICS.appointmentsCancelled, "Appointments cancelled, by a client or with their patient's deletion");
		registerBusinessCounter(metrics, METRICS.appointmentsFulfilled, "Appointments fulfilled");
	},

	started(this: AppointmentsThis) {
		this.charger = runPeriodically(
			() => chargeFulfilled(this),
			config.billingReconcileIntervalMs,
			err => this.logger.warn(errorFields(err), "Charging fulfilled appointments failed")
		);
	},

	async stopped(this: AppointmentsThis) {
		await this.charger?.stop();
	}
};

export default AppointmentsService;
