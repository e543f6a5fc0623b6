import crypto from "node:crypto";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { isUuid } from "../lib/infra/sql";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { doctorMigrations } from "../migrations/doctors";
import type { Queryable, Statement } from "../lib/infra/database";
import { idempotencyLock, idempotentRequest, replayCreated } from "../lib/infra/idempotent-create";
import { ConflictError, NotFoundError } from "../lib/infra/errors";
import { violatedUniqueConstraint } from "../lib/infra/db-errors";
import { type Page, pagingParams, toPage } from "../lib/domain/paging";
import { PageOf } from "../lib/domain/schemas";
import { DOCTOR_READERS, DOCTOR_WRITERS } from "../lib/domain/roles";
import type { Interval } from "../lib/domain/scheduling";
import { dateOnly, partialUpdate, idParam } from "../lib/domain/validation";
import { type RequestMeta, checkIfMatch, created, noContent, withVersion } from "../lib/infra/http";
import { doctorFields } from "./doctors/params";
import {
	type Doctor,
	type DoctorFilter,
	DoctorSchema,
	type DoctorInput,
	type DoctorRow,
	type EarlierDoctor,
	deleteDoctor,
	doctorById,
	doctorCreatedByKey,
	doctorPage,
	insertDoctor,
	lockKey,
	rememberAnswer,
	toDoctor,
	updateDoctor
} from "./doctors/queries";
import { DoctorSlotsSchema, type SlotDates, doctorSlots, slotDates, slotInstants } from "./doctors/slots";

interface DoctorMethods {
	findDoctor(id: string): Promise<Doctor>;
	saveDoctor(id: string, statement: Statement, meta?: RequestMeta, db?: Queryable): Promise<Doctor>;
	refusedWrite(id: string, meta: RequestMeta): Promise<never>;
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
			responses: {
				201: { description: "The doctor (again the first answer for a retry with the same Idempotency-Key).", schema: DoctorSchema, headers: ["Location", "ETag"] },
				409: "A doctor with this email already exists.",
				422: "A field is invalid, or the Idempotency-Key was used for another request."
			},
			async handler(ctx: Context<DoctorInput, RequestMeta>): Promise<Doctor> {
				const id = crypto.randomUUID();
				const request = idempotentRequest(ctx);
				if (!request) return created(ctx, `/doctors/${id}`, withVersion(ctx, await this.saveDoctor(id, insertDoctor(id, ctx.params))));
				const replay = (earlier: EarlierDoctor) => replayCreated(ctx, request, earlier, doctor => `/doctors/${doctor.id}`);
				const [earlier] = await this.db.query<EarlierDoctor>(doctorCreatedByKey(request));
				if (earlier) return replay(earlier);
				const outcome = await this.db.transaction(async tx => {
					await tx.query(lockKey(idempotencyLock("doctors", request)));
					// A retry that raced the first attempt waited for it above, and finds its doctor now.
					const [raced] = await tx.query<EarlierDoctor>(doctorCreatedByKey(request));
					if (raced) return { raced };
					const doctor = await this.saveDoctor(id, insertDoctor(id, ctx.params, request), {}, tx);
					await tx.query(rememberAnswer(id, doctor));
					return { doctor };
				});
				return outcome.raced ? replay(outcome.raced) : created(ctx, `/doctors/${id}`, withVersion(ctx, outcome.doctor));
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
			responses: { 200: { description: "A page of doctors.", schema: PageOf(DoctorSchema) } },
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
			responses: { 200: { description: "The doctor.", schema: DoctorSchema, headers: ["ETag"] } },
			async handler(ctx: Context<{ id: string }, RequestMeta>): Promise<Doctor> {
				return withVersion(ctx, await this.findDoctor(ctx.params.id));
			}
		},

		update: {
			roles: DOCTOR_WRITERS,
			rest: "PATCH /:id",
			params: partialUpdate(doctorFields, { id: idParam }),
			responses: {
				200: { description: "The doctor, with the fields given changed.", schema: DoctorSchema, headers: ["ETag"] },
				409: "A doctor with this email already exists, or the doctor changed meanwhile.",
				412: "If-Match names a version the doctor no longer has: nothing was written."
			},
			async handler(ctx: Context<DoctorInput & { id: string }, RequestMeta>): Promise<Doctor> {
				const { id, ...changes } = ctx.params;
				if (Object.values(changes).every(value => value === undefined)) {
					// Nothing to write: the doctor as it is, its updatedAt unmoved, if the If-Match holds.
					const doctor = await this.findDoctor(id);
					checkIfMatch(ctx.meta, "Doctor", doctor.version);
					return withVersion(ctx, doctor);
				}
				if (!isUuid(id)) throw new NotFoundError("Doctor", id);
				return withVersion(ctx, await this.saveDoctor(id, updateDoctor(id, changes, ctx.meta.ifMatch), ctx.meta));
			}
		},

		remove: {
			roles: DOCTOR_WRITERS,
			rest: "DELETE /:id",
			params: { id: idParam },
			responses: {
				204: { description: "The doctor is deleted." },
				409: "The doctor has upcoming appointments, or changed meanwhile.",
				412: "If-Match names a version the doctor no longer has: nothing was deleted."
			},
			async handler(ctx: Context<{ id: string }, RequestMeta>): Promise<void> {
				checkIfMatch(ctx.meta, "Doctor", (await this.findDoctor(ctx.params.id)).version);
				const upcoming = await ctx.call<number, { doctorId: string }>("appointments.countUpcoming", { doctorId: ctx.params.id });
				if (upcoming > 0) throw new ConflictError(`The doctor has ${upcoming} upcoming appointment(s); cancel or move them first`, { upcoming });
				const [deleted] = await this.db.query(deleteDoctor(ctx.params.id, ctx.meta.ifMatch));
				if (!deleted) await this.refusedWrite(ctx.params.id, ctx.meta);
				noContent(ctx);
			}
		},

		slots: {
			roles: DOCTOR_READERS,
			rest: "GET /:id/slots",
			params: { $$strict: true, id: idParam, date: dateOnly({ optional: true }), from: dateOnly({ optional: true }), to: dateOnly({ optional: true }) },
			responses: { 200: { description: "The free slots on those dates (today by default), in the doctor's zone.", schema: DoctorSlotsSchema } },
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

		/**
		 * Runs a statement that writes the doctor `id` and returns it: 409 if the email is taken; if it wrote none,
		 * 404 (no live doctor) or 412 (one at a version the If-Match in `meta` does not name).
		 */
		async saveDoctor(this: DoctorsThis, id: string, statement: Statement, meta: RequestMeta = {}, db: Queryable = this.db): Promise<Doctor> {
			let row: DoctorRow | undefined;
			try {
				[row] = await db.query<DoctorRow>(statement);
			} catch (err) {
				if (violatedUniqueConstraint(err) === "doctors_email_key") throw new ConflictError("A doctor with this email already exists", { field: "email" });
				throw err;
			}
			if (!row) return this.refusedWrite(id, meta);
			return toDoctor(row);
		},

		/** Why a write guarded by If-Match wrote nothing: 404 if there is no live doctor, else 412. */
		async refusedWrite(this: DoctorsThis, id: string, meta: RequestMeta): Promise<never> {
			checkIfMatch(meta, "Doctor", (await this.findDoctor(id)).version);
			// The row moved between the write and this read, to a version the If-Match names after all.
			throw new ConflictError("The doctor changed meanwhile; read it again");
		}
	}
};

export default DoctorsService;
