import { ServiceBroker } from "moleculer";
import brokerConfig from "../moleculer.config";
import { config } from "../lib/config";
import { seedConfigured } from "../lib/seed";

/**
 * `npm run repl`: a service-less node that joins the running cluster through
 * TRANSPORTER and opens the Moleculer REPL (nodes, services, actions, call,
 * emit, …), plus MedSync's own commands.
 */
async function main(): Promise<void> {
	if (!config.transporter) {
		console.error("Set TRANSPORTER (e.g. nats://127.0.0.1:4222) to join a cluster; `npm run dev` gives a REPL in a single process.");
		process.exit(2);
	}
	const broker = new ServiceBroker({
		...brokerConfig,
		nodeID: `repl-${process.pid}`,
		logger: { type: "Console", options: { level: "warn" } },
		replOptions: {
			customCommands: [
				{
					command: "outbox",
					description: "Patient events waiting to be published, and the ones failing",
					async action(b: ServiceBroker) {
						console.log(JSON.stringify(await b.call("patients.outboxStatus"), null, 2));
					}
				},
				{
					command: "seed",
					description: "Load the demo data set through the gateway (SEED_URL, default the local one)",
					action: seedConfigured
				}
			]
		}
	});
	await broker.start();
	await broker.repl();
}

void main();
