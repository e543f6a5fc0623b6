import type { DbThis } from "../../mixins/db.mixin";
import type { UnaryHandlers } from "../../mixins/grpc-server.mixin";
import type { BillingRequest, BillingServiceServer } from "../../proto/generated/billing_service";
import { changeAccount, findAccount } from "./accounts";
import type { AccountChanges, BillingAccount, SettableStatus } from "./queries";

/**
 * The original's BillingService (proto/billing_service.proto). Calls that need
 * their input validated go through the service's actions, whose params check it.
 */
export const billingGrpcHandlers: UnaryHandlers<BillingServiceServer, DbThis> = {
	async createBillingAccount(request) {
		const account = await this.broker.call<BillingAccount, BillingRequest>("billing.openAccount", request);
		return { accountId: account.id, status: account.status };
	},

	async getBillingAccount(request) {
		const account = await findAccount(this.db, request.accountId);
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

	async updateBillingAccount(request) {
		// proto3 strings default to "": an empty field means "leave as is".
		const account = await this.broker.call<BillingAccount, AccountChanges & { id: string }>("billing.changeAccount", {
			id: request.accountId,
			...(request.name && { name: request.name }),
			...(request.email && { email: request.email }),
			...(request.status && { status: request.status as SettableStatus })
		});
		return { accountId: account.id, status: account.status };
	},

	/** Closes the account (INACTIVE); its ledger is kept. */
	async deleteBillingAccount(request) {
		const account = await changeAccount(this.db, request.accountId, { status: "INACTIVE" });
		return { accountId: account.id, status: account.status };
	}
};
