import crypto from "node:crypto";
import { config } from "../../lib/infra/config";
import type { Database, Queryable } from "../../lib/infra/database";
import { NotFoundError, PreconditionFailedError, StateConflictError } from "../../lib/infra/errors";
import { type Page, type PageRequest, toPage } from "../../lib/domain/paging";
import { isUuid } from "../../lib/infra/sql";
import {
	type AccountChanges,
	type AccountRow,
	type BillingAccount,
	type NewAccount,
	accountById,
	accountCount,
	accountOfPatient,
	accountPage,
	balances,
	insertAccount,
	toAccount,
	updateAccount
} from "./queries";

/** Billing accounts, one per patient, each with the balance of its ledger. */

/** A new account for the patient, in the clinic's currency. */
export function newAccount(input: { patientId: string; name: string; email: string }): NewAccount {
	return { id: crypto.randomUUID(), patientId: input.patientId, name: input.name, email: input.email, currency: config.billingCurrency };
}

/**
 * Opens the patient's account, or returns the one already open (whoever opened
 * it): what makes CreateBillingAccount idempotent, and the patients service's
 * one way to learn an account's id (docs/events.md).
 */
export async function openAccount(db: Queryable, input: { patientId: string; name: string; email: string }): Promise<BillingAccount> {
	const [inserted] = await db.query<AccountRow>(insertAccount(newAccount(input)));
	if (inserted) return toAccount(inserted, 0);
	const open = (await accountOf(db, input.patientId))!;
	return toAccount(open, await balanceOf(db, open.id));
}

/** The patient's account, if one is open. */
export async function accountOf(db: Queryable, patientId: string): Promise<AccountRow | undefined> {
	const [row] = await db.query<AccountRow>(accountOfPatient(patientId));
	return row;
}

/** The account's row, locked as asked within a transaction, or 404; without its balance, which costs a sum over the ledger. */
export async function accountRow(db: Queryable, id: string, lock: "" | "FOR SHARE" = ""): Promise<AccountRow> {
	const [row] = isUuid(id) ? await db.query<AccountRow>(accountById(id, lock)) : [];
	if (!row) throw new NotFoundError("Billing account", id);
	return row;
}

export async function findAccount(db: Queryable, id: string): Promise<BillingAccount> {
	return toAccount(await accountRow(db, id), await balanceOf(db, id));
}

/** 409 for a posting to, or a status change of, a CLOSED account: its patient was merged, and its balance lives on elsewhere. */
export function closedAccountError(account: AccountRow, what: string): StateConflictError {
	return new StateConflictError(`The account is CLOSED (its patient was merged into another): it takes no ${what}; its balance went to account ${account.mergedIntoAccountId}`, {
		status: account.status,
		mergedIntoAccountId: account.mergedIntoAccountId
	});
}

/**
 * Changes name, email or status, if the account is at a version `ifMatch`
 * allows (unset: any), else 412 and nothing written; a CLOSED account's status
 * stays (409). The row stays locked until the balance is read, as a posting
 * holds it (FOR SHARE) while it posts.
 */
export async function changeAccount(db: Database, id: string, changes: AccountChanges, ifMatch?: number[]): Promise<BillingAccount> {
	if (!isUuid(id)) throw new NotFoundError("Billing account", id);
	return db.transaction(async tx => {
		const [row] = await tx.query<AccountRow>(updateAccount(id, changes, ifMatch ?? null));
		if (!row) {
			const current = await accountRow(tx, id);
			if (current.status === "CLOSED" && (!ifMatch || ifMatch.includes(current.version))) throw closedAccountError(current, "status change");
			throw new PreconditionFailedError("Billing account", current.version);
		}
		return toAccount(row, await balanceOf(tx, id));
	});
}

/** A page of accounts, newest first, each with its balance. */
export async function listAccounts(db: Queryable, filter: PageRequest & { patientId?: string }): Promise<Page<BillingAccount>> {
	// Counted and read side by side, as the ORM did.
	const [[{ total }], rows] = await Promise.all([db.query<{ total: number }>(accountCount(filter.patientId)), db.query<AccountRow>(accountPage(filter))]);
	const balanceById = await balancesOf(db, rows.map(row => row.id));
	return toPage(
		rows.map(row => toAccount(row, balanceById.get(row.id) ?? 0)),
		total,
		filter
	);
}

export async function balanceOf(db: Queryable, accountId: string): Promise<number> {
	return (await balancesOf(db, [accountId])).get(accountId) ?? 0;
}

/** The balances of many accounts in one query (a page of accounts), by account id. */
export async function balancesOf(db: Queryable, accountIds: string[]): Promise<Map<string, number>> {
	const rows = await db.query<{ accountId: string; balance: string }>(balances(accountIds));
	return new Map(rows.map(r => [r.accountId, Number(r.balance)]));
}
