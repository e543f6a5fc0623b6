import crypto from "node:crypto";
import { isUuid } from "../lib/sql";
import { type Context, Errors, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import { DataTypes, type Model, QueryTypes, type Transaction } from "sequelize";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { GrpcServerMixin } from "../mixins/grpc-server.mixin";
import { billingMigrations } from "../migrations/billing";
import { config } from "../lib/config";
import { billingServerSecurity } from "../lib/grpc-security";
import { ConflictError, ForbiddenError, NotFoundError } from "../lib/errors";
import { type Page, type PageRequest, limitOffset, pagingParams, toPage } from "../lib/paging";
import { BILLING_ADMINS, BILLING_CLERKS } from "../lib/roles";
import { KafkaMixin, type KafkaConsumerDefinition } from "../mixins/kafka.mixin";
import { decodePatientEvent, onFirstDelivery } from "../lib/patient-events";
import { idParam, uuidRule } from "../lib/validation";
import type { PatientEvent } from "../proto/generated/patient_event";
import {
	type BillingAccountRequest,
	type BillingAccountResponse,
	type BillingRequest,
	type BillingResponse,
	type BillingServiceServer,
	BillingServiceService,
	type UpdateBillingRequest
} from "../proto/generated/billing_service";
import { type RequestMeta, created } from "../lib/http";

export const ACCOUNT_STATUSES = ["ACTIVE", "INACTIVE", "SUSPENDED"] as const;
export const TRANSACTION_TYPES = ["CHARGE", "PAYMENT", "ADJUSTMENT", "REFUND"] as const;
type AccountStatus = (typeof ACCOUNT_STATUSES)[number];
type TransactionType = (typeof TRANSACTION_TYPES)[number];

export interface BillingAccount {
	id: string;
	patientId: string;
	name: string;
	email: string;
	status: AccountStatus;
	currency: string;
	/** Minor units: charges − payments + refunds + adjustments. Positive: the patient owes. */
	balance: number;
	createdAt: string;
	updatedAt: string;
}

export interface LedgerTransaction {
	id: string;
	accountId: string;
	type: TransactionType;
	amount: number;
	description: string | null;
	reference: string | null;
	createdAt: string;
}

interface NewTransaction {
	id: string;
	type: TransactionType;
	amount: number;
	description?: string;
	reference?: string;
}

interface AccountChanges {
	name?: string;
	email?: string;
	status?: AccountStatus;
}

interface AppointmentCharge {
	appointmentId: string;
	patientId: string;
	consultationFee: number;
}

interface BillingMethods {
	chargeAppointment(ctx: Context, charge: AppointmentCharge): Promise<void>;
	openAccount(input: { patientId: string; name: string; email: string }): Promise<BillingAccount>;
	announceAccount(patientId: string, accountId: string): Promise<void>;
	findAccount(id: string, transaction?: Transaction): Promise<BillingAccount>;
	accountRow(id: string, transaction?: Transaction, lock?: Transaction["LOCK"][keyof Transaction["LOCK"]]): Promise<Model>;
	changeAccount(id: string, changes: AccountChanges): Promise<BillingAccount>;
	toAccount(row: Model, balance: number): BillingAccount;
	balanceOf(accountId: string, transaction?: Transaction): Promise<number>;
	balancesOf(accountIds: string[], transaction?: Transaction): Promise<Map<string, number>>;
	postEntry(accountId: string, input: Omit<NewTransaction, "id">, idempotencyKey?: string): Promise<LedgerTransaction & { balance: number; patientId: string }>;
}

type BillingThis = Service<ServiceSettingSchema> & DbVars & BillingMethods;

interface TransactionRow {
	id: string;
	account_id: string;
	type: TransactionType;
	amount: string;
	description: string | null;
	reference: string | null;
	request_fingerprint: string | null;
	created_at: Date;
}

/** Ten billion in major units: far beyond any clinic bill, well inside JavaScript's exact integers. */
const MAX_AMOUNT = 1_000_000_000_000;

/** Each listed account's balance; an account with no transactions has no row (a balance of 0). */
const BALANCES_SQL = `SELECT account_id, SUM(CASE WHEN type = 'PAYMENT' THEN -amount ELSE amount END)::bigint AS balance
	FROM billing_transactions WHERE account_id = ANY($1::uuid[]) GROUP BY account_id`;

/** An account as the ORM or a RETURNING clause gives it, before its balance is known. */
type AccountRecord = Omit<BillingAccount, "balance" | "createdAt" | "updatedAt"> & { createdAt: Date | string; updatedAt: Date | string };

const ACCOUNT_COLUMNS = `id, patient_id AS "patientId", name, email, status, currency, created_at AS "createdAt", updated_at AS "updatedAt"`;

function accountFrom(a: AccountRecord, balance: number): BillingAccount {
	return {
		id: a.id,
		patientId: a.patientId,
		name: a.name,
		email: a.email,
		status: a.status,
		currency: a.currency,
		balance,
		createdAt: new Date(a.createdAt).toISOString(),
		updatedAt: new Date(a.updatedAt).toISOString()
	};
}

function toTransaction(row: TransactionRow): LedgerTransaction {
	return {
		id: row.id,
		accountId: row.account_id,
		type: row.type,
		amount: Number(row.amount),
		description: row.description,
		reference: row.reference,
		createdAt: new Date(row.created_at).toISOString()
	};
}

function fingerprint(input: Omit<NewTransaction, "id">): string {
	return crypto
		.createHash("sha256")
		.update(JSON.stringify([input.type, input.amount, input.description ?? null, input.reference ?? null]))
		.digest("hex");
}


/**
 * Billing accounts (one per patient) and their append-only ledger, in exact
 * integer minor units. Serves the original's BillingService over gRPC and the
 * ledger over REST.
 */
const BillingService: ServiceSchema<ServiceSettingSchema, BillingMethods, DbVars> = {
	name: "billing",

	// Later mixins start first and stop last: the database is up before gRPC serves, and gRPC drains before it closes.
	mixins: [
		GrpcServerMixin<BillingServiceServer, BillingThis>({
			definition: BillingServiceService,
			host: () => config.billingGrpcHost,
			port: () => config.billingGrpcPort,
			security: () => billingServerSecurity(),
			handlers: {
				async createBillingAccount(this: BillingThis, request: BillingRequest): Promise<BillingResponse> {
					const account = await this.broker.call<BillingAccount, BillingRequest>("billing.openAccount", request);
					return { accountId: account.id, status: account.status };
				},
				async getBillingAccount(this: BillingThis, request: BillingAccountRequest): Promise<BillingAccountResponse> {
					const account = await this.findAccount(request.accountId);
					return {
						accountId: account.id,
						patientId: account.patientId,
						name: account.name,
						email: account.email,
						status: account.status,
						currency: account.currency,
						balance: String(account.balance)
					};
				},
				async updateBillingAccount(this: BillingThis, request: UpdateBillingRequest): Promise<BillingResponse> {
					// proto3 strings default to "": an empty field means "leave as is".
					const account = await this.broker.call<BillingAccount, AccountChanges & { id: string }>("billing.changeAccount", {
						id: request.accountId,
						...(request.name && { name: request.name }),
						...(request.email && { email: request.email }),
						...(request.status && { status: request.status as AccountStatus })
					});
					return { accountId: account.id, status: account.status };
				},
				async deleteBillingAccount(this: BillingThis, request: BillingAccountRequest): Promise<BillingResponse> {
					const account = await this.changeAccount(request.accountId, { status: "INACTIVE" });
					return { accountId: account.id, status: account.status };
				}
			}
		}),
		DbMixin(
			"billing",
			billingMigrations,
			{
				name: "account",
				define: {
					id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
					patientId: { type: DataTypes.UUID, allowNull: false },
					name: { type: DataTypes.STRING(100), allowNull: false },
					email: { type: DataTypes.STRING(254), allowNull: false },
					status: { type: DataTypes.STRING(9), allowNull: false, defaultValue: "ACTIVE" },
					currency: { type: DataTypes.CHAR(3), allowNull: false }
				},
				options: { tableName: "billing_accounts", underscored: true, timestamps: true }
			}
		),
		KafkaMixin()
	],

	kafka: {
		consumers: [
			{
				topic: () => config.patientTopic,
				decode: decodePatientEvent,
				/** Opens the account if the gRPC call has not: one account per patient, whichever arrives first. */
				async handler(this: BillingThis, event: PatientEvent) {
					if (event.eventType !== "PATIENT_CREATED") return;
					const [opened] = await this.db.query<{ id: string }>({
						text: onFirstDelivery(
							`INSERT INTO billing_accounts (id, patient_id, name, email, currency) SELECT $2::uuid, $3::uuid, $4, $5, $6 FROM first_delivery
							 ON CONFLICT (patient_id) DO NOTHING RETURNING id`
						),
						values: [event.eventId, crypto.randomUUID(), event.patientId, event.name, event.email, config.billingCurrency]
					});
					if (opened) await this.announceAccount(event.patientId, opened.id);
				}
			} satisfies KafkaConsumerDefinition<BillingThis, PatientEvent>
		]
	},

	settings: {
		rest: "/billing"
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
				return this.openAccount(ctx.params);
			}
		},

		/** Charges a fulfilled appointment, once (appointments retries until this answers). Not routed. */
		chargeAppointment: {
			visibility: "public",
			params: { appointmentId: uuidRule(), patientId: uuidRule(), consultationFee: { type: "number", integer: true, min: 0, max: MAX_AMOUNT } },
			async handler(this: BillingThis, ctx: Context<AppointmentCharge>) {
				await this.chargeAppointment(ctx, ctx.params);
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
				return this.changeAccount(id, changes);
			}
		},

		listAccounts: {
			roles: BILLING_CLERKS,
			audit: "billing",
			rest: "GET /accounts",
			params: { $$strict: true, patientId: uuidRule({ optional: true }), ...pagingParams() },
			async handler(ctx: Context<PageRequest & { patientId?: string }>): Promise<Page<BillingAccount>> {
				const where = ctx.params.patientId ? { patientId: ctx.params.patientId } : {};
				const { rows, count } = await this.adapter.model.findAndCountAll({
					where,
					order: [["createdAt", "DESC"], ["id", "DESC"]],
					...limitOffset(ctx.params)
				});
				const balances = await this.balancesOf(rows.map(row => row.get("id") as string));
				const accounts = rows.map(row => this.toAccount(row, balances.get(row.get("id") as string) ?? 0));
				return toPage(accounts, count, ctx.params);
			}
		},

		getAccount: {
			roles: BILLING_CLERKS,
			audit: "billing",
			rest: "GET /accounts/:id",
			params: { id: idParam },
			handler(ctx: Context<{ id: string }>): Promise<BillingAccount> {
				return this.findAccount(ctx.params.id);
			}
		},

		setStatus: {
			roles: BILLING_ADMINS,
			audit: "billing",
			rest: "PATCH /accounts/:id",
			params: { $$strict: true, id: idParam, status: { type: "enum", values: ACCOUNT_STATUSES } },
			handler(ctx: Context<{ id: string; status: AccountStatus }>): Promise<BillingAccount> {
				return this.changeAccount(ctx.params.id, { status: ctx.params.status });
			}
		},

		listTransactions: {
			roles: BILLING_CLERKS,
			audit: "billing",
			rest: "GET /accounts/:id/transactions",
			params: { $$strict: true, id: idParam, ...pagingParams(50) },
			async handler(ctx: Context<PageRequest & { id: string }>): Promise<Page<LedgerTransaction> & { patientId: string }> {
				const account = (await this.accountRow(ctx.params.id)).get({ plain: true }) as AccountRecord;
				const { limit, offset } = limitOffset(ctx.params);
				const rows = await this.adapter.db.query<TransactionRow>(
					"SELECT * FROM billing_transactions WHERE account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
					{ bind: [account.id, limit, offset], type: QueryTypes.SELECT }
				);
				const [{ total }] = await this.adapter.db.query<{ total: number }>(
					"SELECT count(*)::int AS total FROM billing_transactions WHERE account_id = $1",
					{ bind: [account.id], type: QueryTypes.SELECT }
				);
				return { ...toPage(rows.map(toTransaction), total, ctx.params), patientId: account.patientId };
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
				amount: {
					type: "number",
					integer: true,
					min: -MAX_AMOUNT,
					max: MAX_AMOUNT,
					// fastest-validator hands a top-level field's siblings over as context.data.
					custom(value: unknown, errors: { type: string }[], _s: unknown, _n: unknown, _p: unknown, context: { data?: { type?: string } }) {
						if (typeof value !== "number") return value;
						if (value === 0 || (value < 0 && context.data?.type !== "ADJUSTMENT")) errors.push({ type: "amountSign" });
						return value;
					},
					messages: {
						numberInteger: "The '{field}' field must be a whole number of minor units (cents).",
						amountSign: "The '{field}' field must be positive; only an ADJUSTMENT may be negative, and none may be zero."
					}
				},
				description: { type: "string", trim: true, max: 500, optional: true },
				reference: { type: "string", trim: true, max: 100, optional: true }
			},
			async handler(
				ctx: Context<Omit<NewTransaction, "id"> & { id: string }, RequestMeta>
			): Promise<LedgerTransaction & { balance: number; patientId: string }> {
				const { id: accountId, ...input } = ctx.params;
				// Clerks post payments; everything else moves money the clinic's way and needs an admin.
				const caller = ctx.meta.user;
				if (caller && input.type !== "PAYMENT" && !BILLING_ADMINS.includes(caller.role)) {
					throw new ForbiddenError(`The ${caller.role} role may not post a ${input.type}`);
				}
				const result = await this.postEntry(accountId, input, ctx.meta.idempotencyKey);
				return created(ctx, `/billing/accounts/${accountId}/transactions`, result);
			}
		}
	},

	events: {
		/** A fulfilled appointment is charged its consultation fee, once: a redelivered event finds the charge by its key. */
		async "appointment.fulfilled"(this: BillingThis, ctx: Context<AppointmentCharge & { id: string }>) {
			await this.chargeAppointment(ctx, { appointmentId: ctx.params.id, patientId: ctx.params.patientId, consultationFee: ctx.params.consultationFee });
		}
	},

	methods: {
		/** The fee as a CHARGE on the patient's account (opened if need be); the appointment id is the idempotency key. */
		async chargeAppointment(this: BillingThis, ctx: Context, charge: AppointmentCharge): Promise<void> {
			if (!charge.consultationFee) return;
			const existing = await this.adapter.model.findOne({ where: { patientId: charge.patientId } });
			const accountId = existing
				? (existing.get("id") as string)
				: (await this.openAccount(await ctx.call<{ name: string; email: string }, { id: string }>("patients.get", { id: charge.patientId }).then(p => ({ ...p, patientId: charge.patientId })))).id;
			await this.postEntry(
				accountId,
				{ type: "CHARGE", amount: charge.consultationFee, description: "Consultation", reference: `appointment:${charge.appointmentId}` },
				`appointment-fulfilled:${charge.appointmentId}`
			);
		},

		/** Posts to the ledger, once per idempotency key: a retry gets the transaction the first attempt posted. */
		async postEntry(this: BillingThis, accountId: string, input: Omit<NewTransaction, "id">, key?: string) {
			const print = fingerprint(input);
			return this.adapter.db.transaction(async transaction => {
				// FOR SHARE: a concurrent status change waits for this posting, and vice versa.
				const account = (await this.accountRow(accountId, transaction, transaction.LOCK.SHARE)).get({ plain: true }) as AccountRecord;
				const [inserted] = await this.adapter.db.query<TransactionRow>(
					`INSERT INTO billing_transactions (id, account_id, type, amount, description, reference, idempotency_key, request_fingerprint)
					 SELECT $1::uuid, $2::uuid, $3::varchar, $4::bigint, $5::varchar, $6::varchar, $7::varchar, $8::char(64)
					 -- Only an ACTIVE account takes a charge; the row lock above keeps the status steady meanwhile.
					 WHERE $3::varchar <> 'CHARGE' OR $9::varchar = 'ACTIVE'
					 ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
					 RETURNING *`,
					{
						bind: [crypto.randomUUID(), account.id, input.type, input.amount, input.description ?? null, input.reference ?? null, key ?? null, print, account.status],
						type: QueryTypes.SELECT,
						transaction
					}
				);
				let row = inserted;
				if (!row && key) {
					[row] = await this.adapter.db.query<TransactionRow>("SELECT * FROM billing_transactions WHERE account_id = $1 AND idempotency_key = $2", {
						bind: [account.id, key],
						type: QueryTypes.SELECT,
						transaction
					});
					if (row && row.request_fingerprint !== print) {
						throw new Errors.MoleculerClientError("This Idempotency-Key was used for a different request", 422, "IDEMPOTENCY_KEY_REUSED", {
							field: "Idempotency-Key"
						});
					}
				}
				if (!row) throw new ConflictError(`The account is ${account.status}; it accepts no new charges`, { status: account.status });
				return { ...toTransaction(row), balance: await this.balanceOf(account.id, transaction), patientId: account.patientId };
			});
		},

		/** Opens the patient's account, or returns the one already open; announces a new one as `billing.account.opened`. */
		async openAccount(this: BillingThis, input: { patientId: string; name: string; email: string }): Promise<BillingAccount> {
			const [inserted] = await this.db.query<AccountRecord>({
				text: `INSERT INTO billing_accounts (id, patient_id, name, email, currency) VALUES ($1, $2, $3, $4, $5)
				 ON CONFLICT (patient_id) DO NOTHING RETURNING ${ACCOUNT_COLUMNS}`,
				values: [crypto.randomUUID(), input.patientId, input.name, input.email, config.billingCurrency]
			});
			if (inserted) {
				await this.announceAccount(inserted.patientId, inserted.id);
				return accountFrom(inserted, 0);
			}
			const row = await this.adapter.model.findOne({ where: { patientId: input.patientId } });
			return this.toAccount(row!, await this.balanceOf(row!.get("id") as string));
		},

		/** Tells patients (and whoever else listens) the account a patient's events opened, for when the gRPC answer was lost. */
		async announceAccount(this: BillingThis, patientId: string, accountId: string) {
			await this.broker.emit("billing.account.opened", { patientId, accountId });
		},

		async findAccount(this: BillingThis, id: string, transaction?: Transaction): Promise<BillingAccount> {
			return this.toAccount(await this.accountRow(id, transaction), await this.balanceOf(id, transaction));
		},

		/** The account's row, locked as asked within the transaction, or 404; without its balance, which costs a sum over the ledger. */
		async accountRow(this: BillingThis, id: string, transaction?: Transaction, lock?: Transaction["LOCK"][keyof Transaction["LOCK"]]): Promise<Model> {
			const row = isUuid(id) ? await this.adapter.model.findByPk(id, { transaction, lock }) : null;
			if (!row) throw new NotFoundError("Billing account", id);
			return row;
		},

		async changeAccount(this: BillingThis, id: string, changes: AccountChanges): Promise<BillingAccount> {
			return this.adapter.db.transaction(async transaction => {
				const row = await this.accountRow(id, transaction, transaction.LOCK.UPDATE);
				await row.update(changes, { transaction });
				return this.toAccount(row, await this.balanceOf(id, transaction));
			});
		},

		async balanceOf(this: BillingThis, accountId: string, transaction?: Transaction): Promise<number> {
			return (await this.balancesOf([accountId], transaction)).get(accountId) ?? 0;
		},

		/** The balances of many accounts in one query (a page of accounts), by account id. */
		async balancesOf(this: BillingThis, accountIds: string[], transaction?: Transaction): Promise<Map<string, number>> {
			const rows = await this.adapter.db.query<{ account_id: string; balance: string }>(BALANCES_SQL, {
				bind: [accountIds],
				type: QueryTypes.SELECT,
				transaction
			});
			return new Map(rows.map(r => [r.account_id, Number(r.balance)]));
		},

		toAccount(row: Model, balance: number): BillingAccount {
			return accountFrom(row.get({ plain: true }) as AccountRecord, balance);
		}
	}
};

export default BillingService;
