import crypto from "node:crypto";
import { isUuid } from "../lib/sql";
import { type Context, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import { DataTypes, Op, QueryTypes, type Transaction } from "sequelize";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { appointmentMigrations } from "../migrations/appointments";
import { config } from "../lib/config";
import { type PeriodicJob, runPeriodically } from "../lib/periodic";
import { ConflictError, NotFoundError, invalidFields } from "../lib/errors";
import { violatedExclusionConstraint } from "../lib/db-errors";
import { type Page, type PageRequest, limitOffset, pagingParams, toPage } from "../lib/paging";
import { APPOINTMENT_ATTENDANTS, APPOINTMENT_READERS, APPOINTMENT_SCHEDULERS } from "../lib/roles";
import { type AvailabilityWindow, type Interval, withinAvailability } from "../lib/scheduling";
import { dateOnly, instant, idParam, uuidRule } from "../lib/validation";
import { formatZoned, zonedInstant } from "../lib/zoned-time";
import { errorFields } from "../lib/log-fields";
import { type RequestMeta, created } from "../lib/http";

export const APPOINTMENT_STATUSES = ["booked", "arrived", "fulfilled", "cancelled", "noshow"] as const;
type Status = (typeof APPOINTMENT_STATUSES)[number];

export interface Appointment {
	id: string;
	patientId: string;
	doctorId: string;
	start: string;
	end: string;
	durationMinutes: number;
	timezone: string;
	consultationFee: number;
	status: Status;
	reason: string | null;
	cancellationReason: string | null;
	createdAt: string;
	updatedAt: string;
	/** The original API's computed fields, in the doctor's wall-clock time. */
	date: string;
	startTime: string;
	endTime: string;
	startDateTime: string;
	endDateTime: string;
}

interface Row {
	id: string;
	patient_id: string;
	doctor_id: string;
	start_at: Date;
	end_at: Date;
	duration_minutes: number;
	timezone: string;
	consultation_fee: string;
	status: Status;
	reason: string | null;
	cancellation_reason: string | null;
	created_at: Date;
	updated_at: Date;
}

interface DoctorView {
	id: string;
	timezone: string;
	slotMinutes: number;
	consultationFee: number;
	availability: AvailabilityWindow[];
}

/** When: a `start` instant, or the original API's `date` + `startTime` on the doctor's wall clock. */
interface WhenInput {
	start?: string;
	date?: string;
	startTime?: string;
	durationMinutes?: number;
}

interface AppointmentMethods {
	toAppointment(row: Row): Appointment;
	findRow(id: string): Promise<Row>;
	schedule(doctor: DoctorView, when: WhenInput, defaultMinutes: number): Interval;
	doctorFor(ctx: Context, doctorId: string): Promise<DoctorView>;
	exclusive<T>(keys: string[], work: (transaction: Transaction) => Promise<T>): Promise<T>;
	transition(ctx: Context, id: string, from: Status[], to: Status, cancellationReason?: string): Promise<Appointment>;
	requestCharge(appointment: { id: string; patientId: string; consultationFee: number }): Promise<boolean>;
	chargeFulfilled(): Promise<void>;
}

interface AppointmentsVars extends DbVars {
	charger?: PeriodicJob;
}

type AppointmentsThis = Service<ServiceSettingSchema> & AppointmentsVars & AppointmentMethods;

const SELECT = "SELECT * FROM appointments";
const ACTIVE: Status[] = ["booked", "arrived"];

const whenParams = {
	start: instant({ optional: true }),
	date: dateOnly({ optional: true }),
	startTime: { type: "string", pattern: /^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$/, optional: true, messages: { stringPattern: "The '{field}' field must be HH:mm or HH:mm:ss." } },
	durationMinutes: { type: "number", integer: true, min: 5, max: 480, optional: true }
};
const reasonParam = { type: "string", trim: true, max: 500, optional: true };

/**
 * Appointments, which can never collide: an exclusion constraint over each
 * doctor's and each patient's active time ranges makes the database refuse the
 * second of two overlapping bookings, however close together they arrive.
 */
const AppointmentsService: ServiceSchema<ServiceSettingSchema, AppointmentMethods, AppointmentsVars> = {
	name: "appointments",

	mixins: [
		DbMixin(
			"appointments",
			appointmentMigrations,
			{
				name: "appointment",
				define: {
					id: { type: DataTypes.UUID, primaryKey: true },
					patientId: { type: DataTypes.UUID, allowNull: false },
					doctorId: { type: DataTypes.UUID, allowNull: false },
					startAt: { type: DataTypes.DATE, allowNull: false },
					endAt: { type: DataTypes.DATE, allowNull: false },
					status: { type: DataTypes.STRING(10), allowNull: false }
				},
				options: { tableName: "appointments", underscored: true, timestamps: true }
			}
		)
	],

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
				// Both must exist; one 422 names every one that does not.
				const [patient, doctor] = await Promise.allSettled([
					ctx.call("patients.get", { id: patientId }),
					this.doctorFor(ctx, doctorId)
				]);
				const missing = [patient.status === "rejected" && "patientId", doctor.status === "rejected" && "doctorId"].filter(Boolean) as string[];
				for (const result of [patient, doctor]) {
					if (result.status === "rejected" && (result.reason as { code?: number }).code !== 404) throw result.reason;
				}
				if (missing.length) {
					throw invalidFields(missing.map(field => ({ field, message: `The '${field}' field names no ${field === "patientId" ? "patient" : "doctor"}.` })));
				}
				const doc = (doctor as PromiseFulfilledResult<DoctorView>).value;
				const span = this.schedule(doc, ctx.params, ctx.params.start ? doc.slotMinutes : 60);
				const [row] = await this.exclusive([`appointment-doctor:${doctorId}`, `appointment-patient:${patientId}`], transaction =>
					this.adapter.db.query<Row>(
						`INSERT INTO appointments (id, patient_id, doctor_id, start_at, end_at, duration_minutes, timezone, consultation_fee, reason)
						 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *`,
						{
							bind: [crypto.randomUUID(), patientId, doctorId, new Date(span.start), new Date(span.end), (span.end - span.start) / 60_000, doc.timezone, doc.consultationFee, ctx.params.reason ?? null],
							type: QueryTypes.SELECT,
							transaction
						}
					)
				);
				const appointment = this.toAppointment(row);
				created(ctx, `/appointments/${appointment.id}`, appointment);
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
			async handler(ctx: Context<PageRequest & { doctorId?: string; patientId?: string; status?: Status; from?: string; to?: string }>): Promise<Page<Appointment>> {
				const filters: [string, unknown][] = [
					["doctor_id = $?", ctx.params.doctorId],
					["patient_id = $?", ctx.params.patientId],
					["status = $?", ctx.params.status],
					["start_at >= $?", ctx.params.from && new Date(ctx.params.from)],
					["start_at < $?", ctx.params.to && new Date(ctx.params.to)]
				];
				const bind: unknown[] = [];
				const clauses = filters.filter(([, value]) => value !== undefined).map(([sql, value]) => sql.replace("$?", `$${bind.push(value)}`));
				const where = clauses.length ? `WHERE ${clauses.join(" AND ")}` : "";
				const [{ total }] = await this.adapter.db.query<{ total: number }>(`SELECT count(*)::int AS total FROM appointments ${where}`, { bind, type: QueryTypes.SELECT });
				const { limit, offset } = limitOffset(ctx.params);
				const rows = await this.adapter.db.query<Row>(`${SELECT} ${where} ORDER BY start_at, id LIMIT ${limit} OFFSET ${offset}`, { bind, type: QueryTypes.SELECT });
				return toPage(rows.map(r => this.toAppointment(r)), total, ctx.params);
			}
		},

		get: {
			roles: APPOINTMENT_READERS,
			audit: "patient",
			rest: "GET /:id",
			params: { id: idParam },
			async handler(ctx: Context<{ id: string }>): Promise<Appointment> {
				return this.toAppointment(await this.findRow(ctx.params.id));
			}
		},

		reschedule: {
			roles: APPOINTMENT_SCHEDULERS,
			audit: "patient",
			rest: "PATCH /:id",
			params: { $$strict: true, id: idParam, ...whenParams, reason: reasonParam },
			async handler(ctx: Context<WhenInput & { id: string; reason?: string }>): Promise<Appointment> {
				const current = await this.findRow(ctx.params.id);
				if (current.status !== "booked") throw new ConflictError(`A ${current.status} appointment cannot be rescheduled`, { status: current.status });
				const doctor = await this.doctorFor(ctx, current.doctor_id);
				const keepStart = !ctx.params.start && !ctx.params.date && !ctx.params.startTime;
				const when = keepStart ? { ...ctx.params, start: current.start_at.toISOString() } : ctx.params;
				const span = this.schedule(doctor, when, current.duration_minutes);
				const [row] = await this.exclusive([`appointment-doctor:${current.doctor_id}`, `appointment-patient:${current.patient_id}`], transaction =>
					this.adapter.db.query<Row>(
						`UPDATE appointments SET start_at = $2, end_at = $3, duration_minutes = $4, reason = COALESCE($5, reason), updated_at = now()
						 WHERE id = $1 AND status = 'booked' RETURNING *`,
						{ bind: [current.id, new Date(span.start), new Date(span.end), (span.end - span.start) / 60_000, ctx.params.reason ?? null], type: QueryTypes.SELECT, transaction }
					)
				);
				if (!row) throw new ConflictError("The appointment changed meanwhile; reload it");
				return this.toAppointment(row);
			}
		},

		arrive: {
			roles: APPOINTMENT_ATTENDANTS,
			audit: "patient",
			rest: "POST /:id/arrive",
			params: { $$strict: true, id: idParam },
			handler(ctx: Context<{ id: string }>): Promise<Appointment> {
				return this.transition(ctx, ctx.params.id, ["booked"], "arrived");
			}
		},

		fulfil: {
			roles: APPOINTMENT_ATTENDANTS,
			audit: "patient",
			rest: "POST /:id/fulfil",
			params: { $$strict: true, id: idParam },
			handler(ctx: Context<{ id: string }>): Promise<Appointment> {
				return this.transition(ctx, ctx.params.id, ["arrived"], "fulfilled");
			}
		},

		noShow: {
			roles: APPOINTMENT_ATTENDANTS,
			audit: "patient",
			rest: "POST /:id/no-show",
			params: { $$strict: true, id: idParam },
			handler(ctx: Context<{ id: string }>): Promise<Appointment> {
				return this.transition(ctx, ctx.params.id, ["booked"], "noshow");
			}
		},

		cancel: {
			roles: APPOINTMENT_SCHEDULERS,
			audit: "patient",
			rest: "POST /:id/cancel",
			params: { $$strict: true, id: idParam, reason: { type: "string", trim: true, empty: false, max: 500 } },
			handler(ctx: Context<{ id: string; reason: string }>): Promise<Appointment> {
				return this.transition(ctx, ctx.params.id, ["booked", "arrived"], "cancelled", ctx.params.reason);
			}
		},

		/** Active appointments of a doctor overlapping a time range, as intervals. For the doctors service's slots; not routed. */
		busy: {
			visibility: "public",
			params: { doctorId: uuidRule(), from: instant(), to: instant() },
			async handler(ctx: Context<{ doctorId: string; from: string; to: string }>): Promise<Interval[]> {
				const rows = await this.adapter.db.query<{ start_at: Date; end_at: Date }>(
					`SELECT start_at, end_at FROM appointments WHERE doctor_id = $1 AND status IN ('booked', 'arrived') AND start_at < $3 AND end_at > $2`,
					{ bind: [ctx.params.doctorId, new Date(ctx.params.from), new Date(ctx.params.to)], type: QueryTypes.SELECT }
				);
				return rows.map(r => ({ start: r.start_at.getTime(), end: r.end_at.getTime() }));
			}
		},

		/** A doctor's booked or arrived appointments still to come. Not routed. */
		countUpcoming: {
			visibility: "public",
			params: { doctorId: uuidRule() },
			async handler(ctx: Context<{ doctorId: string }>): Promise<number> {
				return this.adapter.model.count({ where: { doctorId: ctx.params.doctorId, status: ACTIVE, startAt: { [Op.gt]: new Date() } } });
			}
		}
	},

	events: {
		/** A deleted patient keeps no future appointments. */
		async "patient.deleted"(this: AppointmentsThis, ctx: Context<{ id: string }>) {
			const rows = await this.adapter.db.query<Row>(
				`UPDATE appointments SET status = 'cancelled', cancellation_reason = 'The patient''s record was deleted', updated_at = now()
				 WHERE patient_id = $1 AND status IN ('booked', 'arrived') AND start_at > now() RETURNING *`,
				{ bind: [ctx.params.id], type: QueryTypes.SELECT }
			);
			for (const row of rows) await ctx.emit("appointment.cancelled", this.toAppointment(row));
		}
	},

	methods: {
		toAppointment(row: Row): Appointment {
			// `YYYY-MM-DDTHH:mm:ss±hh:mm` in the doctor's zone: the original's local fields are slices of it.
			const start = formatZoned(new Date(row.start_at).getTime(), row.timezone);
			const end = formatZoned(new Date(row.end_at).getTime(), row.timezone);
			return {
				id: row.id,
				patientId: row.patient_id,
				doctorId: row.doctor_id,
				start,
				end,
				durationMinutes: row.duration_minutes,
				timezone: row.timezone,
				consultationFee: Number(row.consultation_fee),
				status: row.status,
				reason: row.reason,
				cancellationReason: row.cancellation_reason,
				createdAt: new Date(row.created_at).toISOString(),
				updatedAt: new Date(row.updated_at).toISOString(),
				date: start.slice(0, 10),
				startTime: start.slice(11, 19),
				endTime: end.slice(11, 19),
				startDateTime: start.slice(0, 19),
				endDateTime: end.slice(0, 19)
			};
		},

		async findRow(this: AppointmentsThis, id: string): Promise<Row> {
			const [row] = isUuid(id) ? await this.adapter.db.query<Row>(`${SELECT} WHERE id = $1`, { bind: [id], type: QueryTypes.SELECT }) : [];
			if (!row) throw new NotFoundError("Appointment", id);
			return row;
		},

		async doctorFor(this: AppointmentsThis, ctx: Context, doctorId: string): Promise<DoctorView> {
			return ctx.call<DoctorView, { id: string }>("doctors.get", { id: doctorId });
		},

		/** The appointment's time span: in the future, and inside the doctor's availability, in the doctor's zone. */
		schedule(doctor: DoctorView, when: WhenInput, defaultMinutes: number): Interval {
			let start: number;
			if (when.start) start = Date.parse(when.start);
			else if (when.date && when.startTime) start = zonedInstant(when.date, when.startTime.slice(0, 5), doctor.timezone) + Number(when.startTime.slice(6, 8) || 0) * 1000;
			else throw invalidFields([{ field: "start", message: "The 'start' field is required (or the original 'date' and 'startTime')." }]);
			const span = { start, end: start + (when.durationMinutes ?? defaultMinutes) * 60_000 };
			if (span.start <= Date.now()) throw invalidFields([{ field: "start", message: "The 'start' field must be in the future." }]);
			if (!withinAvailability(span, doctor.availability, doctor.timezone)) {
				throw invalidFields([{ field: "start", message: `The appointment must lie inside the doctor's availability (${doctor.timezone} wall-clock time).` }]);
			}
			return span;
		},

		/**
		 * Runs a booking write under the exclusion constraints: an overlap is the 409 it means. First it
		 * takes a transaction lock per doctor and per patient, always in the same order: bookings that
		 * collide on both constraints at once (one patient, two doctors) would otherwise deadlock.
		 */
		async exclusive<T>(this: AppointmentsThis, keys: string[], work: (transaction: Transaction) => Promise<T>): Promise<T> {
			try {
				return await this.adapter.db.transaction(async transaction => {
					// One round trip for all the locks, the fewer while others wait on them: the aggregate takes them all, in array order, before it answers.
					await this.adapter.db.query("SELECT count(pg_advisory_xact_lock(hashtext(key))) FROM unnest($1::text[]) AS key", { bind: [[...keys].sort()], transaction });
					return work(transaction);
				});
			} catch (err) {
				const constraint = violatedExclusionConstraint(err);
				if (constraint) {
					const who = constraint === "appointments_patient_no_overlap" ? "patient" : "doctor";
					throw new ConflictError(`The ${who} already has an appointment at that time`, { field: who === "patient" ? "patientId" : "doctorId" });
				}
				throw err;
			}
		},

		/** Moves along the lifecycle: only from the allowed states, atomically; anything else is 409. */
		async transition(this: AppointmentsThis, ctx: Context, id: string, from: Status[], to: Status, cancellationReason?: string): Promise<Appointment> {
			const [row] = isUuid(id)
				? await this.adapter.db.query<Row>(
						`UPDATE appointments SET status = $2, cancellation_reason = COALESCE($4, cancellation_reason), updated_at = now()
						 WHERE id = $1 AND status = ANY($3::varchar[]) RETURNING *`,
						{ bind: [id, to, from, cancellationReason ?? null], type: QueryTypes.SELECT }
					)
				: [];
			if (!row) {
				// Only a failed change reads the row: to answer 404 if there is none, else 409 naming its status.
				const now = await this.findRow(id);
				throw new ConflictError(`A ${now.status} appointment cannot become ${to}`, { status: now.status });
			}
			const appointment = this.toAppointment(row);
			if (to === "cancelled" || to === "fulfilled") await ctx.emit(`appointment.${to}`, appointment);
			// The charge must not depend on billing being up, nor hold up the answer: ask now, and the timer asks again until billing answers.
			if (to === "fulfilled") void this.requestCharge(appointment);
			return appointment;
		},

		/** Asks billing to charge the appointment (idempotent there); remembers success. */
		async requestCharge(this: AppointmentsThis, appointment: { id: string; patientId: string; consultationFee: number }): Promise<boolean> {
			try {
				await this.broker.call(
					"billing.chargeAppointment",
					{ appointmentId: appointment.id, patientId: appointment.patientId, consultationFee: appointment.consultationFee },
					{ timeout: 3000 }
				);
				await this.adapter.db.query("UPDATE appointments SET charged_at = now() WHERE id = $1", { bind: [appointment.id] });
				return true;
			} catch (err) {
				this.logger.warn(`Appointment ${appointment.id} not charged yet (${(err as Error).message}); will retry`);
				return false;
			}
		},

		async chargeFulfilled(this: AppointmentsThis): Promise<void> {
			const rows = await this.adapter.db.query<Row>(`${SELECT} WHERE status = 'fulfilled' AND charged_at IS NULL ORDER BY updated_at LIMIT 100`, {
				type: QueryTypes.SELECT
			});
			for (const row of rows) {
				if (!(await this.requestCharge({ id: row.id, patientId: row.patient_id, consultationFee: Number(row.consultation_fee) }))) return;
			}
		}
	},

	started(this: AppointmentsThis) {
		this.charger = runPeriodically(
			() => this.chargeFulfilled(),
			config.billingReconcileIntervalMs,
			err => this.logger.warn(errorFields(err), "Charging fulfilled appointments failed")
		);
	},

	async stopped(this: AppointmentsThis) {
		await this.charger?.stop();
	}
};

export default AppointmentsService;
