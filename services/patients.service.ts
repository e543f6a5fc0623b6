import { type Static, Type } from "@sinclair/typebox";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { type GrpcClientVars, GrpcClientMixin } from "../mixins/grpc-client.mixin";
import { type KafkaMethods, KafkaMixin, type KafkaSchema } from "../mixins/kafka.mixin";
import { patientMigrations } from "../migrations/patients";
import { config } from "../lib/infra/config";
import { invalidFields } from "../lib/infra/errors";
import { billingClientSecurity } from "../lib/infra/grpc-security";
import { type RequestMeta, created, movedPermanently, noContent, withVersion } from "../lib/infra/http";
import { errorFields } from "../lib/infra/log-fields";
import { METRICS, countCommitted, registerBusinessCounter } from "../lib/infra/metrics";
import { type Page, type PageRequest, pagingParams } from "../lib/domain/paging";
import { type PeriodicJob, runPeriodically } from "../lib/infra/periodic";
import { PATIENT_DELETERS, PATIENT_MERGERS, PATIENT_READERS, PATIENT_WRITERS } from "../lib/domain/roles";
import { dateOnly, idParam, partialUpdate, uuidRule } from "../lib/domain/validation";
import { OutboxRelay } from "./patients/outbox-relay";
import { BillingServiceClient } from "../proto/generated/billing_service";
import { type BillingAccounts, openBillingAccount, reconcileBillingAccounts } from "./patients/billing-accounts";
import { publishOutbox } from "./patients/events";
import { type MergeAnswer, MergeAnswerSchema, PatientMergedError, mergePatient } from "./patients/merge";
import { PATIENT_SORT_VALUES, patientFields } from "./patients/params";
import {
	type Patient,
	type PatientFields,
	type PatientFilter,
	PatientSchema,
	type PatientVersion,
	PatientVersionSchema,
	failingOutboxEvents,
	outboxSummary,
	requeueFailingOutbox,
	requeueSentOutbox
} from "./patients/queries";
import {
	type Author,
	type PatientInput,
	type RetryRequest,
	changePatient,
	deletePatient,
	findPatient,
	findPatientVersion,
	listPatients,
	patientHistory,
	registerPatient
} from "./patients/registry";
import { DUPLICATE_LIMIT, type Duplicates, DuplicatesSchema, findDuplicates } from "./patients/duplicates";
import { PageOf, Uuid } from "../lib/domain/schemas";

interface PatientsSettings extends ServiceSettingSchema {
	rest: string;
}

interface PatientsMethods {
	billingAccounts(): BillingAccounts;
}

interface PatientsVars {
	outboxRelay?: OutboxRelay;
	reconciler?: PeriodicJob;
}

type PatientsThis = Service<PatientsSettings> & DbVars & GrpcClientVars & KafkaMethods & PatientsVars & PatientsMethods;

/** A read of a merged patient, sent on to its survivor (301). */
const MovedPatientSchema = Type.Object({ id: Uuid, mergedInto: Uuid });

/** Who makes a change, as the patient's history records it: the signed-in caller, or null for a peer service. */
function authorOf(ctx: Context<unknown, RequestMeta>): Author {
	return ctx.meta.user?.id ?? null;
}

/** The caller's Idempotency-Key: retries are told apart per signed-in caller. */
function retryRequestOf(ctx: Context<unknown, RequestMeta>): RetryRequest | undefined {
	return ctx.meta.idempotencyKey && ctx.meta.user ? { user: ctx.meta.user.id, key: ctx.meta.idempotencyKey } : undefined;
}

/**
 * The patient registry: registration, reads, changes and soft delete, each
 * change announced by an event the outbox relay publishes (on Kafka, or over
 * the service broker); and each patient's billing account, opened over gRPC.
 */
