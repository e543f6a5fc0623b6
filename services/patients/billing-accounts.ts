import type { Logger } from "moleculer";
import { config } from "../../lib/infra/config";
import type { Queryable } from "../../lib/infra/database";
import { unaryCall } from "../../mixins/grpc-client.mixin";
import type { BillingRequest, BillingResponse, BillingServiceClient } from "../../proto/generated/billing_service";
import { type Patient, patientsWithoutBillingAccount, setBillingAccount } from "./queries";

/**
 * Each patient's billing account id, learnt one way only: the answer to
 * CreateBillingAccount over gRPC, asked at registration (after the commit, so
 * a slow or absent billing never loses a patient) and again by a reconciler
 * for every live patient still without one. Billing may open the account
 * first, from the patient's event; the call is idempotent and answers with
 * that account (docs/events.md).
 */

/** What asking billing needs: its gRPC client, the patients database, and a log for calls that fail. */
export interface BillingAccounts {
	billing: BillingServiceClient;
	db: Queryable;
	logger: Pick<Logger, "warn">;
}

/** Asks billing (within its deadline) to open the patient's account; the account id, or null if billing did not answer. */
export async function openBillingAccount({ billing, db, logger }: BillingAccounts, patient: Pick<Patient, "id" | "name" | "email">): Promise<string | null> {
	try {
		const { accountId } = await unaryCall<BillingRequest, BillingResponse>(
			billing,
			billing.createBillingAccount,
			{ patientId: patient.id, name: patient.name, email: patient.email },
			config.billingGrpcDeadlineMs
		);
		await recordBillingAccount(db, patient.id, accountId);
		return accountId;
	} catch (err) {
		logger.warn(`No billing account yet for patient ${patient.id} (${(err as Error).message}); the reconciler will retry`);
		return null;
	}
}

async function recordBillingAccount(db: Queryable, patientId: string, accountId: string): Promise<void> {
	await db.query(setBillingAccount(patientId, accountId));
}

/** Opens the accounts that failed calls left missing, oldest first; stops at the first failure (billing still away). */
export async function reconcileBillingAccounts(accounts: BillingAccounts): Promise<void> {
	const patients = await accounts.db.query<Pick<Patient, "id" | "name" | "email">>(patientsWithoutBillingAccount(100));
	for (const patient of patients) {
		if (!(await openBillingAccount(accounts, patient))) return;
	}
}
