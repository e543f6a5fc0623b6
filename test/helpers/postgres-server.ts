import net from "node:net";

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