const PatientsService: ServiceSchema<PatientsSettings, PatientsMethods, PatientsVars, PatientsThis> = {
	name: "patients",

	// The last mixin starts first and stops last (DbMixin): the database is open before anything else runs.
	mixins: [
		GrpcClientMixin({ name: "billing", client: BillingServiceClient, address: () => config.billingGrpcUrl, security: () => billingClientSecurity() }),
		KafkaMixin(),
		DbMixin("patients", patientMigrations)
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
			responses: {
				201: { description: "The patient, registered (again the first answer for a retry with the same Idempotency-Key).", schema: PatientSchema, headers: ["Location", "ETag"] },
				409: "The email is registered to another patient.",
				422: "A field is invalid, or the Idempotency-Key was used for another request."
			},
			async handler(ctx: Context<PatientInput, RequestMeta>): Promise<Patient> {
				// The patient, its PATIENT_CREATED event and its version 1 are written in one statement: they commit together, or none does.
				const { patient, repeated } = await registerPatient(this.db, ctx.params, authorOf(ctx), retryRequestOf(ctx));
				withVersion(ctx, created(ctx, `/patients/${patient.id}`, patient));
				// A retry repeats the first answer (with the account opened since), not its work or its announcement.
				if (repeated) return patient;
				countCommitted(this.broker.metrics, METRICS.patientsRegistered);
				this.logger.info(`Registered patient ${patient.id}`);
				// After the commit: a slow or absent billing never loses the patient; the reconciler opens the account later.
				patient.billingAccountId = await openBillingAccount(this.billingAccounts(), patient);
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
				sort: { type: "enum", values: PATIENT_SORT_VALUES, default: "-registerDate" }
			},
			responses: { 200: { description: "A page of live patients.", schema: PageOf(PatientSchema) } },
			handler(ctx: Context<PatientFilter>): Promise<Page<Patient>> {
				return listPatients(this.db, ctx.params);
			}
		},

		get: {
			roles: PATIENT_READERS,
			audit: "patient",
			rest: "GET /:id",
			params: { id: idParam },
			responses: {
				200: { description: "The patient.", schema: PatientSchema, headers: ["ETag"] },
				301: { description: "The patient was merged: Location names the survivor.", schema: MovedPatientSchema, headers: ["Location"] }
			},
			async handler(ctx: Context<{ id: string }, RequestMeta>): Promise<Patient | Static<typeof MovedPatientSchema>> {
				try {
					return withVersion(ctx, await findPatient(this.db, ctx.params.id));
				} catch (err) {
					if (!(err instanceof PatientMergedError)) throw err;
					// A merged patient's record lives on in its survivor: a read is sent there.
					return movedPermanently(ctx, `/patients/${err.mergedInto}`, { id: ctx.params.id, mergedInto: err.mergedInto });
				}
			}
		},

		/** Every version of the patient, newest first: who changed what, when; kept after a deletion or a merge. */
		history: {
			roles: PATIENT_READERS,
			audit: "patient",
			rest: "GET /:id/history",
			params: { $$strict: true, id: idParam, ...pagingParams() },
			responses: { 200: { description: "A page of the patient's versions, newest first.", schema: PageOf(PatientVersionSchema) } },
			handler(ctx: Context<{ id: string } & PageRequest>): Promise<Page<PatientVersion>> {
				const { id, ...page } = ctx.params;
				return patientHistory(this.db, id, page);
			}
		},

		historyVersion: {
			roles: PATIENT_READERS,
			audit: "patient",
			rest: "GET /:id/history/:version",
			params: { $$strict: true, id: idParam, version: { type: "number", integer: true, min: 1, max: 2_147_483_647, convert: true } },
			responses: { 200: { description: "That version of the patient.", schema: PatientVersionSchema } },
			handler(ctx: Context<{ id: string; version: number }>): Promise<PatientVersion> {
				return findPatientVersion(this.db, ctx.params.id, ctx.params.version);
			}
		},

		replace: {
			roles: PATIENT_WRITERS,
			audit: "patient",
			rest: "PUT /:id",
			params: { $$strict: true, id: idParam, ...patientFields },
			responses: {
				200: { description: "The patient, replaced: the optional fields left out are cleared.", schema: PatientSchema, headers: ["ETag"] },
				409: "The email is registered to another patient, or the patient was merged.",
				412: "If-Match names a version the patient no longer has: nothing was written."
			},
			async handler(ctx: Context<PatientInput & { id: string }, RequestMeta>): Promise<Patient> {
				const { id, ...input } = ctx.params;
				// A replacement clears what the body leaves out, except the register date.
				const patient = await changePatient(this.db, id, { phone: null, gender: null, ...input }, authorOf(ctx), ctx.meta.ifMatch ?? null);
				await ctx.emit("patient.updated", patient);
				return withVersion(ctx, patient);
			}
		},

		update: {
			roles: PATIENT_WRITERS,
			audit: "patient",
			rest: "PATCH /:id",
			params: partialUpdate(patientFields, { id: idParam }),
			responses: {
				200: { description: "The patient, with the fields given changed.", schema: PatientSchema, headers: ["ETag"] },
				409: "The email is registered to another patient, or the patient was merged.",
				412: "If-Match names a version the patient no longer has: nothing was written."
			},
			async handler(ctx: Context<Partial<PatientFields> & { id: string }, RequestMeta>): Promise<Patient> {
				const { id, ...change } = ctx.params;
				const patient = await changePatient(this.db, id, change, authorOf(ctx), ctx.meta.ifMatch ?? null);
				await ctx.emit("patient.updated", patient);
				return withVersion(ctx, patient);
			}
		},

		/** Merges a duplicate patient into its survivor (issue 14): the duplicate is retired and points at the survivor. */
		merge: {
			roles: PATIENT_MERGERS,
			audit: "patient",
			rest: "POST /:id/merge",
			params: { $$strict: true, id: idParam, into: uuidRule() },
			responses: {
				200: { description: "The survivor, and the patient merged into it (a repeat of a merge already made answers the same).", schema: MergeAnswerSchema, headers: ["ETag"] },
				409: "A patient merged into itself, or already merged elsewhere, or a survivor merged or deleted."
			},
			async handler(ctx: Context<{ id: string; into: string }, RequestMeta>): Promise<MergeAnswer> {
				const { id, into } = ctx.params;
				const { answer, retired } = await mergePatient(this.db, id, into, authorOf(ctx));
				// A repeat of a merge already made announces nothing again.
				if (retired) {
					this.logger.info(`Merged patient ${id} into ${into}`);
					await ctx.emit("patient.merged", { ...retired, mergedInto: into });
				}
				return withVersion(ctx, answer);
			}
		},

		duplicates: {
			roles: PATIENT_READERS,
			audit: "patient",
			rest: "GET /:id/duplicates",
			params: {
				$$strict: true,
				id: idParam,
				limit: { type: "number", integer: true, min: 1, max: DUPLICATE_LIMIT.max, convert: true, default: DUPLICATE_LIMIT.default }
			},
			responses: { 200: { description: "The live patients most likely to be this one again, best first.", schema: DuplicatesSchema } },
			handler(ctx: Context<{ id: string; limit: number }>): Promise<Duplicates> {
				return findDuplicates(this.db, ctx.params.id, ctx.params.limit);
			}
		},

		/** The outbox for operators: what waits to be published, and what failed last. Not routed (the REPL's `outbox`). */
		outboxStatus: {
			visibility: "public",
			async handler() {
				const [summary] = await this.db.query<{ pending: number; oldest: Date | null; sent: number }>(outboxSummary);
				const failing = await this.db.query<Record<string, unknown>>(failingOutboxEvents(20));
				return { transport: config.kafkaBrokers ? `kafka ${config.kafkaBrokers.join(",")}` : "service broker", ...summary, failing };
			}
		},

		/**
		 * Sends outbox events again, for operators (the REPL's `outbox replay`); not routed. `failed`: the pending
		 * events that failed start their attempts over and go at once. `from`: the events already sent from that
		 * outbox id on go again, in order, for a consumer that lost them; consumers skip an event id they have applied.
		 */
		outboxReplay: {
			visibility: "public",
			params: {
				$$strict: true,
				failed: { type: "boolean", optional: true, convert: true },
				from: { type: "string", optional: true, convert: true, pattern: /^[1-9][0-9]{0,17}$/, messages: { stringPattern: "The 'from' field must be an outbox id (a positive whole number)." } }
			},
			async handler(ctx: Context<{ failed?: boolean; from?: string }>): Promise<{ failed: true; requeued: number } | { from: string; requeued: number }> {
				const { failed, from } = ctx.params;
				if (Boolean(failed) === (from !== undefined)) throw invalidFields([{ field: "from", message: "Give either 'failed' (true) or 'from' (an outbox id), one of the two." }]);
				const [{ requeued }] = await this.db.query<{ requeued: number }>(failed ? requeueFailingOutbox : requeueSentOutbox(from!));
				this.logger.info(`Outbox replay: ${requeued} event(s) queued again (${failed ? "failed" : `from id ${from}`})`);
				// Says which replay it answers: a REPL runs the lines pasted into it side by side.
				return failed ? { failed, requeued } : { from: from!, requeued };
			}
		},

		remove: {
			roles: PATIENT_DELETERS,
			audit: "patient",
			rest: "DELETE /:id",
			params: { id: idParam },
			responses: {
				204: { description: "The patient is deleted (soft: its history stays)." },
				409: "The patient was merged.",
				412: "If-Match names a version the patient no longer has: nothing was deleted."
			},
			async handler(ctx: Context<{ id: string }, RequestMeta>): Promise<void> {
				const patient = await deletePatient(this.db, ctx.params.id, authorOf(ctx), ctx.meta.ifMatch ?? null);
				noContent(ctx);
				await ctx.emit("patient.deleted", patient);
			}
		}
	},

	methods: {
		billingAccounts(): BillingAccounts {
			return { billing: this.grpcClients.billing as BillingServiceClient, db: this.db, logger: this.logger };
		}
	},

	created() {
		registerBusinessCounter(this.broker.metrics, METRICS.patientsRegistered, "Patients registered (committed; a retry under the same Idempotency-Key counts once)");
	},

	async started() {
		const depth = this.broker.metrics.register({ type: "gauge", name: "medsync.outbox.pending", description: "Outbox events not yet published" });
		this.outboxRelay = new OutboxRelay({
			databaseUrl: this.databaseUrl,
			logger: this.logger,
			onDepth: pending => depth?.set(pending),
			send: rows => publishOutbox(rows, messages => this.kafkaSend(messages))
		});
		await this.outboxRelay.start();
		this.reconciler = runPeriodically(
			() => reconcileBillingAccounts(this.billingAccounts()),
			config.billingReconcileIntervalMs,
			err => this.logger.warn(errorFields(err), "Billing reconciliation failed"),
			{ now: true }
		);
	},

	async stopped() {
		await Promise.all([this.reconciler?.stop(), this.outboxRelay?.stop()]);
	}
};

export default PatientsService;
