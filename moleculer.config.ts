import type { Server } from "node:http";
import { type BrokerOptions, MetricReporters } from "moleculer";
import { config } from "./lib/infra/config";
import { DatabaseUnavailableMiddleware } from "./lib/infra/db-errors";
import { type PrometheusFormat, collectForScrape, registerEventLoopLag, renderPrometheus } from "./lib/infra/metrics";
import { stopEmbeddedPostgres } from "./lib/infra/postgres";
import { OperatorAuditMiddleware, OperatorIdentityMiddleware } from "./lib/infra/operator-audit";
import { replCommands } from "./lib/tooling/repl-commands";
import { RequestContextMiddleware, requestContext } from "./lib/infra/request-context";
import { nodeIdFor, runnerServices, tracingServiceFor } from "./lib/infra/runner-services";
import { TracingMiddleware } from "./lib/infra/tracing-middleware";
import { transporterOptions } from "./lib/infra/transporter";
import { InputValidator } from "./lib/infra/validator";

type ReporterInternals = { server: Server; registry: { broker: { fatal(message: string, err?: Error): void } } };

/**
 * Moleculer's Prometheus reporter drops `host` when the port is 0 (any free
 * port, as the tests ask) and then listens on every interface; this one keeps
 * it. A port it cannot listen on (in use) was an unhandled error event and a
 * stack trace: here it stops the node with the setting and address to change.
 * It also samples the event loop's lag, reads the gauges that are read at a
 * scrape, and writes histograms as Prometheus defines them (renderPrometheus).
 */
class PrometheusReporter extends MetricReporters.Prometheus {
	private stopLagSampler?: () => void;

	constructor(options: NonNullable<ConstructorParameters<typeof MetricReporters.Prometheus>[0]>) {
		// A copy: Moleculer's constructor edits the options it is given, which every broker of this config shares.
		super({ ...options });
		this.opts.host = options.host;
	}

	override init(registry: Parameters<MetricReporters.Prometheus["init"]>[0]): void {
		super.init(registry);
		this.stopLagSampler = registerEventLoopLag(registry);
		const { server } = this as unknown as ReporterInternals;
		server.once("error", (err: NodeJS.ErrnoException) => {
			const where = `${this.opts.host ?? "*"}:${this.opts.port}`;
			(this as unknown as ReporterInternals).registry.broker.fatal(`The metrics endpoint cannot listen on ${where} (${err.code ?? err.message}): set METRICS_PORT (or METRICS_HOST), or METRICS_PORT=off`, err);
		});
	}

	override generatePrometheusResponse(): string {
		collectForScrape(this.registry);
		return renderPrometheus(this.registry, this as unknown as PrometheusFormat);
	}

	override stop(): Promise<void> {
		this.stopLagSampler?.();
		// A server that never listened has nothing to close, and closing it would throw.
		return (this as unknown as ReporterInternals).server.listening ? super.stop() : Promise.resolve();
	}
}
MetricReporters.register("MedSyncPrometheus", PrometheusReporter as never);

// Read before SERVICES is rewritten below.
const nodeID = nodeIdFor(process.env.SERVICES);
const tracingService = config.tracingServiceName ?? tracingServiceFor(process.env.SERVICES);
// moleculer-runner loads this file before it reads SERVICES; a service with modules in services/<name>/ needs its file named.
if (process.env.SERVICES) process.env.SERVICES = runnerServices(process.env.SERVICES, process.env.SERVICEDIR);

/**
 * Broker options for every MedSync node. With TRANSPORTER unset, all services
 * share one process; with it set (e.g. nats://127.0.0.1:4222), each process is a
 * node that finds the others through the transporter, with no registry server.
 */
const brokerConfig: BrokerOptions = {
	namespace: config.namespace,
	// Names the node's services, which the default (host and pid) does not.
	nodeID,
	transporter: transporterOptions(config),
	logger:
		config.logFormat === "pretty"
			? { type: "Console", options: { level: config.logLevel, formatter: "short", colors: process.stdout.isTTY } }
			: {
					type: "Pino",
					options: {
						level: config.logLevel,
						pino: {
							// Every line written while handling a request carries its id.
							options: { mixin: () => ({ requestId: requestContext.getStore()?.requestId }) }
						}
					}
				},
	serializer: "JSON",
	requestTimeout: 10_000,
	// A node that vanishes without saying goodbye (killed, cut off) leaves discovery within ten seconds.
	heartbeatInterval: 3,
	heartbeatTimeout: 10,
	retryPolicy: { enabled: false },
	registry: { strategy: "RoundRobin", preferLocal: true },
	circuitBreaker: { enabled: false },
	// fastest-validator, plus the rules every input shares: no control characters, null only where declared.
	validator: new InputValidator(),
	errorHandler: null,
	// Innermost first: a database outage becomes a 503 inside the request's context, so its warning carries the request id;
	// an operator's audited call is recorded with that 503 as its outcome; a REPL's calls name the operator; the span covers it all.
	middlewares: [DatabaseUnavailableMiddleware(), RequestContextMiddleware, OperatorAuditMiddleware, OperatorIdentityMiddleware(false), TracingMiddleware(tracingService)],
	// MedSync's commands in the REPL of `npm run repl` and of `npm run dev` (moleculer-runner --repl).
	replOptions: { customCommands: replCommands },
	// Request rate, latency and errors per action (Moleculer's own), plus MedSync's outbox depth and consumer lag.
	metrics: {
		enabled: config.metricsPort !== undefined,
		// Registered above; Moleculer's typings name only its own reporters.
		reporter: [{ type: "MedSyncPrometheus" as "Prometheus", options: { host: config.metricsHost, port: config.metricsPort, path: "/metrics" } }]
	},
	// Spans are OpenTelemetry's, made by TracingMiddleware (TRACING_EXPORTER): Moleculer's own tracer speaks no W3C trace context.
	tracing: { enabled: false },

	async stopped() {
		await stopEmbeddedPostgres();
	}
};

export = brokerConfig;
