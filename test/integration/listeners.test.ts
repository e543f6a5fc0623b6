import crypto from "node:crypto";
import { once } from "node:events";
import net, { type AddressInfo, type Server } from "node:net";
import { ServiceBroker } from "moleculer";
import brokerConfig from "../../moleculer.config";
import { portOpen } from "../../lib/tooling/network";
import { type NodeProcess, eventually, freePort, startNode } from "../helpers/node-process";
import { natsUrl } from "../helpers/servers";

/**
 * Where each listener binds (the gateway, billing's gRPC server, the metrics
 * endpoint), on the built code run as production runs it. 127.0.0.2 is another
 * loopback address: a listener answers there only if it listens on every
 * interface, not just on 127.0.0.1.
 */
const OTHER_ADDRESS = "127.0.0.2";

let node: NodeProcess | undefined;

afterEach(async () => {
	await node?.stop();
	node = undefined;
});

/** Starts the gateway and billing in one process with `env`; which listeners answer at OTHER_ADDRESS. */
async function reachableFromElsewhere(env: Record<string, string>): Promise<Record<string, boolean>> {
	const ports = { gateway: await freePort(), grpc: await freePort(), metrics: await freePort() };
	node = startNode(["api", "billing"], {
		...env,
		PORT: String(ports.gateway),
		BILLING_GRPC_PORT: String(ports.grpc),
		METRICS_PORT: String(ports.metrics)
	});
	const ready = async () => ((await Promise.all(Object.values(ports).map(port => portOpen("127.0.0.1", port)))).every(Boolean) ? true : undefined);
	await eventually(ready, 30_000, "the three listeners on 127.0.0.1");
	const entries = await Promise.all(Object.entries(ports).map(async ([name, port]) => [name, await portOpen(OTHER_ADDRESS, port)] as const));
	return Object.fromEntries(entries);
}

describe("listener addresses", () => {
	test("with every service in one process, gRPC and metrics listen on 127.0.0.1 only; the gateway on every interface", async () => {
		expect(await reachableFromElsewhere({ TRANSPORTER: "" })).toEqual({ gateway: true, grpc: false, metrics: false });
	});

	test("with a transporter they listen on every interface, unless told otherwise (HOST, METRICS_HOST)", async () => {
		const env = {
			TRANSPORTER: await natsUrl(),
			NAMESPACE: `test-${crypto.randomBytes(4).toString("hex")}`,
			HOST: "127.0.0.1",
			METRICS_HOST: "127.0.0.1"
		};
		expect(await reachableFromElsewhere(env)).toEqual({ gateway: false, grpc: true, metrics: false });
	});

	test("metrics on any free port (METRICS_PORT=0, as in these tests) still listen only where told", async () => {
		const broker = new ServiceBroker({ ...brokerConfig, transporter: null, logger: false });
		await broker.start();
		try {
			const [reporter] = (broker.metrics as unknown as { reporter: { server: Server }[] }).reporter;
			// The reporter starts listening without waiting for it.
			if (!reporter.server.listening) await once(reporter.server, "listening");
			expect(reporter.server.address()).toMatchObject<Partial<AddressInfo>>({ address: "127.0.0.1" });
		} finally {
			await broker.stop();
		}
	});
});

describe("a start-up problem names the setting and the address", () => {
	let taken: Server;
	let port: number;

	beforeEach(async () => {
		taken = net.createServer();
		await new Promise<void>(resolve => taken.listen(0, "127.0.0.1", resolve));
		port = (taken.address() as AddressInfo).port;
	});

	afterEach(() => new Promise(resolve => taken.close(resolve)));

	/** Starts billing alone with `env` and waits for its node to give up. */
	async function failedStart(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
		node = startNode(["billing"], { TRANSPORTER: "", HOST: "127.0.0.1", METRICS_HOST: "127.0.0.1", ...env });
		const [code] = (await once(node.child, "exit")) as [number | null];
		return { code, output: node.output() };
	}

	test("for metrics, stops the node naming METRICS_PORT and the address, without a stack trace", async () => {
		const { code, output } = await failedStart({ METRICS_PORT: String(port), BILLING_GRPC_PORT: String(await freePort()) });
		expect(code).not.toBe(0);
		expect(output).toContain(`The metrics endpoint cannot listen on 127.0.0.1:${port} (EADDRINUSE): set METRICS_PORT`);
		expect(output).not.toMatch(/\n\s+at /);
	});

	test("for gRPC, stops the node naming BILLING_GRPC_PORT and the address", async () => {
		const { code, output } = await failedStart({ METRICS_PORT: "off", BILLING_GRPC_PORT: String(port) });
		expect(code).not.toBe(0);
		expect(output).toContain(`The gRPC server cannot listen on 127.0.0.1:${port} (in use, or not this machine's): set BILLING_GRPC_PORT`);
	});

	test("for Kafka that does not answer, the node keeps trying and says where it looked (KAFKA_BROKERS)", async () => {
		// Nothing listens there: each attempt fails, and the node must say where it looked.
		const nowhere = await freePort();
		node = startNode(["analytics"], { TRANSPORTER: "", METRICS_PORT: "off", KAFKA_BROKERS: `127.0.0.1:${nowhere}` });
		await eventually(async () => (node!.output().includes(`KAFKA_BROKERS=127.0.0.1:${nowhere}`) ? true : undefined), 30_000, "a warning naming KAFKA_BROKERS");
		expect(node.child.exitCode).toBeNull();
	});
});
