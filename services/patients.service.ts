import crypto from "node:crypto";
import { isUuid } from "../lib/sql";
import { PATIENT_EVENT_TYPES } from "../lib/patient-events";
import {
	GENDERS,
	type OutboxEvent,
	PATIENT_SORT_KEYS,
	type Patient,
	type PatientFields,
	type PatientFilter,
	type PatientRow,
	failingOutboxEvents,
	insertPatientWithEvent,
	lockedPatientById,
	nextMrnSerial,
	outboxSummary,
	patientById,
	patientFrom,
	patientPage,
	patientsWithoutBillingAccount,
	setBillingAccount,
	softDeletePatientWithEvent,
	updatePatientWithEvent
} from "./patients/queries";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Queryable } from "../lib/database";
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

type PatientEventType = (typeof PATIENT_EVENT_TYPES)[number];
type PatientInput = Partial<PatientFields>;

interface PatientsSettings extends ServiceSettingSchema {
	rest: string;
}

interface PatientsMethods {
	lockPatient(tx: Queryable, id: string): Promise<Patient>;
	nextMrn(): Promise<string>;
	recordBillingAccount(patientId: string, accountId: string): Promise<void>;
	newEvent(type: PatientEventType, patient: Pick<Patient, "id" | "name" | "email">): OutboxEvent;
	uniqueEmail<T>(work: Promise<T>): Promise<T>;
	saveChanges(id: string, values: PatientInput): Promise<Patient>;
	openBillingAccount(patient: Pick<Patient, "id" | "name" | "email">): Promise<string | null>;
	kafkaSend(messages: OutgoingMessage[]): Promise<void>;
	reconcileBillingAccounts(): Promise<void>;
}

interface PatientsVars extends DbVars, GrpcClientVars {
	outboxRelay?: OutboxRelay;
	reconciler?: PeriodicJob;
}

type PatientsThis = Service<PatientsSettings> & PatientsVars & PatientsMethods;

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

const PatientsService: ServiceSchema<PatientsSettings, PatientsMethods, PatientsVars> = {
	name: "patients",

	mixins: [
		DbMixin("patients", patientMigrations),
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
					this.db.query<PatientRow>(
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
				const rows = await this.db.query<PatientRow & { total: number }>(patientPage(ctx.params));
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
				const [record] = isUuid(ctx.params.id) ? await this.db.query<PatientRow>(patientById(ctx.params.id)) : [];
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
				const [summary] = await this.db.query<{ pending: number; oldest: Date | null; sent: number }>(outboxSummary);
				const failing = await this.db.query<Record<string, unknown>>(failingOutboxEvents(20));
				return { transport: config.kafkaBrokers ? `kafka ${config.kafkaBrokers.join(",")}` : "service broker", ...summary, failing };
			}
		},

		remove: {
			roles: PATIENT_DELETERS,
			audit: "patient",
			rest: "DELETE /:id",
			params: { id: idParam },
			async handler(ctx: Context<{ id: string }, RequestMeta>): Promise<void> {
				const patient = await this.db.transaction(async tx => {
					const current = await this.lockPatient(tx, ctx.params.id);
					const [row] = await tx.query<PatientRow>(softDeletePatientWithEvent(current.id, this.newEvent("PATIENT_DELETED", current)));
					return patientFrom(row);
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
		/** The live patient with this id, locked until the transaction ends; 404 otherwise. */
		async lockPatient(tx: Queryable, id: string): Promise<Patient> {
			// A malformed id names no patient: that is a 404, not a validation error.
			const [row] = isUuid(id) ? await tx.query<PatientRow>(lockedPatientById(id)) : [];
			if (!row) throw new NotFoundError("Patient", id);
			return patientFrom(row);
		},

		/** Applies the change to the live patient with this id, the fields it leaves undefined untouched (as the ORM did). */
		async saveChanges(this: PatientsThis, id: string, values: PatientInput): Promise<Patient> {
			const change = Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined));
			return this.uniqueEmail(
				this.db.transaction(async tx => {
					const changed = { ...(await this.lockPatient(tx, id)), ...change };
					const [row] = await tx.query<PatientRow>(updatePatientWithEvent(changed, this.newEvent("PATIENT_UPDATED", changed)));
					return patientFrom(row);
				})
			);
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
		async openBillingAccount(this: PatientsThis, patient: Pick<Patient, "id" | "name" | "email">): Promise<string | null> {
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
			await this.db.query(setBillingAccount(patientId, accountId));
		},

		/** Opens the accounts that failed calls left missing, oldest first; stops at the first failure (billing still away). */
		async reconcileBillingAccounts(this: PatientsThis): Promise<void> {
			const patients = await this.db.query<Pick<Patient, "id" | "name" | "email">>(patientsWithoutBillingAccount(100));
			for (const patient of patients) {
				if (!(await this.openBillingAccount(patient))) return;
			}
		},

		/** A serial a failed registration leaves unused is a gap in the MRNs, never a duplicate. */
		async nextMrn(this: PatientsThis): Promise<string> {
			const [{ serial }] = await this.db.query<{ serial: string }>(nextMrnSerial);
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
