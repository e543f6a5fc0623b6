import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { config } from "../lib/infra/config";
import { portOpen } from "../lib/tooling/network";
import { NODE_FLAGS } from "../lib/infra/node-flags";
import { PROJECT_ROOT } from "../lib/infra/paths";
import { postgresServerUrl, stopEmbeddedPostgres } from "../lib/infra/postgres";

/**
 * `npm run stack`: every service as its own process (its own Moleculer node)
 * over the real NATS, with a real Kafka broker and PostgreSQL, the way compose
 * runs them. A service that dies is started again; Ctrl-C stops them all.
 */

const SERVICES = ["auth", "audit", "patients", "billing", "analytics", "doctors", "appointments", "fhir", "api"];
const RUNNER = path.join(PROJECT_ROOT, "node_modules/moleculer/bin/moleculer-runner.js");
const CONFIG = path.join(PROJECT_ROOT, "dist/moleculer.config.js");
const KAFKA_SCRIPT = path.join(PROJECT_ROOT, "scripts/kafka.sh");

const log = (line: string) => console.log(`[stack] ${line}`);

/** True when the service at a URL (or host:port) accepts a TCP connection. */
function answers(url: string): Promise<boolean> {
	const { hostname, port } = new URL(url.includes("://") ? url : `tcp://${url}`);
	return portOpen(hostname, Number(port));
}

async function main(): Promise<void> {
	const transporter = config.transporter ?? "nats://127.0.0.1:4222";
	if (!(await answers(transporter))) {
		throw new Error(`NATS does not answer at ${transporter}: start nats-server (e.g. nats-server -js) or set TRANSPORTER`);
	}

	let startedKafka = false;
	let kafkaBrokers = config.kafkaBrokers?.join(",");
	if (!kafkaBrokers) {
		startedKafka = spawnSync(KAFKA_SCRIPT, ["status"]).status !== 0;
		const start = spawnSync(KAFKA_SCRIPT, ["start"], { stdio: "inherit" });
		if (start.status !== 0) throw new Error("Could not start Kafka (scripts/kafka.sh start)");
		kafkaBrokers = `127.0.0.1:${process.env.KAFKA_PORT ?? "9092"}`;
	}

	// One PostgreSQL for all: DATABASE_URL, or the embedded server, started here and shared.
	const databaseUrl = await postgresServerUrl({ info: log, warn: log });

	let stopping = false;
	const children = new Map<string, ChildProcess>();
	const env = {
		...process.env,
		TRANSPORTER: transporter,
		KAFKA_BROKERS: kafkaBrokers,
		DATABASE_URL: databaseUrl,
		// Every node runs on this machine: its internal listeners need not face the network.
		BILLING_GRPC_HOST: process.env.BILLING_GRPC_HOST ?? "127.0.0.1",
		METRICS_HOST: process.env.METRICS_HOST ?? "127.0.0.1",
		SERVICEDIR: path.join(PROJECT_ROOT, "dist/services")
	};

	const startService = (name: string, index: number) => {
		const metricsPort = config.metricsPort === undefined ? "off" : config.metricsPort === 0 ? "0" : String(config.metricsPort + index);
		const child = spawn(process.execPath, [...NODE_FLAGS, RUNNER, "--config", CONFIG], {
			cwd: PROJECT_ROOT,
			env: { ...env, SERVICES: name, METRICS_PORT: metricsPort },
			stdio: ["ignore", "pipe", "pipe"]
		});
		children.set(name, child);
		const ports = [name === "api" && `HTTP ${config.port}`, name === "billing" && `gRPC ${config.billingGrpcPort}`, `metrics ${metricsPort}`].filter(Boolean);
		log(`${name} pid ${child.pid} (${ports.join(", ")})`);
		const prefix = (chunk: Buffer) =>
			chunk
				.toString()
				.split("\n")
				.filter(Boolean)
				.forEach(line => console.log(`[${name}] ${line}`));
		child.stdout?.on("data", prefix);
		child.stderr?.on("data", prefix);
		child.once("exit", (code, signal) => {
			if (stopping) return;
			log(`${name} exited (${signal ?? code}); starting it again`);
			setTimeout(() => !stopping && startService(name, index), 1000);
		});
	};
	SERVICES.forEach(startService);
	log(`all services starting; the gateway will listen on http://127.0.0.1:${config.port}`);

	const stop = async () => {
		if (stopping) return;
		stopping = true;
		log("stopping");
		await Promise.all(
			[...children.values()].map(
				child =>
					new Promise<void>(resolve => {
						if (child.exitCode !== null || child.signalCode !== null) return resolve();
						const kill = setTimeout(() => child.kill("SIGKILL"), 15_000);
						child.once("exit", () => (clearTimeout(kill), resolve()));
						child.kill("SIGTERM");
					})
			)
		);
		await stopEmbeddedPostgres();
		if (startedKafka) spawnSync(KAFKA_SCRIPT, ["stop"], { stdio: "inherit" });
		log("stopped");
		process.exit(0);
	};
	// The embedded PostgreSQL's package (through async-exit-hook) ends the process at the first signal, before the children
	// have stopped: the stack stops them itself, then the server, and only then exits.
	for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
		process.removeAllListeners(signal);
		process.on(signal, stop);
	}
}

main().catch(err => {
	console.error(`[stack] ${(err as Error).message}`);
	process.exit(1);
});
