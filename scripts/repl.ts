import { ServiceBroker } from "moleculer";
import brokerConfig from "../moleculer.config";
import { config } from "../lib/infra/config";
import { OperatorIdentityMiddleware } from "../lib/infra/operator-audit";

/**
 * `npm run repl`: a service-less node that joins the running cluster through
 * TRANSPORTER and opens the Moleculer REPL (nodes, services, actions, call,
 * emit, …), plus MedSync's own commands (lib/tooling/repl-commands.ts, in the broker options).
 * Its calls name the operator (OS user and host) for the audit trail.
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
		// Every call this node makes is the operator's: the services audit the ones that touch patient data under this name.
		middlewares: [...(brokerConfig.middlewares ?? []), OperatorIdentityMiddleware(true)],
		logger: { type: "Console", options: { level: "warn" } }
	});
	await broker.start();
	await broker.repl();
}

void main();
