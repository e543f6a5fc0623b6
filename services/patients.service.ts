import crypto from "node:crypto";
import { isUuid } from "../lib/sql";
import { PATIENT_EVENT_TYPES } from "../lib/patient-events";
import { type NewPatient, type OutboxEvent, PATIENT_SORT_KEYS, type PatientFilter, insertPatientWithEvent, patientById, patientPage } from "./patients/queries";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DataTypes, QueryTypes, type Model, type Transaction } from "sequelize";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { patientMigrations } from "../migrations/patients";
import { config } from "../lib/config";
import { billingClientSecurity } from "../lib/grpc-security";
import { todayIn } from "../lib/dates";
import { ConflictError, NotFoundError } from "../lib/errors";
import { violatedUniqueConstraint } from "../lib/db-errors";
import { formatMrn } from "../lib/mrn";
import { type GrpcClientVars, GrpcClientMixin, unaryCall } from "../mixins/grpc-client.mixin";
import { type BillingRequest, type BillingResponse, BillingServiceClient } from "../proto/generated/billing_service";
import { PatientEvent } from "../proto/generated/patient_event";
import { KafkaMixin, type KafkaSchema, type OutgoingMessage } from "../mixins/kafka.mixin";
import { OutboxRelay } from "../lib/outbox-relay";
import { type PeriodicJob, runPeriodically } from "../lib/periodic";
import { dateOnly, partialUpdate, idParam } from "../lib/validation";
import { type Page, pagingParams, toPage } from "../lib/paging";
import { PATIENT_DELETERS, PATIENT_READERS, PATIENT_WRITERS } from "../lib/roles";
import { errorFields } from "../lib/log-fields";
import { type RequestMeta, created, noContent } from "../lib/http";

export interface Patient extends Omit<NewPatient, "gender"> {
	gender: Gender | null;
	/** Null until billing has opened the patient's account. */
	billingAccountId: string | null;
	createdAt: string;
	updatedAt: string;
}

type Gender = "male" | "female" | "other" | "unknown";
export type PatientEventType = (typeof PATIENT_EVENT_TYPES)[number];
type PatientInput = Partial<Omit<Patient, "id" | "mrn" | "billingAccountId" | "createdAt" | "updatedAt">>;

interface PatientsSettings extends ServiceSettingSchema {
	rest: string;
}

interface PatientsMethods {
	findPatient(id: string, transaction?: Transaction): Promise<Model>;
	toPatient(row: Model): Patient;
	nextMrn(): Promise<string>;
	recordBillingAccount(patientId: string, accountId: string): Promise<void>;
	newEvent(type: PatientEventType, patient: Pick<Patient, "id" | "name" | "email">): OutboxEvent;
	uniqueEmail<T>(work: Promise<T>): Promise<T>;
	saveChanges(id: string, values: PatientInput): Promise<Patient>;
	openBillingAccount(patient: Patient): Promise<string | null>;
	recordEvent(transaction: Transaction, type: PatientEventType, patient: Patient): Promise<void>;
	kafkaSend(messages: OutgoingMessage[]): Promise<void>;
	reconcileBillingAccounts(): Promise<void>;
}

interface PatientsVars extends DbVars, GrpcClientVars {
	outboxRelay?: OutboxRelay;
	reconciler?: PeriodicJob;
}

type PatientsThis = Service<PatientsSettings> & PatientsVars & PatientsMethods;

const GENDERS: Gender[] = ["male", "female", "other", "unknown"];
const SORT_VALUES = Object.keys(PATIENT_SORT_KEYS).flatMap(field => [field, `-${field}`]);


/** The fields a client writes, as on create; `registerDate` defaults to today. */
const patientFields = {
	name: { type: "string", trim: true, empty: false, max: 100 },
	email: { type: "email", max: 254 },
	address: { type: "string", trim: true, empty: false, max: 500 },
	dateOfBirth: dateOnly({ notFuture: true }),
	registerDate: dateOnly({ optional: true }),
	phone: { type: "string", trim: true, empty: false, max: 32, pattern: /^\+?[0-9 ()./-]{3,32}$/, optional: true, nullable: true },
	gender: { type: "enum", values: GENDERS, optional: true, nullable: true }
};

/** A patient as the ORM or a query gives it: timestamps may be Date or text, optional fields undefined. */
type PatientRecord = Omit<Patient, "createdAt" | "updatedAt" | "phone" | "gender" | "billingAccountId"> &
	Partial<Pick<Patient, "phone" | "gender" | "billingAccountId">> & { createdAt: Date | string; updatedAt: Date | string };

