import type { BrokerOptions, ServiceBroker } from "moleculer";
import { seedConfigured } from "./seed";

type ReplCommand = NonNullable<NonNullable<BrokerOptions["replOptions"]>["customCommands"]>[number];

/** Asks every gateway node for `action`'s answer, by node id: each gateway keeps its own audit journal. */
async function askEveryGateway(broker: ServiceBroker, action: string): Promise<Record<string, unknown>> {
	const nodes = broker.registry
		.getServiceList({ onlyAvailable: true })
		.filter(service => service.name === "api" && service.nodeID)
		.map(service => service.nodeID!);
	const answers = await Promise.all(
		nodes.map(async nodeID => [nodeID, await broker.call(action, {}, { nodeID }).catch((err: Error) => ({ error: err.message }))] as const)
	);
	return Object.fromEntries(answers);
}

/** MedSync's own commands in the Moleculer REPL, beside its built-in ones: in `npm run repl` and `npm run dev` alike. */
export const replCommands: ReplCommand[] = [
	{
		command: "outbox",
		description: "Patient events waiting to be published, and the ones failing",
		async action(broker: ServiceBroker) {
			console.log(JSON.stringify(await broker.call("patients.outboxStatus"), null, 2));
		}
	},
	{
		command: "seed",
		description: "Load the demo data set through the gateway (SEED_URL, default the local one); safe to run again",
		options: [
			{ option: "--patients <count>", description: "How many demo patients (default 30)" },
			{ option: "--appointments <count>", description: "How many demo appointments (default 25)" }
		],
		async action(_broker: ServiceBroker, args) {
			const { options = {} } = args as unknown as { options?: Record<string, string | number> };
			await seedConfigured(Object.entries(options).flatMap(([name, value]) => [`--${name}`, String(value)]));
		}
	},
	{
		command: "audit-set-aside [replay]",
		description: "Audit records the audit service refused, set aside by each gateway (id, when, why, count); with `replay`, ship them again",
		async action(broker: ServiceBroker, args) {
			const { replay } = args as unknown as { replay?: string };
			if (replay !== undefined && replay !== "replay") {
				console.log("Usage: audit-set-aside [replay]");
				return;
			}
			const answers = await askEveryGateway(broker, replay ? "api.auditReplaySetAside" : "api.auditSetAside");
			console.log(Object.keys(answers).length ? JSON.stringify(answers, null, 2) : "No gateway (api) node is running.");
		}
	}
];
