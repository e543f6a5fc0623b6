import type { REPLEval, REPLServer } from "node:repl";
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
	oneLineAtATime(broker.repl() as unknown as REPLServer);
}

/**
 * Node's REPL starts each line as it arrives, without waiting for the one
 * before to finish: commands pasted or piped in (`npm run repl < checks.txt`)
 * would run side by side, and the end of the input (or a `quit`) stop the
 * node under them. Here each line waits for the one before, and the end of
 * the input for the last.
 */
function oneLineAtATime(server: REPLServer): void {
	const evaluate = server.eval.bind(server);
	let previous = Promise.resolve();
	const inOrder: REPLEval = (command, context, file, done) => {
		previous = previous.then(
			() =>
				new Promise<void>(finished =>
					// The REPL prints a result only when given one: pass on exactly what the command gave.
					evaluate(command, context, file, (...answer: Parameters<typeof done>) => {
						done(...answer);
						finished();
					})
				)
		);
	};
	(server as { eval: REPLEval }).eval = inOrder;
	const onExit = server.listeners("exit") as (() => void)[];
	server.removeAllListeners("exit");
	server.once("exit", () => void previous.then(() => onExit.forEach(listener => listener.call(server))));
}

void main();
