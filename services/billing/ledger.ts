import crypto from "node:crypto";
import type { Context, MetricRegistry } from "moleculer";
import type { Database, Queryable } from "../../lib/infra/database";
import { ForbiddenError, IdempotencyKeyReusedError, StateConflictError } from "../../lib/infra/errors";
import { requestFingerprint } from "../../lib/infra/idempotency";
import { METRICS, countCommitted } from "../../lib/infra/metrics";
import type { AuthenticatedUser } from "../../lib/infra/http";
import { type Page, type PageRequest, toPage } from "../../lib/domain/paging";
import { BILLING_ADMINS } from "../../lib/domain/roles";
import { accountOf, accountRow, balanceOf, closedAccountError, openAccount } from "./accounts";
import {
	type AccountRow,
	type LedgerTransaction,
	type Posting,
	type TransactionRow,
	insertTransaction,
	toTransaction,
	transactionByKey,
	transactionCount,
	transactionPage
} from "./queries";

/** The append-only ledger, in exact integer minor units, and its posting rules. */

/** How many merges a balance or a charge follows to reach an open account (a survivor merged in turn). */
export const MAX_MERGE_HOPS = 10;

/** Ten billion in major units: far beyond any clinic bill, well inside JavaScript's exact integers. */
export const MAX_AMOUNT = 1_000_000_000_000;

/** A posted transaction, with the account's balance after it and the patient it belongs to. */
export type PostedTransaction = LedgerTransaction & { balance: number; patientId: string };

export interface AppointmentCharge {
	appointmentId: string;
	patientId: string;
	consultationFee: number;
}

/** The `amount` param: whole minor units, positive but for an ADJUSTMENT, never zero. */
export const amountParam = {
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
};

/** Clerks post payments; everything else moves money the clinic's way and needs an admin. */
export function checkMayPost(caller: AuthenticatedUser | null | undefined, posting: Posting): void {
	if (caller && posting.type !== "PAYMENT" && !BILLING_ADMINS.includes(caller.role)) {
		throw new ForbiddenError(`The ${caller.role} role may not post a ${posting.type}`);
	}
}

/** What a retry under the same idempotency key must repeat exactly. */
function fingerprint(posting: Posting): string {
	return requestFingerprint([posting.type, posting.amount, posting.description ?? null, posting.reference ?? null]);
}

/** Posts to the ledger, once per idempotency key: a retry gets the transaction the first attempt posted. */
export async function postEntry(db: Database, metrics: MetricRegistry, accountId: string, posting: Posting, idempotencyKey?: string): Promise<PostedTransaction> {
	const print = fingerprint(posting);
	let posted = false;
	const result = await db.transaction(async tx => {
		// FOR SHARE: a concurrent status change waits for this posting, and vice versa.
		const account = await accountRow(tx, accountId, "FOR SHARE");
		const transaction = { ...posting, id: crypto.randomUUID(), accountId: account.id, idempotencyKey, fingerprint: print };
		let [row] = await tx.query<TransactionRow>(insertTransaction(transaction, account.status));
		posted = row !== undefined;
		if (!row && idempotencyKey) {
			[row] = await tx.query<TransactionRow>(transactionByKey(account.id, idempotencyKey));
			if (row && row.fingerprint !== print) throw new IdempotencyKeyReusedError();
		}
		if (!row && account.status === "CLOSED") throw closedAccountError(account, "postings");
		if (!row) throw new StateConflictError(`The account is ${account.status}; it accepts no new charges`, { status: account.status });
		return { ...toTransaction(row), balance: await balanceOf(tx, account.id), patientId: account.patientId };
	});
	// Committed: a retry that found its first posting posted nothing new.
	if (posted) countCommitted(metrics, METRICS.ledgerPostings, { type: posting.type });
	return result;
}

/** A page of the account's ledger, newest first, or 404 for an unknown account. */
export async function listTransactions(db: Queryable, accountId: string, page: PageRequest): Promise<Page<LedgerTransaction> & { patientId: string }> {
	const account = await accountRow(db, accountId);
	const rows = await db.query<TransactionRow>(transactionPage(account.id, page));
	const [{ total }] = await db.query<{ total: number }>(transactionCount(account.id));
	return { ...toPage(rows.map(toTransaction), total, page), patientId: account.patientId };
}

/**
 * The fee as a CHARGE on the patient's account (opened if need be, from the
 * patient's record), or, for a patient since merged, on the account that took
 * over its balance; the appointment id is the idempotency key.
 */
export async function chargeAppointment(db: Database, ctx: Context, charge: AppointmentCharge): Promise<void> {
	if (!charge.consultationFee) return;
	let account: Pick<AccountRow, "id" | "mergedIntoAccountId"> =
		(await accountOf(db, charge.patientId)) ??
		(await openAccount(db, { ...(await ctx.call<{ name: string; email: string }, { id: string }>("patients.get", { id: charge.patientId })), patientId: charge.patientId }));
	for (let hop = 0; account.mergedIntoAccountId && hop < MAX_MERGE_HOPS; hop++) account = await accountRow(db, account.mergedIntoAccountId);
	await postEntry(
		db,
		ctx.broker.metrics,
		account.id,
		{ type: "CHARGE", amount: charge.consultationFee, description: "Consultation", reference: `appointment:${charge.appointmentId}` },
		`appointment-fulfilled:${charge.appointmentId}`
	);
}
