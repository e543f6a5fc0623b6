import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { portOpen } from "../../lib/tooling/network";
import { canConnect } from "../../lib/infra/postgres-probe";

const LOCAL_SERVER = "postgres://postgres@127.0.0.1:5432/postgres";
const KAFKA_TEST_DATA_DIR = path.resolve(".data/test-kafka");

/** NATS_URL, the machine's NATS on 4222, or a nats-server started here for the run. */
async function setUpNats(): Promise<void> {
	if (process.env.NATS_URL) return;
	if (await portOpen("127.0.0.1", 4222)) {
		process.env.NATS_URL = "nats://127.0.0.1:4222";
		return;
	}
	if (spawnSync("nats-server", ["--version"]).status !== 0) {
		throw new Error("The multi-node tests need NATS: run a nats-server on 127.0.0.1:4222, set NATS_URL, or install nats-server");
	}
	const port = 14222 + Math.floor(Math.random() * 1000);
	const server = spawn("nats-server", ["-a", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
	(globalThis as { natsServer?: typeof server }).natsServer = server;
	for (let i = 0; i < 50 && !(await portOpen("127.0.0.1", port)); i++) await new Promise(r => setTimeout(r, 100));
	process.env.NATS_URL = `nats://127.0.0.1:${port}`;
}

/**
 * A Kafka broker for the Kafka suite, in KAFKA_TEST_BROKERS: KAFKA_BROKERS if set,
 * else one started here by the project's script (port 19092, data under
 * .data/test-kafka, wiped first). Other suites run without Kafka, on the
 * service-broker fallback, so only the Kafka suite sees (and may restart) it.
 */
function setUpKafka(): void {
	if (process.env.KAFKA_BROKERS) {
		process.env.KAFKA_TEST_BROKERS = process.env.KAFKA_BROKERS;
		delete process.env.KAFKA_BROKERS;
		return;
	}
	const env = { ...process.env, DATA_DIR: KAFKA_TEST_DATA_DIR, KAFKA_PORT: "19092" };
	if (spawnSync("scripts/kafka.sh", ["status"], { env }).status !== 0) {
		fs.rmSync(path.join(KAFKA_TEST_DATA_DIR, "kafka", "data"), { recursive: true, force: true });
		const started = spawnSync("scripts/kafka.sh", ["start"], { env, stdio: "inherit" });
		if (started.status !== 0) throw new Error("Could not start the test Kafka broker (scripts/kafka.sh start)");
		process.env.KAFKA_TEST_OWNED = "1";
	}
	process.env.KAFKA_TEST_BROKERS = "127.0.0.1:19092";
	process.env.KAFKA_TEST_DATA_DIR = KAFKA_TEST_DATA_DIR;
}

/**
 * Picks the PostgreSQL server for the run (DATABASE_URL, the machine's server on
 * 5432, or an embedded one) and a database prefix no other run uses, so every
 * run works in throwaway databases.
 */
export default async function globalSetup(): Promise<void> {
	await setUpNats();
	setUpKafka();
	process.env.DATABASE_PREFIX = `medsync_test_${crypto.randomBytes(4).toString("hex")}`;
	process.env.ADMIN_EMAIL = "admin@test.medsync.local";
	process.env.ADMIN_PASSWORD = crypto.randomBytes(18).toString("base64url");
	if (process.env.DATABASE_URL) return;
	if (await canConnect(LOCAL_SERVER)) {
		process.env.DATABASE_URL = LOCAL_SERVER;
		return;
	}
	process.env.DATA_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-test-"));
	// Run as root, PostgreSQL runs as the postgres user, who must be able to enter the directory.
	fs.chmodSync(process.env.DATA_DIR, 0o755);
	process.env.EMBEDDED_POSTGRES_PORT ??= "54339";
	// Required only now: lib/config reads DATA_DIR and EMBEDDED_POSTGRES_PORT when first loaded.
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const { postgresServerUrl } = require("../../lib/infra/postgres") as typeof import("../../lib/infra/postgres");
	process.env.DATABASE_URL = await postgresServerUrl(console);
}