function patientFrom(p: PatientRecord): Patient {
	return {
		id: p.id,
		mrn: p.mrn,
		name: p.name,
		email: p.email,
		address: p.address,
		dateOfBirth: p.dateOfBirth,
		registerDate: p.registerDate,
		phone: p.phone ?? null,
		gender: p.gender ?? null,
		billingAccountId: p.billingAccountId ?? null,
		createdAt: new Date(p.createdAt).toISOString(),
		updatedAt: new Date(p.updatedAt).toISOString()
	};
}

const PatientsService: ServiceSchema<PatientsSettings, PatientsMethods, PatientsVars> = {
	name: "patients",

	mixins: [
		DbMixin(
			"patients",
			patientMigrations,
			{
				name: "patient",
				define: {
					id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
					mrn: { type: DataTypes.CHAR(8), allowNull: false },
					name: { type: DataTypes.STRING(100), allowNull: false },
					email: { type: DataTypes.STRING(254), allowNull: false },
					address: { type: DataTypes.TEXT, allowNull: false },
					dateOfBirth: { type: DataTypes.DATEONLY, allowNull: false },
					registerDate: { type: DataTypes.DATEONLY, allowNull: false },
					phone: { type: DataTypes.STRING(32) },
					gender: { type: DataTypes.STRING(7) },
					billingAccountId: { type: DataTypes.UUID }
				},
				options: { tableName: "patients", underscored: true, timestamps: true, paranoid: true }
			}
		),
		GrpcClientMixin({ name: "billing", client: BillingServiceClient, address: () => config.billingGrpcUrl, security: () => billingClientSecurity() }),
		KafkaMixin()
	],

	kafka: {
		produces: [() => config.patientTopic]
	} satisfies KafkaSchema,

	settings: {
		rest: "/patients"
	},

	actions: {
		create: {
			roles: PATIENT_WRITERS,
			audit: "patient",
			rest: "POST /",
			params: { $$strict: true, ...patientFields },
			async handler(ctx: Context<PatientInput, RequestMeta>): Promise<Patient> {
				const input = ctx.params as Required<Pick<PatientInput, "name" | "email" | "address" | "dateOfBirth">> & PatientInput;
				const id = crypto.randomUUID();
				// The patient and its PATIENT_CREATED event go in one statement: they commit together, or neither does.
				const [record] = await this.uniqueEmail(
					this.db.query<PatientRecord>(
						insertPatientWithEvent(
							{
								...input,
								id,
								mrn: await this.nextMrn(),
								registerDate: input.registerDate ?? todayIn(config.clinicTimezone),
								phone: input.phone ?? null,
								gender: input.gender ?? null
							},
							this.newEvent("PATIENT_CREATED", { id, ...input })
						)
					)
				);
				const patient = patientFrom(record);
				this.logger.info(`Registered patient ${patient.id}`);
				// After the commit: a slow or absent billing never loses the patient; the reconciler opens the account later.
				patient.billingAccountId = await this.openBillingAccount(patient);
				created(ctx, `/patients/${patient.id}`, patient);
				await ctx.emit("patient.created", patient);
				return patient;
			}
		},

		list: {
			roles: PATIENT_READERS,
			audit: "patient",
			rest: "GET /",
			params: {
				$$strict: true,
				...pagingParams(),
				search: { type: "string", trim: true, empty: false, max: 254, optional: true },
				bornFrom: dateOnly({ optional: true }),
				bornTo: dateOnly({ optional: true }),
				sort: { type: "enum", values: SORT_VALUES, default: "-registerDate" }
			},
			async handler(ctx: Context<PatientFilter>): Promise<Page<Patient>> {
				const rows = await this.db.query<PatientRecord & { total: number }>(patientPage(ctx.params));
				return toPage(rows.filter(row => row.id !== null).map(patientFrom), rows[0].total, ctx.params);
			}
		},

		get: {
			roles: PATIENT_READERS,
			audit: "patient",
			rest: "GET /:id",
			params: { id: idParam },
			async handler(ctx: Context<{ id: string }>): Promise<Patient> {
				// A malformed id names no patient: that is a 404, not a validation error.
				const [record] = isUuid(ctx.params.id) ? await this.db.query<PatientRecord>(patientById(ctx.params.id)) : [];
				if (!record) throw new NotFoundError("Patient", ctx.params.id);
				return patientFrom(record);
			}
		},

		replace: {
			roles: PATIENT_WRITERS,
			audit: "patient",
			rest: "PUT /:id",
			params: { $$strict: true, id: idParam, ...patientFields },
			async handler(ctx: Context<PatientInput & { id: string }>): Promise<Patient> {
				const { id, ...input } = ctx.params;
				// A replacement clears what the body leaves out, except the register date.
				const patient = await this.saveChanges(id, { phone: null, gender: null, ...input });
				await ctx.emit("patient.updated", patient);
				return patient;
			}
		},

		update: {
			roles: PATIENT_WRITERS,
			audit: "patient",
			rest: "PATCH /:id",
			params: partialUpdate(patientFields, { id: idParam }),
			async handler(ctx: Context<PatientInput & { id: string }>): Promise<Patient> {
				const { id, ...values } = ctx.params;
				const patient = await this.saveChanges(id, values);
				await ctx.emit("patient.updated", patient);
				return patient;
			}
		},

		/** The outbox for operators: what waits to be published, and what failed last. Not routed (the REPL's `outbox`). */
		outboxStatus: {
			visibility: "public",
			async handler(this: PatientsThis) {
				const [summary] = await this.adapter.db.query<{ pending: number; oldest: Date | null; sent: number }>(
					`SELECT count(*) FILTER (WHERE sent_at IS NULL)::int AS pending, min(created_at) FILTER (WHERE sent_at IS NULL) AS oldest,
					        count(*) FILTER (WHERE sent_at IS NOT NULL)::int AS sent
					 FROM outbox`,
					{ type: QueryTypes.SELECT }
				);
				const failing = await this.adapter.db.query<Record<string, unknown>>(
					`SELECT id, event_id AS "eventId", event_type AS "eventType", key AS "patientId", attempts, last_error AS "lastError", created_at AS "createdAt"
					 FROM outbox WHERE sent_at IS NULL AND attempts > 0 ORDER BY id LIMIT 20`,
					{ type: QueryTypes.SELECT }
				);
				return { transport: config.kafkaBrokers ? `kafka ${config.kafkaBrokers.join(",")}` : "service broker", ...summary, failing };
			}
		},

		remove: {
			roles: PATIENT_DELETERS,
			audit: "patient",
			rest: "DELETE /:id",
			params: { id: idParam },
			async handler(ctx: Context<{ id: string }, RequestMeta>): Promise<void> {
				const patient = await this.adapter.db.transaction(async transaction => {
					const row = await this.findPatient(ctx.params.id, transaction);
					// paranoid model: destroy() only stamps deleted_at; the record stays.
					await row.destroy({ transaction });
					const deleted = this.toPatient(row);
					await this.recordEvent(transaction, "PATIENT_DELETED", deleted);
					return deleted;
				});
				noContent(ctx);
				await ctx.emit("patient.deleted", patient);
			}
		}
	},

	events: {
		/** Billing opened an account (over gRPC or from the Kafka event): remember its id. */
		async "billing.account.opened"(this: PatientsThis, ctx: Context<{ patientId: string; accountId: string }>) {
			await this.recordBillingAccount(ctx.params.patientId, ctx.params.accountId);
		}
	},

	methods: {
		/** The live patient with this id, locked for the transaction if one is given; 404 otherwise. */
		async findPatient(this: PatientsThis, id: string, transaction?: Transaction): Promise<Model> {
			// A malformed id names no patient: that is a 404, not a validation error.
			const row = isUuid(id)
				? await this.adapter.model.findByPk(id, { transaction, lock: transaction ? transaction.LOCK.UPDATE : undefined })
				: null;
			if (!row) throw new NotFoundError("Patient", id);
			return row;
		},

		toPatient(row: Model): Patient {
			return patientFrom(row.get({ plain: true }) as PatientRecord);
		},

		async saveChanges(this: PatientsThis, id: string, values: PatientInput): Promise<Patient> {
			return this.uniqueEmail(
				this.adapter.db.transaction(async transaction => {
					const current = await this.findPatient(id, transaction);
					const updated = this.toPatient(await current.update(values, { transaction }));
					await this.recordEvent(transaction, "PATIENT_UPDATED", updated);
					return updated;
				})
			);
		},

		/** Writes the event to the outbox inside the caller's transaction; the relay publishes it after commit. */
		async recordEvent(this: PatientsThis, transaction: Transaction, type: PatientEventType, patient: Patient): Promise<void> {
			const event = this.newEvent(type, patient);
			await this.adapter.db.query("INSERT INTO outbox (event_id, topic, key, event_type, payload) VALUES ($1, $2, $3, $4, $5)", {
				bind: [event.eventId, event.topic, event.key, event.eventType, Buffer.from(event.payload)],
				transaction
			});
		},

		/** The PatientEvent for the outbox; the patient id is the key, so one patient's events keep their order. */
		newEvent(type: PatientEventType, patient: Pick<Patient, "id" | "name" | "email">): OutboxEvent {
			const eventId = crypto.randomUUID();
			const payload = PatientEvent.encode({
				patientId: patient.id,
				name: patient.name,
				email: patient.email,
				eventType: type,
				eventId,
				occurredAt: new Date().toISOString()
			}).finish();
			return { eventId, topic: config.patientTopic, key: patient.id, eventType: type, payload };
		},

		/** Asks billing (gRPC, within its deadline) to open the patient's account; the account id, or null if billing did not answer. */
		async openBillingAccount(this: PatientsThis, patient: Patient): Promise<string | null> {
			const billing = this.grpcClients.billing as BillingServiceClient;
			try {
				const { accountId } = await unaryCall<BillingRequest, BillingResponse>(
					billing,
					billing.createBillingAccount,
					{ patientId: patient.id, name: patient.name, email: patient.email },
					config.billingGrpcDeadlineMs
				);
				await this.recordBillingAccount(patient.id, accountId);
				return accountId;
			} catch (err) {
				this.logger.warn(`No billing account yet for patient ${patient.id} (${(err as Error).message}); the reconciler will retry`);
				return null;
			}
		},

		/** Both the gRPC answer and billing's event bring the id: whichever comes second finds it set and writes nothing. */
		async recordBillingAccount(this: PatientsThis, patientId: string, accountId: string): Promise<void> {
			await this.db.query({ text: "UPDATE patients SET billing_account_id = $1 WHERE id = $2 AND billing_account_id IS NULL", values: [accountId, patientId] });
		},

		/** Opens the accounts that failed calls left missing, oldest first; stops at the first failure (billing still away). */
		async reconcileBillingAccounts(this: PatientsThis): Promise<void> {
			const rows = await this.adapter.model.findAll({ where: { billingAccountId: null }, order: [["createdAt", "ASC"]], limit: 100 });
			for (const row of rows) {
				if (!(await this.openBillingAccount(this.toPatient(row)))) return;
			}
		},

		/** A serial a failed registration leaves unused is a gap in the MRNs, never a duplicate. */
		async nextMrn(this: PatientsThis): Promise<string> {
			const [{ serial }] = await this.db.query<{ serial: string }>({ text: "SELECT nextval('patient_mrn_serial') AS serial", values: [] });
			return formatMrn(BigInt(serial));
		},

		/** Turns the email unique-index violation into a 409; other errors pass through. */
		async uniqueEmail<T>(work: Promise<T>): Promise<T> {
			try {
				return await work;
			} catch (err) {
				if (violatedUniqueConstraint(err) === "patients_email_key") {
					throw new ConflictError("A patient with this email already exists", { field: "email" });
				}
				throw err;
			}
		}
	},

	async started(this: PatientsThis) {
		const depth = this.broker.metrics.register({ type: "gauge", name: "medsync.outbox.pending", description: "Outbox events not yet published" });
		this.outboxRelay = new OutboxRelay({
			databaseUrl: this.databaseUrl,
			logger: this.logger,
			onDepth: pending => depth?.set(pending),
			// The patient id is the key, so one patient's events stay in order on one partition.
			send: rows =>
				this.kafkaSend(rows.map(row => ({ topic: row.topic, key: row.key, value: row.payload, headers: { "event-type": row.eventType, "event-id": row.eventId } })))
		});
		await this.outboxRelay.start();
		this.reconciler = runPeriodically(
			() => this.reconcileBillingAccounts(),
			config.billingReconcileIntervalMs,
			err => this.logger.warn(errorFields(err), "Billing reconciliation failed"),
			{ now: true }
		);
	},

	async stopped(this: PatientsThis) {
		await Promise.all([this.reconciler?.stop(), this.outboxRelay?.stop()]);
	}
};

export default PatientsService;
