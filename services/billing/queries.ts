import { type Static, Type } from "@sinclair/typebox";
import type { Statement } from "../../lib/infra/database";
import { Instant, Nullable, StringEnum, Uuid, Version } from "../../lib/domain/schemas";
import { type PageRequest, limitOffset } from "../../lib/domain/paging";
import { onFirstDelivery } from "../../lib/domain/patient-events";

/**
 * Every statement of the billing service and its row mappers. Columns are
 * those of migrations/billing.ts, aliased to the names the API gives them.
 */

/** The statuses staff (and UpdateBillingAccount) may set. CLOSED comes only from a patient merge, and is final. */
export const ACCOUNT_STATUSES = ["ACTIVE", "INACTIVE", "SUSPENDED"] as const;
/** What a client may post. A TRANSFER is posted only by a patient merge. */
export const TRANSACTION_TYPES = ["CHARGE", "PAYMENT", "ADJUSTMENT", "REFUND"] as const;
export type SettableStatus = (typeof ACCOUNT_STATUSES)[number];
export type AccountStatus = SettableStatus | "CLOSED";
export type TransactionType = (typeof TRANSACTION_TYPES)[number] | "TRANSFER";

export const BillingAccountSchema = Type.Object(
	{
		id: Uuid,
		patientId: Uuid,
		name: Type.String(),
		email: Type.String({ format: "email" }),
		status: StringEnum([...ACCOUNT_STATUSES, "CLOSED"] as const, { description: "CLOSED comes only from a patient merge, and is final." }),
		currency: Type.String({ examples: ["GBP"] }),
		version: Version,
		mergedIntoAccountId: Nullable({ ...Uuid, description: "A CLOSED account's successor: the survivor's account, which took over the balance when the patient was merged." }),
		balance: Type.Integer({ description: "Minor units: charges − payments + refunds + adjustments. Positive: the patient owes." }),
		createdAt: Instant,
		updatedAt: Instant
	},
	{
		$id: "BillingAccount",
		examples: [
			{
				id: "3f2b1c0d-8e7a-4b6c-9d5e-1a2b3c4d5e6f",
				patientId: "8d5e9c4e-2f4b-4c43-9d59-3a3f1a3b7a10",
				name: "Ada Lovelace",
				email: "ada@example.org",
				status: "ACTIVE",
				currency: "GBP",
				version: 1,
				mergedIntoAccountId: null,
				balance: 7500,
				createdAt: "2026-11-29T10:15:01.000Z",
				updatedAt: "2026-11-29T10:15:01.000Z"
			}
		]
	}
);

export type BillingAccount = Static<typeof BillingAccountSchema>;

/** An account as a statement returns it, before its balance is known. */
export type AccountRow = Omit<BillingAccount, "balance" | "createdAt" | "updatedAt"> & { createdAt: Date; updatedAt: Date };

export const LedgerTransactionSchema = Type.Object(
	{
		id: Uuid,
		accountId: Uuid,
		type: StringEnum([...TRANSACTION_TYPES, "TRANSFER"] as const, { description: "A TRANSFER is posted only by a patient merge." }),
		amount: Type.Integer({ description: "Minor units, positive." }),
		description: Nullable(Type.String()),
		reference: Nullable(Type.String()),
		createdAt: Instant
	},
	{
		$id: "LedgerTransaction",
		examples: [
			{
				id: "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
				accountId: "3f2b1c0d-8e7a-4b6c-9d5e-1a2b3c4d5e6f",
				type: "CHARGE",
				amount: 7500,
				description: "Consultation",
				reference: "appointment:6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d",
				createdAt: "2026-12-01T09:31:00.000Z"
			}
		]
	}
);

export type LedgerTransaction = Static<typeof LedgerTransactionSchema>;

/** A transaction as a statement returns it; `fingerprint` tells a retry from another request under the same key. */
export type TransactionRow = Omit<LedgerTransaction, "amount" | "createdAt"> & { amount: string; fingerprint: string | null; createdAt: Date };

export interface NewAccount {
	id: string;
	patientId: string;
	name: string;
	email: string;
	currency: string;
}

export interface AccountChanges {
	name?: string;
	email?: string;
	status?: SettableStatus;
}

/** What a client posts to the ledger. */
export interface Posting {
	type: TransactionType;
	amount: number;
	description?: string;
	reference?: string;
}

export interface NewTransaction extends Posting {
	id: string;
	accountId: string;
	idempotencyKey?: string;
	fingerprint: string;
}

const ACCOUNT_COLUMNS = `id, patient_id AS "patientId", name, email, status, currency, version, merged_into_account_id AS "mergedIntoAccountId", created_at AS "createdAt", updated_at AS "updatedAt"`;

const TRANSACTION_COLUMNS = `id, account_id AS "accountId", type, amount, description, reference, request_fingerprint AS "fingerprint", created_at AS "createdAt"`;

