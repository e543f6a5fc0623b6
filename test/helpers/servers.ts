import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { PROJECT_ROOT } from "../../lib/infra/paths";
import { eventually, freePort, portOpen } from "../../lib/tooling/network";

/**
 * The servers only some integration suites use (NATS, a Kafka broker), started by
 * the first suite of a run that asks for one and found by the others; the global
 * teardown stops what the run started (stopRunServers). One given in the
 * environment (NATS_URL, KAFKA_BROKERS) is used as it is, never started or
 * stopped. Suites run side by side in several workers: they agree through files
 * in the run's directory, TEST_RUN_DIR, made by the global setup.
 */

/** How long a suite may wait for a server: a first Kafka start fetches the broker with Maven. */
export const SERVER_WAIT_MS = 600_000;

function runFile(name: string): string {
	const dir = process.env.TEST_RUN_DIR;
	if (!dir) throw new Error("TEST_RUN_DIR is unset: the integration tier's global setup makes it");
	return path.join(dir, name);
}

/** Runs `work` holding the run's lock `name`: a directory, which only one process can create. */
async function locked<T>(name: string, work: () => Promise<T>): Promise<T> {
	const lock = runFile(`${name}.lock`);
	const deadline = Date.now() + SERVER_WAIT_MS;
	for (;;) {
		try {
			fs.mkdirSync(lock);
			break;
		} catch (err) {
			if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
			if (Date.now() > deadline) throw new Error(`Waited too long for ${lock}`, { cause: err });
			await sleep(100);
		}
	}
	try {
		return await work();
	} finally {
		fs.rmdirSync(lock);
	}
}

/** The NATS server for the suites that use one: NATS_URL, the machine's on 4222, or a nats-server started for the run. */
export async function natsUrl(): Promise<string> {
	if (process.env.NATS_URL) return process.env.NATS_URL;
	return locked("nats", async () => {
		const known = runFile("nats.url");
		if (fs.existsSync(known)) return fs.readFileSync(known, "utf8");
		let url = "nats://127.0.0.1:4222";
		if (!(await portOpen("127.0.0.1", 4222))) {
			const port = await freePort();
			// Detached: it serves the whole run, past the end of this worker.
			const server = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore", detached: true });
			await new Promise<void>((resolve, reject) => server.once("spawn", resolve).once("error", reject)).catch((err: Error) => {
				throw new Error(`Some suites need NATS: run a nats-server on 127.0.0.1:4222, set NATS_URL, or install nats-server (${err.message})`);
			});
			server.unref();
			fs.writeFileSync(runFile("nats.pid"), String(server.pid));
			await eventually(async () => ((await portOpen("127.0.0.1", port)) ? true : undefined), 10_000, "nats-server");
			url = `nats://127.0.0.1:${port}`;
		}
		fs.writeFileSync(known, url);
		return url;
	});
}

/** The test broker's port, away from a development broker's 9092; a run beside another run sets another. */
const KAFKA_TEST_PORT = Number(process.env.KAFKA_TEST_PORT ?? 19092);

const KAFKA_TEST_DATA_DIR = path.join(PROJECT_ROOT, `.data/test-kafka-${KAFKA_TEST_PORT}`);
const KAFKA_START_FAILED = "Could not start the test Kafka broker (scripts/kafka.sh start; its output is above)";

/** scripts/kafka.sh on the test broker, with its port and its data. True if it succeeded. */
function kafkaScript(command: "start" | "stop"): Promise<boolean> {
	const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: KAFKA_TEST_DATA_DIR, KAFKA_PORT: String(KAFKA_TEST_PORT) };
	delete env.KAFKA_BROKERS;
	const script = spawn(path.join(PROJECT_ROOT, "scripts/kafka.sh"), [command], { env, stdio: ["ignore", "inherit", "inherit"] });
	return new Promise(resolve => script.once("exit", code => resolve(code === 0)));
}

export interface TestKafka {
	/** host:port of the broker. */
	brokers: string;
	/** Whether this run started the broker: only then may a suite stop it, in `alone`. */
	startedHere: boolean;
	/** Runs `work` once no other suite uses the broker, holding off any that asks meanwhile: `work` may stop and start it. */
	alone<T>(work: (broker: { stop(): Promise<void>; start(): Promise<void> }) => Promise<T>): Promise<T>;
	/** The suite is done with the broker: for its afterAll. */
	release(): void;
}

