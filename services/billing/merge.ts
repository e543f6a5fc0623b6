import crypto from "node:crypto";
import type { Database, Queryable } from "../../lib/infra/database";
import { accountOf, balanceOf, newAccount } from "./accounts";
import { MAX_MERGE_HOPS } from "./ledger";
import { type AccountRow, closeAccount, insertAccount, insertTransfer, lockAccounts, recordEvent } from "./queries";

/** A PATIENT_MERGED event, as billing needs it: `patientId` (with its name and email) was merged into `mergedInto`. */
export interface PatientMerge {
	eventId: string;
	patientId: string;
	name: string;
	email: string;
	mergedInto: string;
}

/** Reads a patient's name and email from the registry, for a survivor whose account billing has not opened yet. */
export type PatientLookup = (patientId: string) => Promise<{ name: string; email: string }>;

/**
 * Applies a PATIENT_MERGED once: the merged patient's account is CLOSED and
 * names the survivor's, and a non-zero balance is carried over by two
 * TRANSFERs of opposite amounts, each referencing the other and the event.
 * The event's record, any account opened on the way, the closing and both
 * entries commit in one transaction, or none does.
 */
export async function mergeAccounts(db: Database, lookup: PatientLookup, merge: PatientMerge): Promise<void> {
	// Asked before the transaction, so that no lock waits on another service.
	const survivor = (await accountOf(db, merge.mergedInto)) ? undefined : await lookup(merge.mergedInto);
	await db.transaction(async tx => {
		if (!(await tx.query(recordEvent(merge.eventId))).length) return;
		if (survivor) await tx.query(insertAccount(newAccount({ patientId: merge.mergedInto, ...survivor })));
		// A merged patient whose creation never reached billing: its account is opened only to be closed, so that a
		// late CreateBillingAccount finds it closed rather than opening an active one.
		await tx.query(insertAccount(newAccount(merge)));
		const { merged, target } = await lockPair(tx, (await accountOf(tx, merge.patientId))!, (await accountOf(tx, merge.mergedInto))!);
		// Merged before, or a chain of merges leading back to itself: nothing to carry.
		if (merged.status === "CLOSED" || merged.id === target.id) return;
		const balance = await balanceOf(tx, merged.id);
		await tx.query(closeAccount(merged.id, target.id));
		if (balance === 0) return;
		const [outId, inId] = [crypto.randomUUID(), crypto.randomUUID()];
		const idempotencyKey = `patient-merged:${merge.eventId}`;
		await tx.query(
			insertTransfer({
				id: outId,
				accountId: merged.id,
				amount: -balance,
				description: `Balance carried to account ${target.id}: patient merged into ${merge.mergedInto} (event ${merge.eventId})`,
				reference: `transfer:${inId}`,
				idempotencyKey
			})
		);
		await tx.query(
			insertTransfer({
				id: inId,
				accountId: target.id,
				amount: balance,
				description: `Balance carried from account ${merged.id}: patient ${merge.patientId} merged (event ${merge.eventId})`,
				reference: `transfer:${outId}`,
				idempotencyKey
			})
		);
	});
}

/**
 * Locks the merged account and the one its balance goes to: the survivor's,
 * or, if that was itself merged meanwhile (its event came first), the account
 * that survived it. Postings hold an account FOR SHARE, so the balance read
 * after this is final.
 */
async function lockPair(tx: Queryable, merged: AccountRow, survivor: AccountRow): Promise<{ merged: AccountRow; target: AccountRow }> {
	let targetId = survivor.id;
	for (let hop = 0; ; hop++) {
		const rows = new Map((await tx.query<AccountRow>(lockAccounts([merged.id, targetId]))).map(row => [row.id, row]));
		const target = rows.get(targetId)!;
		if (!target.mergedIntoAccountId || target.id === merged.id) return { merged: rows.get(merged.id)!, target };
		if (hop === MAX_MERGE_HOPS) throw new Error(`More than ${MAX_MERGE_HOPS} merges lead on from account ${survivor.id}`);
		targetId = target.mergedIntoAccountId;
	}
}
