import { ServiceBroker } from "moleculer";
import brokerConfig from "../moleculer.config";
import { config } from "../lib/infra/config";

/**
 * `npm run repl`: a service-less node that joins the running cluster through
 * TRANSPORTER and opens the Moleculer REPL (nodes, services, actions, call,
 * emit, …), plus MedSync's own commands (lib/tooling/repl-commands.ts, in the broker options).
 */
async function main(): Promise<void> {
	if (!config.transporter) {
		console.error("Set TRANSPORTER (e.g. nats://127.0.0.1:4222) to join a cluster; `npm run dev` gives a REPL in a single process.");
		process.exit(2);
	}
	const broker = new ServiceBroker({
		...brokerConfig,
		nodeID: `repl-${process.pid}`,
		// A REPL beside running nodes has no metrics to serve, and must not take a metrics port one of them uses.
		metrics: false,
		logger: { type: "Console", options: { level: "warn" } }
	});
	await broker.start();
	await broker.repl();
}

void main();
