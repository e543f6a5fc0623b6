import { type Context, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import { isUuid, escapeLike } from "../lib/sql";
import { DataTypes, type Model, Op, type WhereOptions, col, fn, where } from "sequelize";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { doctorMigrations } from "../migrations/doctors";
import { todayIn } from "../lib/dates";
import { ConflictError, NotFoundError, invalidFields } from "../lib/errors";
import { violatedUniqueConstraint } from "../lib/db-errors";
import { type Page, type PageRequest, limitOffset, pagingParams, toPage } from "../lib/paging";
import { DOCTOR_READERS, DOCTOR_WRITERS } from "../lib/roles";
import { type AvailabilityWindow, type Interval, availabilityProblem, freeSlots } from "../lib/scheduling";
import { dateOnly, partialUpdate, idParam } from "../lib/validation";
import { WEEKDAYS, dayCount, formatZoned, isTimeZone } from "../lib/zoned-time";
import { type RequestMeta, created, noContent } from "../lib/http";

export interface Doctor {
	id: string;
	name: string;
	email: string;
	specialization: string;
	address: string;
	joiningDate: string;
	phone: string | null;
	timezone: string;
	consultationFee: number;
	slotMinutes: number;
	availability: AvailabilityWindow[];
	createdAt: string;
	updatedAt: string;
}

type DoctorInput = Partial<Omit<Doctor, "id" | "createdAt" | "updatedAt">>;

interface DoctorMethods {
	findDoctor(id: string): Promise<Model>;
	toDoctor(row: Model): Doctor;
	saveDoctor(work: () => Promise<Model>): Promise<Doctor>;
}

type DoctorsThis = Service<ServiceSettingSchema> & DbVars & DoctorMethods;

const HH_MM = /^([01]\d|2[0-3]):[0-5]\d$|^24:00$/;
const MAX_SLOT_RANGE_DAYS = 31;


/** The fields a client writes; the weekly availability is checked as a whole (no overlaps). */
const doctorFields = {
	name: { type: "string", trim: true, empty: false, max: 100 },
	email: { type: "email", max: 254 },
	specialization: { type: "string", trim: true, empty: false, max: 100 },
	address: { type: "string", trim: true, empty: false, max: 500 },
	joiningDate: dateOnly({ notFuture: true }),
	phone: { type: "string", trim: true, empty: false, max: 32, pattern: /^\+?[0-9 ()./-]{3,32}$/, optional: true, nullable: true },
	timezone: {
		type: "string",
		optional: true,
		max: 64,
		custom(value: unknown, errors: { type: string }[]) {
			if (typeof value === "string" && !isTimeZone(value)) errors.push({ type: "timezone" });
			return value;
		},
		messages: { timezone: "The '{field}' field must be an IANA timezone such as Europe/Berlin." }
	},
	consultationFee: { type: "number", integer: true, min: 0, max: 100_000_000, optional: true },
	slotMinutes: { type: "number", integer: true, min: 5, max: 480, optional: true },
	availability: {
		type: "array",
		optional: true,
		max: 50,
		items: {
			type: "object",
			strict: true,
			props: {
				day: { type: "enum", values: WEEKDAYS },
				start: { type: "string", pattern: HH_MM },
				end: { type: "string", pattern: HH_MM }
			}
		},
		custom(value: unknown, errors: { type: string; actual?: unknown }[]) {
			const problem = Array.isArray(value) ? availabilityProblem(value as AvailabilityWindow[]) : null;
			if (problem) errors.push({ type: "availability", actual: problem });
			return value;
		},
		messages: { availability: "The '{field}' field is not a valid weekly schedule: {actual}." }
	}
};


/** Doctors, their weekly availability, and their free slots. */
const DoctorsService: ServiceSchema<ServiceSettingSchema, DoctorMethods, DbVars> = {
	name: "doctors",

	mixins: [
		DbMixin(
			"doctors",
			doctorMigrations,
			{
				name: "doctor",
				define: {
					id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
					name: { type: DataTypes.STRING(100), allowNull: false },
					email: { type: DataTypes.STRING(254), allowNull: false },
					specialization: { type: DataTypes.STRING(100), allowNull: false },
					address: { type: DataTypes.TEXT, allowNull: false },
					joiningDate: { type: DataTypes.DATEONLY, allowNull: false },
					phone: { type: DataTypes.STRING(32) },
					timezone: { type: DataTypes.STRING(64), allowNull: false, defaultValue: "UTC" },
					consultationFee: { type: DataTypes.BIGINT, allowNull: false, defaultValue: 0 },
					slotMinutes: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 30 },
					availability: { type: DataTypes.JSONB, allowNull: false, defaultValue: [] }
				},
				options: { tableName: "doctors", underscored: true, timestamps: true, paranoid: true }
			}
		)
	],

	settings: {
		rest: "/doctors"
	},

	actions: {
		create: {
			roles: DOCTOR_WRITERS,
			rest: "POST /",
			params: { $$strict: true, ...doctorFields },
			async handler(ctx: Context<DoctorInput, RequestMeta>): Promise<Doctor> {
				const doctor = await this.saveDoctor(() => this.adapter.model.create({ ...ctx.params }));
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
			async handler(ctx: Context<PageRequest & { specialization?: string; search?: string }>): Promise<Page<Doctor>> {
				const conditions: WhereOptions[] = [];
				if (ctx.params.specialization) conditions.push({ specialization: ctx.params.specialization });
				if (ctx.params.search) conditions.push(where(fn("lower", col("name")), { [Op.like]: `${escapeLike(ctx.params.search.toLowerCase())}%` }));
				const { rows, count } = await this.adapter.model.findAndCountAll({
					where: { [Op.and]: conditions },
					order: [[fn("lower", col("name")), "ASC"], ["id", "ASC"]],
					...limitOffset(ctx.params)
				});
				return toPage(rows.map(row => this.toDoctor(row)), count, ctx.params);
			}
		},

		get: {
			roles: DOCTOR_READERS,
			rest: "GET /:id",
			params: { id: idParam },
			async handler(ctx: Context<{ id: string }>): Promise<Doctor> {
				return this.toDoctor(await this.findDoctor(ctx.params.id));
			}
		},

		update: {
			roles: DOCTOR_WRITERS,
			rest: "PATCH /:id",
			params: partialUpdate(doctorFields, { id: idParam }),
			async handler(ctx: Context<DoctorInput & { id: string }>): Promise<Doctor> {
				const { id, ...values } = ctx.params;
				const row = await this.findDoctor(id);
				return this.saveDoctor(() => row.update(values));
			}
		},

		remove: {
			roles: DOCTOR_WRITERS,
			rest: "DELETE /:id",
			params: { id: idParam },
			async handler(ctx: Context<{ id: string }, RequestMeta>): Promise<void> {
				const row = await this.findDoctor(ctx.params.id);
				const upcoming = await ctx.call<number, { doctorId: string }>("appointments.countUpcoming", { doctorId: ctx.params.id });
				if (upcoming > 0) throw new ConflictError(`The doctor has ${upcoming} upcoming appointment(s); cancel or move them first`, { upcoming });
				await row.destroy();
				noContent(ctx);
			}
		},

		slots: {
			roles: DOCTOR_READERS,
			rest: "GET /:id/slots",
			params: { $$strict: true, id: idParam, date: dateOnly({ optional: true }), from: dateOnly({ optional: true }), to: dateOnly({ optional: true }) },
			async handler(ctx: Context<{ id: string; date?: string; from?: string; to?: string }>) {
				const doctor = this.toDoctor(await this.findDoctor(ctx.params.id));
				const from = ctx.params.date ?? ctx.params.from ?? todayIn(doctor.timezone);
				const to = ctx.params.date ?? ctx.params.to ?? from;
				const days = dayCount(from, to);
				if (days < 1 || days > MAX_SLOT_RANGE_DAYS) {
					throw invalidFields([{ field: "to", message: `The range from 'from' to 'to' must run forwards and span at most ${MAX_SLOT_RANGE_DAYS} days.` }]);
				}
				// A day's wall clock never strays more than 14 hours from UTC: this bounds every window of the range.
				const busy = await ctx.call<Interval[], object>("appointments.busy", {
					doctorId: doctor.id,
					from: new Date(Date.parse(`${from}T00:00:00Z`) - 14 * 3_600_000).toISOString(),
					to: new Date(Date.parse(`${to}T00:00:00Z`) + 38 * 3_600_000).toISOString()
				});
				const slots = freeSlots({ availability: doctor.availability, timeZone: doctor.timezone, slotMinutes: doctor.slotMinutes, from, to, busy, now: Date.now() });
				return {
					doctorId: doctor.id,
					timezone: doctor.timezone,
					slots: slots.map(s => ({ start: formatZoned(s.start, doctor.timezone), end: formatZoned(s.end, doctor.timezone) }))
				};
			}
		}
	},

	methods: {
		/** The live doctor with this id; 404 otherwise, a malformed id included. */
		async findDoctor(this: DoctorsThis, id: string): Promise<Model> {
			const row = isUuid(id) ? await this.adapter.model.findByPk(id) : null;
			if (!row) throw new NotFoundError("Doctor", id);
			return row;
		},

		toDoctor(row: Model): Doctor {
			const d = row.get({ plain: true }) as Doctor & { createdAt: Date; updatedAt: Date; consultationFee: string | number };
			return {
				id: d.id,
				name: d.name,
				email: d.email,
				specialization: d.specialization,
				address: d.address,
				joiningDate: d.joiningDate,
				phone: d.phone ?? null,
				timezone: d.timezone,
				consultationFee: Number(d.consultationFee),
				slotMinutes: d.slotMinutes,
				availability: d.availability,
				createdAt: new Date(d.createdAt).toISOString(),
				updatedAt: new Date(d.updatedAt).toISOString()
			};
		},

		async saveDoctor(this: DoctorsThis, work: () => Promise<Model>): Promise<Doctor> {
			try {
				return this.toDoctor(await work());
			} catch (err) {
				if (violatedUniqueConstraint(err) === "doctors_email_key") throw new ConflictError("A doctor with this email already exists", { field: "email" });
				throw err;
			}
		}
	}
};

export default DoctorsService;
