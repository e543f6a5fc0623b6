import type { BrokerOptions, ServiceBroker } from "moleculer";
import { seedConfigured } from "./seed";

type ReplCommand = NonNullable<NonNullable<BrokerOptions["replOptions"]>["customCommands"]>[number];

/** A command's parsed arguments and options, as moleculer-repl hands them to a custom command. */
type ReplArgs = Record<string, string | undefined> & { options?: Record<string, string | number | boolean> };

/**
 * Asks every node that runs an action `matches` picks for its answer: each
 * gateway keeps its own audit journal, each consuming node its own Kafka consumers.
 */
async function askEveryNode(broker: ServiceBroker, matches: (action: string) => boolean): Promise<{ nodeID: string; answer: unknown }[]> {
	const endpoints = broker.registry
		.getActionList({ onlyAvailable: true, skipInternal: true, withEndpoints: true })
		.filter(item => matches(item.name))
		.flatMap(item => (item.endpoints ?? []).filter(endpoint => endpoint.available).map(endpoint => ({ name: item.name, nodeID: endpoint.nodeID })));
	const answers = await Promise.all(
		endpoints.map(async ({ name, nodeID }) => ({ nodeID, answer: await broker.call(name, {}, { nodeID }).catch(failure) }))
	);
	return answers.sort((a, b) => a.nodeID.localeCompare(b.nodeID));
}

/** Each gateway's answer to `action`, by node id. */
async function askEveryGateway(broker: ServiceBroker, action: string): Promise<void> {
	const answers = await askEveryNode(broker, name => name === action);
	console.log(answers.length ? JSON.stringify(Object.fromEntries(answers.map(a => [a.nodeID, a.answer])), null, 2) : "No gateway (api) node is running.");
}

const print = (value: unknown) => console.log(JSON.stringify(value, null, 2));

/** A refused call as a command prints it: the message, and what a validation error says of each field. */
function failure(err: Error & { data?: unknown }): { error: string; fields?: string[] } {
	const fields = Array.isArray(err.data) ? err.data.map(item => (item as { message?: unknown } | null)?.message).filter((m): m is string => typeof m === "string") : [];
	return fields.length ? { error: err.message, fields } : { error: err.message };
}

/**
 * MedSync's own commands in the Moleculer REPL, beside its built-in ones: the
 * same in `npm run repl` and `npm run dev` (both read them from the broker
 * options in moleculer.config.ts).
 */
export const replCommands: ReplCommand[] = [
	{
		command: "outbox [replay]",
		description:
			"Patient events waiting to be published, and the ones failing; `outbox replay --failed` sends the failing ones now with their attempts started over, `outbox replay --from <id>` sends the events from that outbox id on again (consumers skip what they have applied)",
		options: [
			{ option: "--failed", description: "With replay: the pending events that failed" },
			{ option: "--from <id>", description: "With replay: the events from this outbox id on, sent or not" }
		],
		async action(broker: ServiceBroker, args) {
			const { replay, options = {} } = args as unknown as ReplArgs;
			if (replay === undefined) return print(await broker.call("patients.outboxStatus").catch(failure));
			if (replay !== "replay" || Boolean(options.failed) === (options.from !== undefined)) {
				console.log("Usage: outbox | outbox replay --failed | outbox replay --from <outbox id>");
				return;
			}
			const params = options.failed ? { failed: true } : { from: String(options.from) };
			print(await broker.call("patients.outboxReplay", params).catch(failure));
		}
	},
	{
		command: "audit-backlog",
		description: "Each gateway's audit journal: records not yet in the audit trail, how long the oldest has waited (s), and how many are set aside",
		action: (broker: ServiceBroker) => askEveryGateway(broker, "api.auditBacklog")
	},
	{
		command: "audit-set-aside [replay]",
		description: "Audit records the audit service refused, set aside by each gateway (id, when, why, count); with `replay`, ship them again",
		async action(broker: ServiceBroker, args) {
			const { replay } = args as unknown as ReplArgs;
			if (replay !== undefined && replay !== "replay") {
				console.log("Usage: audit-set-aside [replay]");
				return;
			}
			await askEveryGateway(broker, replay ? "api.auditReplaySetAside" : "api.auditSetAside");
		}
	},
	{
		command: "kafka-lag",
		description: "Kafka consumer lag of every consuming service, by consumer group, topic and partition (null: a partition that node is not assigned)",
		async action(broker: ServiceBroker) {
			// By node: one runs a service under `npm run stack`, all of them under `npm run dev`; each consumer names its group.
			const byNode: Record<string, unknown[]> = {};
			for (const { nodeID, answer } of await askEveryNode(broker, name => name.endsWith(".kafkaLag"))) {
				(byNode[nodeID] ??= []).push(...(Array.isArray(answer) ? answer : [answer]));
			}
			const consuming = Object.entries(byNode).filter(([, lags]) => lags.length > 0);
			console.log(
				consuming.length
					? JSON.stringify(Object.fromEntries(consuming), null, 2)
					: "No Kafka consumer is running (KAFKA_BROKERS unset: events go over the service broker; or the consumers are still joining)."
			);
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
			const { options = {} } = args as unknown as ReplArgs;
			await seedConfigured(Object.entries(options).flatMap(([name, value]) => [`--${name}`, String(value)]));
		}
	}
];
