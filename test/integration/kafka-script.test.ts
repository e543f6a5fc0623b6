import { execFile } from "node:child_process";
import net from "node:net";
import path from "node:path";

/**
 * scripts/kafka.sh tells a Kafka broker from any other listener: a port that is
 * merely open must not pass for the broker (the stack and the tests would then
 * wait on it, or publish into nothing).
 */
const SCRIPT = path.resolve(__dirname, "../../scripts/kafka.sh");

/** Runs the script without blocking this process, whose server must answer meanwhile. */
function kafkaScript(command: string, env: Record<string, string>): Promise<{ status: number; output: string }> {
	return new Promise(resolve =>
		execFile(SCRIPT, [command], { env: { ...process.env, KAFKA_BROKERS: "", ...env } }, (err, stdout, stderr) =>
			resolve({ status: err ? Number(err.code) : 0, output: stdout + stderr })
		)
	);
}

let server: net.Server;
let port: number;

beforeAll(async () => {
	// Accepts connections and answers every byte with a line, as many a non-Kafka server would.
	server = net.createServer(socket => {
		socket.on("data", () => socket.write("-ERR unknown\r\n"));
		// The script hangs up as soon as it has read enough.
		socket.on("error", () => {});
	});
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	port = (server.address() as net.AddressInfo).port;
});

afterAll(() => new Promise(resolve => server.close(resolve)));

test("status says not running when what listens on the port is not a broker", async () => {
	const { status, output } = await kafkaScript("status", { KAFKA_PORT: String(port) });
	expect(status).toBe(1);
	expect(output).toContain("not running");
});

test("start refuses the port, naming it and KAFKA_PORT, rather than taking it for a broker", async () => {
	const { status, output } = await kafkaScript("start", { KAFKA_PORT: String(port) });
	expect(status).toBe(1);
	expect(output).toContain(`Something that is not a Kafka broker listens on 127.0.0.1:${port}`);
	expect(output).toContain("KAFKA_PORT");
});

test("start with KAFKA_BROKERS naming that listener says it is no broker", async () => {
	const { status, output } = await kafkaScript("start", { KAFKA_BROKERS: `127.0.0.1:${port}` });
	expect(status).toBe(1);
	expect(output).toContain("answers, but not as a Kafka broker");
});