export function toAccount(row: AccountRow, balance: number): BillingAccount {
	return {
		id: row.id,
		patientId: row.patientId,
		name: row.name,
		email: row.email,
		status: row.status,
		currency: row.currency,
		version: row.version,
		mergedIntoAccountId: row.mergedIntoAccountId,
		balance,
		createdAt: row.createdAt.toISOString(),
		updatedAt: row.updatedAt.toISOString()
	};
}

export function toTransaction(row: TransactionRow): LedgerTransaction {
	return {
		id: row.id,
		accountId: row.accountId,
		type: row.type,
		amount: Number(row.amount),
		description: row.description,
		reference: row.reference,
		createdAt: row.createdAt.toISOString()
	};
}

/** Opens the patient's account; no row if the patient has one already. */
export function insertAccount(a: NewAccount): Statement {
	return {
		text: `INSERT INTO billing_accounts (id, patient_id, name, email, currency) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (patient_id) DO NOTHING RETURNING ${ACCOUNT_COLUMNS}`,
		values: [a.id, a.patientId, a.name, a.email, a.currency]
	};
}

/** The same from a patient event, once per event; nothing if the patient has one already. */
export function insertAccountOnFirstDelivery(eventId: string, a: NewAccount): Statement {
	return {
		text: onFirstDelivery(
			`INSERT INTO billing_accounts (id, patient_id, name, email, currency) SELECT $2::uuid, $3::uuid, $4, $5, $6 FROM first_delivery
			ON CONFLICT (patient_id) DO NOTHING RETURNING id`
		),
		values: [eventId, a.id, a.patientId, a.name, a.email, a.currency]
	};
}

/**
 * Applies a patient's PATIENT_UPDATED once: the account takes the patient's
 * name and email. A patient without an account gets one, opened from the
 * event, so the change is never lost (its PATIENT_CREATED was dead-lettered,
 * say); a PATIENT_CREATED handled later finds it open and changes nothing.
 */
export function renameAccountOnFirstDelivery(eventId: string, a: NewAccount): Statement {
	return {
		text: onFirstDelivery(
			`INSERT INTO billing_accounts (id, patient_id, name, email, currency) SELECT $2::uuid, $3::uuid, $4, $5, $6 FROM first_delivery
			ON CONFLICT (patient_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, version = billing_accounts.version + 1, updated_at = now()
			WHERE (billing_accounts.name, billing_accounts.email) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.email)`
		),
		values: [eventId, a.id, a.patientId, a.name, a.email, a.currency]
	};
}

/**
 * Applies a patient's PATIENT_DELETED once: the account becomes INACTIVE. A
 * patient without an account gets an INACTIVE one, so that a CreateBillingAccount
 * arriving late (a registration's call that outlived its deadline) finds it
 * rather than opening an active account for a deleted patient.
 */
export function deactivateAccountOnFirstDelivery(eventId: string, a: NewAccount): Statement {
	return {
		text: onFirstDelivery(
			`INSERT INTO billing_accounts (id, patient_id, name, email, currency, status) SELECT $2::uuid, $3::uuid, $4, $5, $6, 'INACTIVE' FROM first_delivery
			ON CONFLICT (patient_id) DO UPDATE SET status = 'INACTIVE', version = billing_accounts.version + 1, updated_at = now()
			WHERE billing_accounts.status NOT IN ('INACTIVE', 'CLOSED')`
		),
		values: [eventId, a.id, a.patientId, a.name, a.email, a.currency]
	};
}

/** The account, with the row lock asked for (the rest of the transaction) or none. */
export function accountById(id: string, lock: "" | "FOR SHARE" = ""): Statement {
	return { text: `SELECT ${ACCOUNT_COLUMNS} FROM billing_accounts WHERE id = $1 ${lock}`, values: [id] };
}

export function accountOfPatient(patientId: string): Statement {
	return { text: `SELECT ${ACCOUNT_COLUMNS} FROM billing_accounts WHERE patient_id = $1`, values: [patientId] };
}

/** The filter of an account list: every account, or the patient's. */
function accountFilter(patientId?: string): { where: string; values: unknown[] } {
	return patientId ? { where: "WHERE patient_id = $1", values: [patientId] } : { where: "", values: [] };
}

/** One page of accounts, newest first. */
export function accountPage(filter: PageRequest & { patientId?: string }): Statement {
	const { where, values } = accountFilter(filter.patientId);
	const { limit, offset } = limitOffset(filter);
	const next = values.length + 1;
	return {
		text: `SELECT ${ACCOUNT_COLUMNS} FROM billing_accounts ${where} ORDER BY created_at DESC, id DESC LIMIT $${next} OFFSET $${next + 1}`,
		values: [...values, limit, offset]
	};
}

export function accountCount(patientId?: string): Statement {
	const { where, values } = accountFilter(patientId);
	return { text: `SELECT count(*)::int AS total FROM billing_accounts ${where}`, values };
}

