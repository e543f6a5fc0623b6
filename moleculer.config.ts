import { type BrokerOptions, Validators } from "moleculer";
import { config } from "./lib/config";
import { stopEmbeddedPostgres } from "./lib/postgres";

/**
 * Broker options for every MedSync node. With TRANSPORTER unset, all services
 * share one process; with it set (e.g. nats://127.0.0.1:4222), each process is a
 * node that finds the others through the transporter, with no registry server.
 */
const brokerConfig: BrokerOptions = {
	namespace: config.namespace,
	nodeID: null,
	// A URL string selects and configures the transporter (nats://… → NATS).
	transporter: (config.transporter ?? null) as BrokerOptions["transporter"],
	logger: {
		type: "Console",
		options: { level: config.logLevel, formatter: "short", colors: process.stdout.isTTY }
	},
	serializer: "JSON",
	requestTimeout: 10_000,
	retryPolicy: { enabled: false },
	registry: { strategy: "RoundRobin", preferLocal: true },
	circuitBreaker: { enabled: false },
	validator: new Validators.Fastest({
		messages: { objectStrict: "Unknown field(s): {actual}. Allowed: {expected}." }
	}),
	errorHandler: null,
	metrics: { enabled: false },
	tracing: { enabled: false },

	async stopped() {
		await stopEmbeddedPostgres();
	}
};

export = brokerConfig;
