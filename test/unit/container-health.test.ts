import net from "node:net";
import { once } from "node:events";
import { busPorts, healthProblem, readSockets, socketsOf } from "../../lib/infra/container-health";

const TABLE = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:2329 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0200000A:A1B2 0300000A:107E 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 20 4 30 10 -1
`;

describe("the containers' healthcheck", () => {
	test("reads the kernel's socket table: a listener on 9001, a connection to 4222", () => {
		expect(socketsOf(TABLE)).toEqual([
			{ localPort: 9001, remotePort: 0, state: "0A" },
			{ localPort: 0xa1b2, remotePort: 4222, state: "01" }
		]);
	});

	test("the bus's ports come from TRANSPORTER; none without one", () => {
		expect(busPorts("nats://nats:4222")).toEqual([4222]);
		expect(busPorts("nats://medsync@nats")).toEqual([4222]);
		expect(busPorts("nats://a:4223, nats://b:4224")).toEqual([4223, 4224]);
		expect(busPorts(undefined)).toEqual([]);
	});

	test("healthy on the bus and listening where told; otherwise says what is missing", () => {
		const sockets = socketsOf(TABLE);
		expect(healthProblem(sockets, [4222], [9001])).toBeUndefined();
		expect(healthProblem(sockets, [4223], [])).toBe("no connection to the bus (port 4223)");
		expect(healthProblem(sockets, [4222], [9001, 9002])).toBe("not listening on 9002");
		expect(healthProblem(socketsOf(TABLE.replace(" 01 ", " 06 ")), [4222], [])).toBe("no connection to the bus (port 4222)");
	});

	test("sees this process's own connection, and no longer once it is closed", async () => {
		const server = net.createServer(socket => socket.on("error", () => {}));
		server.listen(0, "127.0.0.1");
		await once(server, "listening");
		const { port } = server.address() as net.AddressInfo;
		const client = net.connect(port, "127.0.0.1");
		await once(client, "connect");
		try {
			expect(healthProblem(readSockets(), [port], [port])).toBeUndefined();
			client.destroy();
			await once(client, "close");
			expect(healthProblem(readSockets(), [port], [])).toBe(`no connection to the bus (port ${port})`);
		} finally {
			server.close();
		}
	});
});
