import type { Context, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { config } from "../lib/infra/config";
import { billingServerSecurity } from "../lib/infra/grpc-security";
import { type RequestMeta, created, withVersion } from "../lib/infra/http";
import { METRICS, registerBusinessCounter } from "../lib/infra/metrics";
import { type Page, type PageRequest, pagingParams } from "../lib/domain/paging";
import { BILLING_ADMINS, BILLING_CLERKS } from "../lib/domain/roles";
import { idParam, uuidRule } from "../lib/domain/validation";
import { billingMigrations } from "../migrations/billing";
import { type DbThis, type DbVars, DbMixin } from "../mixins/db.mixin";
import { GrpcServerMixin } from "../mixins/grpc-server.mixin";
import { KafkaMixin } from "../mixins/kafka.mixin";
import { type BillingServiceServer, BillingServiceService } from "../proto/generated/billing_service";
import { changeAccount, findAccount, listAccounts, openAccount } from "./billing/accounts";
import { patientEventsConsumer } from "./billing/consumers";
import { billingGrpcHandlers } from "./billing/grpc";
import { type AppointmentCharge, MAX_AMOUNT, type PostedTransaction, amountParam, chargeAppointment, checkMayPost, listTransactions, postEntry } from "./billing/ledger";
import {
	ACCOUNT_STATUSES,
	type AccountChanges,
	type BillingAccount,
	type LedgerTransaction,
	type Posting,
	type SettableStatus,
	TRANSACTION_TYPES
} from "./billing/queries";

/**
 * Billing accounts (one per patient) and their append-only ledger, in exact
 * integer minor units. Serves the original's BillingService over gRPC and the
 * ledger over REST.
 */
const BillingService: ServiceSchema<ServiceSettingSchema, Record<string, never>, DbVars> = {
	name: "billing",

	// Later mixins start first and stop last: the database is up before events are consumed or gRPC serves, and
	// both have drained before it closes.
	mixins: [
		GrpcServerMixin<BillingServiceServer, DbThis>({
			definition: BillingServiceService,
			host: () => config.billingGrpcHost,
			port: () => config.billingGrpcPort,
			settings: "BILLING_GRPC_PORT (or BILLING_GRPC_HOST)",
			security: () => billingServerSecurity(),
			handlers: billingGrpcHandlers
		}),
		KafkaMixin(),
		DbMixin("billing", billingMigrations)
	],

	settings: {
		rest: "/billing"
	},

	kafka: {
		consumers: [patientEventsConsumer]
	},

	created() {
		registerBusinessCounter(this.broker.metrics, METRICS.ledgerPostings, "Ledger postings committed (payments, charges, adjustments, refunds), by type", ["type"]);
	},

	actions: {
		/** Opens the patient's account, or returns the one already open. Called by patients over gRPC. Not routed. */
		openAccount: {
			visibility: "public",
			params: {
				patientId: uuidRule(),
				name: { type: "string", trim: true, empty: false, max: 100 },
				email: { type: "email", max: 254 }
			},
			handler(ctx: Context<{ patientId: string; name: string; email: string }>): Promise<BillingAccount> {
				return openAccount(this.db, ctx.params);
			}
		},

		/** Charges a fulfilled appointment, once (appointments retries until this answers). Not routed. */
		chargeAppointment: {
			visibility: "public",
			params: { appointmentId: uuidRule(), patientId: uuidRule(), consultationFee: { type: "number", integer: true, min: 0, max: MAX_AMOUNT } },
			async handler(ctx: Context<AppointmentCharge>) {
				await chargeAppointment(this.db, ctx, ctx.params);
				return { charged: true };
			}
		},

		/** Name, email or status. Not routed: REST changes the status only (`setStatus`). */
		changeAccount: {
			visibility: "public",
			params: {
				id: idParam,
				name: { type: "string", trim: true, empty: false, max: 100, optional: true },
				email: { type: "email", max: 254, optional: true },
				status: { type: "enum", values: ACCOUNT_STATUSES, optional: true }
			},
			handler(ctx: Context<AccountChanges & { id: string }>): Promise<BillingAccount> {
				const { id, ...changes } = ctx.params;
				return changeAccount(this.db, id, changes);
			}
		},

		listAccounts: {
			roles: BILLING_CLERKS,
			audit: "billing",
			rest: "GET /accounts",
			params: { $$strict: true, patientId: uuidRule({ optional: true }), ...pagingParams() },
			handler(ctx: Context<PageRequest & { patientId?: string }>): Promise<Page<BillingAccount>> {
				return listAccounts(this.db, ctx.params);
			}
		},

		getAccount: {
			roles: BILLING_CLERKS,
			audit: "billing",
			rest: "GET /accounts/:id",
			params: { id: idParam },
			async handler(ctx: Context<{ id: string }, RequestMeta>): Promise<BillingAccount> {
				return withVersion(ctx, await findAccount(this.db, ctx.params.id));
			}
		},

		setStatus: {
			roles: BILLING_ADMINS,
			audit: "billing",
			rest: "PATCH /accounts/:id",
			params: { $$strict: true, id: idParam, status: { type: "enum", values: ACCOUNT_STATUSES } },
			async handler(ctx: Context<{ id: string; status: SettableStatus }, RequestMeta>): Promise<BillingAccount> {
				return withVersion(ctx, await changeAccount(this.db, ctx.params.id, { status: ctx.params.status }, ctx.meta.ifMatch));
			}
		},

		listTransactions: {
			roles: BILLING_CLERKS,
			audit: "billing",
			rest: "GET /accounts/:id/transactions",
			params: { $$strict: true, id: idParam, ...pagingParams(50) },
			handler(ctx: Context<PageRequest & { id: string }>): Promise<Page<LedgerTransaction> & { patientId: string }> {
				return listTransactions(this.db, ctx.params.id, ctx.params);
			}
		},

		postTransaction: {
			roles: BILLING_CLERKS,
			audit: "billing",
			rest: "POST /accounts/:id/transactions",
			params: {
				$$strict: true,
				id: idParam,
				type: { type: "enum", values: TRANSACTION_TYPES },
				amount: amountParam,
				description: { type: "string", trim: true, max: 500, optional: true },
				reference: { type: "string", trim: true, max: 100, optional: true }
			},
			async handler(ctx: Context<Posting & { id: string }, RequestMeta>): Promise<PostedTransaction> {
				const { id: accountId, ...posting } = ctx.params;
				checkMayPost(ctx.meta.user, posting);
				const result = await postEntry(this.db, this.broker.metrics, accountId, posting, ctx.meta.idempotencyKey);
				return created(ctx, `/billing/accounts/${accountId}/transactions`, result);
			}
		}
	},

	events: {
		/** A fulfilled appointment is charged its consultation fee, once: a redelivered event finds the charge by its key. */
		async "appointment.fulfilled"(ctx: Context<AppointmentCharge & { id: string }>) {
			await chargeAppointment(this.db, ctx, { appointmentId: ctx.params.id, patientId: ctx.params.patientId, consultationFee: ctx.params.consultationFee });
		}
	}
};

export default BillingService;