/**
 * Applies the changes given (a missing one leaves its column as it is), if the
 * account is at one of the versions `ifMatch` allows (null: any) and, for a
 * status, not CLOSED; no row if it is not. As the ORM did, `updated_at` moves only when a value really changes,
 * and so does `version`.
 */
export function updateAccount(id: string, changes: AccountChanges, ifMatch: number[] | null = null): Statement {
	const changed = "(name, email, status) IS DISTINCT FROM (COALESCE($2, name), COALESCE($3, email), COALESCE($4, status))";
	return {
		text: `UPDATE billing_accounts SET name = COALESCE($2, name), email = COALESCE($3, email), status = COALESCE($4, status),
			version = CASE WHEN ${changed} THEN version + 1 ELSE version END,
			updated_at = CASE WHEN ${changed} THEN now() ELSE updated_at END
			WHERE id = $1 AND ($5::int[] IS NULL OR version = ANY($5::int[])) AND (status <> 'CLOSED' OR $4::varchar IS NULL) RETURNING ${ACCOUNT_COLUMNS}`,
		values: [id, changes.name ?? null, changes.email ?? null, changes.status ?? null, ifMatch]
	};
}

/** Each listed account's balance; an account with no transactions has no row (a balance of 0). */
export function balances(accountIds: string[]): Statement {
	return {
		text: `SELECT account_id AS "accountId", SUM(CASE WHEN type = 'PAYMENT' THEN -amount ELSE amount END)::bigint AS balance
			FROM billing_transactions WHERE account_id = ANY($1::uuid[]) GROUP BY account_id`,
		values: [accountIds]
	};
}

/**
 * Posts a transaction, unless its idempotency key was posted already, the
 * account is CLOSED (its balance lives on in the survivor's), or it is a charge
 * to an account that is not ACTIVE (`status`, as read under the row lock that
 * keeps it steady): then no row.
 */
export function insertTransaction(t: NewTransaction, status: AccountStatus): Statement {
	return {
		text: `INSERT INTO billing_transactions (id, account_id, type, amount, description, reference, idempotency_key, request_fingerprint)
			SELECT $1::uuid, $2::uuid, $3::varchar, $4::bigint, $5::varchar, $6::varchar, $7::varchar, $8::char(64)
			WHERE $9::varchar <> 'CLOSED' AND ($3::varchar <> 'CHARGE' OR $9::varchar = 'ACTIVE')
			ON CONFLICT (account_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
			RETURNING ${TRANSACTION_COLUMNS}`,
		values: [t.id, t.accountId, t.type, t.amount, t.description ?? null, t.reference ?? null, t.idempotencyKey ?? null, t.fingerprint, status]
	};
}

export function transactionByKey(accountId: string, idempotencyKey: string): Statement {
	return {
		text: `SELECT ${TRANSACTION_COLUMNS} FROM billing_transactions WHERE account_id = $1 AND idempotency_key = $2`,
		values: [accountId, idempotencyKey]
	};
}

/** One page of the account's ledger, newest first. */
export function transactionPage(accountId: string, page: PageRequest): Statement {
	const { limit, offset } = limitOffset(page);
	return {
		text: `SELECT ${TRANSACTION_COLUMNS} FROM billing_transactions WHERE account_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3`,
		values: [accountId, limit, offset]
	};
}

export function transactionCount(accountId: string): Statement {
	return { text: "SELECT count(*)::int AS total FROM billing_transactions WHERE account_id = $1", values: [accountId] };
}

/**
 * Records a patient event as applied, for work that takes more than one
 * statement (a merge): run first in the work's transaction, it answers no row
 * on a redelivery, and a rollback forgets it with the rest.
 */
export function recordEvent(eventId: string): Statement {
	return { text: "INSERT INTO processed_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING event_id", values: [eventId] };
}

/** Locks the accounts for the rest of the transaction, in id order (two merges sharing an account never deadlock); their rows. */
export function lockAccounts(ids: string[]): Statement {
	return { text: `SELECT ${ACCOUNT_COLUMNS} FROM billing_accounts WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`, values: [ids] };
}

/** Closes a merged patient's account, naming the account its balance went to. */
export function closeAccount(id: string, mergedIntoAccountId: string): Statement {
	return {
		text: `UPDATE billing_accounts SET status = 'CLOSED', merged_into_account_id = $2, version = version + 1, updated_at = now() WHERE id = $1 RETURNING ${ACCOUNT_COLUMNS}`,
		values: [id, mergedIntoAccountId]
	};
}

/** One side of a balance carried between accounts: a signed TRANSFER, posted whatever the account's status. */
export function insertTransfer(t: { id: string; accountId: string; amount: number; description: string; reference: string; idempotencyKey: string }): Statement {
	return {
		text: `INSERT INTO billing_transactions (id, account_id, type, amount, description, reference, idempotency_key)
			VALUES ($1, $2, 'TRANSFER', $3, $4, $5, $6) RETURNING ${TRANSACTION_COLUMNS}`,
		values: [t.id, t.accountId, t.amount, t.description, t.reference, t.idempotencyKey]
	};
}
