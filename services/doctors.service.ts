import crypto from "node:crypto";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { isUuid } from "../lib/infra/sql";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { doctorMigrations } from "../migrations/doctors";
import type { Statement } from "../lib/infra/database";
import { ConflictError, NotFoundError } from "../lib/infra/errors";
import { violatedUniqueConstraint } from "../lib/infra/db-errors";
import { type Page, pagingParams, toPage } from "../lib/domain/paging";
import { DOCTOR_READERS, DOCTOR_WRITERS } from "../lib/domain/roles";
import type { Interval } from "../lib/domain/scheduling";
import { dateOnly, partialUpdate, idParam } from "../lib/domain/validation";
import { type RequestMeta, created, noContent } from "../lib/infra/http";
import { doctorFields } from "./doctors/params";
import { type Doctor, type DoctorFilter, type DoctorInput, type DoctorRow, deleteDoctor, doctorById, doctorPage, insertDoctor, toDoctor, updateDoctor } from "./doctors/queries";
import { type SlotDates, doctorSlots, slotDates, slotInstants } from "./doctors/slots";

interface DoctorMethods {
	findDoctor(id: string): Promise<Doctor>;
	saveDoctor(id: string, statement: Statement): Promise<Doctor>;
}

type DoctorsThis = Service<ServiceSettingSchema> & DbVars & DoctorMethods;

/** Doctors, their weekly availability, and their free slots. */
const DoctorsService: ServiceSchema<ServiceSettingSchema, DoctorMethods, DbVars> = {
	name: "doctors",

	mixins: [DbMixin("doctors", doctorMigrations)],

	settings: {
		rest: "/doctors"
	},

	actions: {
		create: {
			roles: DOCTOR_WRITERS,
			rest: "POST /",
			params: { $$strict: true, ...doctorFields },
			async handler(ctx: Context<DoctorInput, RequestMeta>): Promise<Doctor> {
				const id = crypto.randomUUID();
				const doctor = await this.saveDoctor(id, insertDoctor(id, ctx.params));
				return created(ctx, `/doctors/${doctor.id}`, doctor);
			}
		},

		list: {
			roles: DOCTOR_READERS,
			rest: "GET /",
			params: {
				$$strict: true,
				...pagingParams(),
				specialization: { type: "string", trim: true, empty: false, max: 100, optional: true },
				search: { type: "string", trim: true, empty: false, max: 100, optional: true }
			},
			async handler(ctx: Context<DoctorFilter>): Promise<Page<Doctor>> {
				const page = doctorPage(ctx.params);
				const [[{ total }], rows] = await Promise.all([this.db.query<{ total: number }>(page.count), this.db.query<DoctorRow>(page.rows)]);
				return toPage(rows.map(toDoctor), total, ctx.params);
			}
		},

		get: {
			roles: DOCTOR_READERS,
			rest: "GET /:id",
			params: { id: idParam },
			handler(ctx: Context<{ id: string }>): Promise<Doctor> {
				return this.findDoctor(ctx.params.id);
			}
		},

		update: {
			roles: DOCTOR_WRITERS,
			rest: "PATCH /:id",
			params: partialUpdate(doctorFields, { id: idParam }),
			async handler(ctx: Context<DoctorInput & { id: string }>): Promise<Doctor> {
				const { id, ...changes } = ctx.params;
				// Nothing to write: the doctor as it is, its updatedAt unmoved.
				if (Object.values(changes).every(value => value === undefined)) return this.findDoctor(id);
				if (!isUuid(id)) throw new NotFoundError("Doctor", id);
				return this.saveDoctor(id, updateDoctor(id, changes));
			}
		},

		remove: {
			roles: DOCTOR_WRITERS,
			rest: "DELETE /:id",
			params: { id: idParam },
			async handler(ctx: Context<{ id: string }, RequestMeta>): Promise<void> {
				await this.findDoctor(ctx.params.id);
				const upcoming = await ctx.call<number, { doctorId: string }>("appointments.countUpcoming", { doctorId: ctx.params.id });
				if (upcoming > 0) throw new ConflictError(`The doctor has ${upcoming} upcoming appointment(s); cancel or move them first`, { upcoming });
				await this.db.query(deleteDoctor(ctx.params.id));
				noContent(ctx);
			}
		},

		slots: {
			roles: DOCTOR_READERS,
			rest: "GET /:id/slots",
			params: { $$strict: true, id: idParam, date: dateOnly({ optional: true }), from: dateOnly({ optional: true }), to: dateOnly({ optional: true }) },
			async handler(ctx: Context<SlotDates & { id: string }>) {
				const doctor = await this.findDoctor(ctx.params.id);
				const dates = slotDates(ctx.params, doctor.timezone);
				const busy = await ctx.call<Interval[], object>("appointments.busy", { doctorId: doctor.id, ...slotInstants(dates) });
				return doctorSlots(doctor, dates, busy);
			}
		}
	},

	methods: {
		/** The live doctor with this id; 404 otherwise, a malformed id included. */
		async findDoctor(this: DoctorsThis, id: string): Promise<Doctor> {
			const [row] = isUuid(id) ? await this.db.query<DoctorRow>(doctorById(id)) : [];
			if (!row) throw new NotFoundError("Doctor", id);
			return toDoctor(row);
		},

		/** Runs a statement that writes the doctor `id` and returns it: 404 if it wrote none (no live doctor), 409 if the email is taken. */
		async saveDoctor(this: DoctorsThis, id: string, statement: Statement): Promise<Doctor> {
			let row: DoctorRow | undefined;
			try {
				[row] = await this.db.query<DoctorRow>(statement);
			} catch (err) {
				if (violatedUniqueConstraint(err) === "doctors_email_key") throw new ConflictError("A doctor with this email already exists", { field: "email" });
				throw err;
			}
			if (!row) throw new NotFoundError("Doctor", id);
			return toDoctor(row);
		}
	}
};

export default DoctorsService;
