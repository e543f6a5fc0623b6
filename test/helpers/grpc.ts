import { type ChannelCredentials, Metadata } from "@grpc/grpc-js";
import { BillingServiceClient } from "../../proto/generated/billing_service";

/**
 * One GetBillingAccount call on a channel of its own, closed after it: a single
 * attempt (a refused handshake is UNAVAILABLE at once, not retried until a
 * deadline), with a deadline that only bounds a hang.
 */
export async function getAccountOnce(address: string, creds: ChannelCredentials, accountId: string): Promise<unknown> {
	const client = new BillingServiceClient(address, creds);
	try {
		return await new Promise((resolve, reject) =>
			client.getBillingAccount({ accountId }, new Metadata(), { deadline: Date.now() + 5000 }, (err, response) => (err ? reject(err) : resolve(response)))
		);
	} finally {
		client.close();
	}
}