/**
 * The Kafka broker for a suite that uses one: KAFKA_BROKERS (test/helpers/env.ts
 * hands it over as KAFKA_TEST_BROKERS) if given, else the run's own test broker
 * on KAFKA_TEST_PORT, started (its data wiped) by the first suite that asks. A
 * broker already answering there that this run did not start is refused rather
 * than shared, since no one could say whose it is or whether it may be stopped.
 */
export async function useKafka(): Promise<TestKafka> {
	const given = process.env.KAFKA_TEST_BROKERS;
	const users = runFile("kafka.users");
	const aloneMarker = runFile("kafka.alone");
	const user = path.join(users, `${process.pid}-${crypto.randomBytes(4).toString("hex")}`);
	const brokers = given ?? `127.0.0.1:${KAFKA_TEST_PORT}`;
	// Waits out a suite that has the broker to itself, then counts this one in, under the lock `alone` takes too.
	for (const deadline = Date.now() + SERVER_WAIT_MS; ; await sleep(500)) {
		if (Date.now() > deadline) throw new Error("Waited too long for a suite that had the Kafka broker to itself");
		const counted = await locked("kafka", async () => {
			if (fs.existsSync(aloneMarker)) return false;
			if (fs.existsSync(runFile("kafka.failed"))) throw new Error(KAFKA_START_FAILED);
			if (!given && !fs.existsSync(runFile("kafka.started"))) await startTestKafka();
			fs.mkdirSync(users, { recursive: true });
			fs.writeFileSync(user, "");
			return true;
		});
		if (counted) break;
	}
	const startedHere = !given;
	return {
		brokers,
		startedHere,
		async alone(work) {
			if (!startedHere) throw new Error("Only a broker this run started may be stopped");
			await locked("kafka", async () => fs.mkdirSync(aloneMarker));
			try {
				await eventually(async () => (fs.readdirSync(users).length === 1 ? true : undefined), SERVER_WAIT_MS, "the other suites to be done with Kafka");
				return await work({
					stop: async () => {
						if (!(await kafkaScript("stop"))) throw new Error("scripts/kafka.sh stop failed");
					},
					start: async () => {
						if (!(await kafkaScript("start"))) throw new Error("scripts/kafka.sh start failed");
					}
				});
			} finally {
				fs.rmdirSync(aloneMarker);
			}
		},
		release: () => fs.rmSync(user, { force: true })
	};
}

async function startTestKafka(): Promise<void> {
	if (await portOpen("127.0.0.1", KAFKA_TEST_PORT)) {
		throw new Error(
			`Something already answers on 127.0.0.1:${KAFKA_TEST_PORT}, where the tests start their Kafka broker: ` +
				`set KAFKA_BROKERS=127.0.0.1:${KAFKA_TEST_PORT} to use it as it is, set KAFKA_TEST_PORT to a free port, or stop it ` +
				`(one an earlier run left: KAFKA_PORT=${KAFKA_TEST_PORT} DATA_DIR=${path.relative(PROJECT_ROOT, KAFKA_TEST_DATA_DIR)} scripts/kafka.sh stop)`
		);
	}
	fs.rmSync(path.join(KAFKA_TEST_DATA_DIR, "kafka", "data"), { recursive: true, force: true });
	// Marked before it starts: a start that fails half-way may still leave a broker for the teardown to stop.
	fs.writeFileSync(runFile("kafka.started"), "");
	if (!(await kafkaScript("start"))) {
		fs.writeFileSync(runFile("kafka.failed"), "");
		throw new Error(KAFKA_START_FAILED);
	}
}

/** For the global teardown: stops what the run started, and removes the run's directory. */
export async function stopRunServers(): Promise<void> {
	if (!process.env.TEST_RUN_DIR) return;
	const pidFile = runFile("nats.pid");
	if (fs.existsSync(pidFile)) {
		try {
			process.kill(Number(fs.readFileSync(pidFile, "utf8")));
		} catch {
			// Gone already.
		}
	}
	if (fs.existsSync(runFile("kafka.started"))) await kafkaScript("stop");
	fs.rmSync(process.env.TEST_RUN_DIR, { recursive: true, force: true });
}
