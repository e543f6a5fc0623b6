import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type BrokerOptions, ServiceBroker } from "moleculer";
import { loadConfig } from "../../lib/infra/config";
import { developmentCa, developmentCertificate } from "../../lib/infra/dev-certificates";
import { portOpen } from "../../lib/tooling/network";
import { transporterOptions } from "../../lib/infra/transporter";
import { eventually, freePort } from "../helpers/node-process";

/**
 * The service bus with credentials: a nats-server of this file's own, started
 * with authorization (and TLS), and brokers configured from the settings
 * MedSync reads (NATS_USER, NATS_PASSWORD, NATS_TOKEN, NATS_TLS_*), as
 * moleculer.config.ts configures every node.
 */
const NATS_SERVER = fs.existsSync("/usr/sbin/nats-server") ? "/usr/sbin/nats-server" : "nats-server";

const servers: ChildProcess[] = [];
const brokers: ServiceBroker[] = [];
const namespace = `test-${crypto.randomBytes(4).toString("hex")}`;

afterAll(async () => {
	try {
		// Some never started (refused by the server): their stop may fail too.
		await Promise.allSettled(brokers.map(broker => broker.stop()));
	} finally {
		for (const server of servers) server.kill();
	}
});

/** A nats-server on a free loopback port with `args`; its nats:// URL once it listens. */
async function natsServer(args: string[]): Promise<string> {
	if (spawnSync(NATS_SERVER, ["--version"]).status !== 0) throw new Error("This suite starts nats-server: install it (Debian: apt-get install nats-server)");
	const port = await freePort();
	const server = spawn(NATS_SERVER, ["-a", "127.0.0.1", "-p", String(port), ...args], { stdio: "ignore" });
	servers.push(server);
	await eventually(async () => ((await portOpen("127.0.0.1", port)) ? true : undefined), 10_000, "nats-server");
	return `nats://127.0.0.1:${port}`;
}

/** A broker configured from these settings, with a service of its own answering `<name>.whoami`. */
function brokerWith(name: string, env: Record<string, string>): ServiceBroker {
	const transporter = transporterOptions(loadConfig(env)) as string | { type: string; options: object };
	const broker = new ServiceBroker({
		namespace,
		nodeID: `${name}-${namespace}`,
		logger: false,
		// A TLS handshake the server rejects late would otherwise wait out the client's 20 s connect timeout.
		transporter: (typeof transporter === "object" ? { ...transporter, options: { ...transporter.options, timeout: 3000 } } : transporter) as BrokerOptions["transporter"],
		// One attempt: a refused connection is the answer, not something to wait out.
		transit: { disableReconnect: true }
	});
	broker.createService({ name, actions: { whoami: () => broker.nodeID } });
	brokers.push(broker);
	return broker;
}

/** Two nodes with `settings` start, find each other over the bus, and one calls the other's action. */
async function expectNodesTalk(prefix: string, settings: Record<string, string>): Promise<void> {
	const billing = brokerWith(`${prefix}-billing`, settings);
	const gateway = brokerWith(`${prefix}-gateway`, settings);
	await Promise.all([billing.start(), gateway.start()]);
	await gateway.waitForServices([`${prefix}-billing`], 10_000);
	expect(await gateway.call(`${prefix}-billing.whoami`)).toBe(billing.nodeID);
}

/** Starts a broker that must not get onto the bus; the error its connection ended with. */
async function refusedConnection(broker: ServiceBroker): Promise<Error> {
	const failed = new Promise<Error>(resolve => broker.localBus.once("$transporter.error", ({ error }: { error: Error }) => resolve(error)));
	// Without a connection start() never settles; the transporter's error is the outcome.
	void broker.start();
	const error = await failed;
	expect(broker.transit?.connected).toBe(false);
	return error;
}

describe("NATS with a user and password", () => {
	let url: string;
	const password = crypto.randomBytes(18).toString("base64url");

	beforeAll(async () => {
		url = await natsServer(["--user", "medsync", "--pass", password]);
	});

	test("nodes with the credentials join and call each other's actions", async () => {
		await expectNodesTalk("pw", { TRANSPORTER: url, NATS_USER: "medsync", NATS_PASSWORD: password });
	});

	test("a node without credentials, or with a wrong password, cannot connect", async () => {
		expect((await refusedConnection(brokerWith("pw-anonymous", { TRANSPORTER: url }))).message).toMatch(/authorization violation/i);
		const wrong = brokerWith("pw-wrong", { TRANSPORTER: url, NATS_USER: "medsync", NATS_PASSWORD: `${password}x` });
		expect((await refusedConnection(wrong)).message).toMatch(/authorization violation/i);
	});
});

describe("NATS over TLS with client certificates and a token", () => {
	let url: string;
	let tls: { NATS_TLS_CA: string; NATS_TLS_CERT: string; NATS_TLS_KEY: string };
	const token = crypto.randomBytes(24).toString("hex");

	beforeAll(async () => {
		const pki = "nats-test-pki";
		const ca = await developmentCa(pki);
		const server = await developmentCertificate(pki, "server", { server: ["localhost", "127.0.0.1"] });
		const client = await developmentCertificate(pki, "client", { client: "medsync-node" });
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-nats-tls-"));
		const file = (name: string, pem: string) => {
			fs.writeFileSync(path.join(dir, name), pem, { mode: 0o600 });
			return path.join(dir, name);
		};
		url = await natsServer([
			"--auth", token,
			"--tlsverify",
			"--tlscert", file("server.pem", server.cert),
			"--tlskey", file("server.key", server.key),
			"--tlscacert", file("ca.pem", ca.cert)
		]);
		// The CA as a file path, the client pair as PEM: both forms the settings take.
		tls = { NATS_TLS_CA: path.join(dir, "ca.pem"), NATS_TLS_CERT: client.cert, NATS_TLS_KEY: client.key };
	});

	test("nodes with the CA, a client certificate and the token join and call each other's actions", async () => {
		await expectNodesTalk("tls", { TRANSPORTER: url, NATS_TOKEN: token, ...tls });
	});

	test("without the token, without a client certificate, or without trusting the server's CA, a node cannot connect", async () => {
		expect((await refusedConnection(brokerWith("tls-no-token", { TRANSPORTER: url, ...tls }))).message).toMatch(/authorization violation/i);
		const noClientCertificate = brokerWith("tls-no-cert", { TRANSPORTER: url, NATS_TOKEN: token, NATS_TLS_CA: tls.NATS_TLS_CA });
		// Under TLS 1.3 the server drops the connection after the handshake, which the client sees as its connect timeout.
		expect((await refusedConnection(noClientCertificate)).message).toMatch(/timeout|certificate/i);
		const untrusting = brokerWith("tls-untrusting", { TRANSPORTER: url, NATS_TOKEN: token, NATS_TLS_CERT: tls.NATS_TLS_CERT, NATS_TLS_KEY: tls.NATS_TLS_KEY });
		expect((await refusedConnection(untrusting)).message).toMatch(/certificate/i);
	});
});
