import fs from "node:fs";

/**
 * A container's healthcheck for a node that serves no HTTP (every service but
 * the gateway, whose check is its /ready): healthy when the process holds an
 * established connection to the bus (the TRANSPORTER's port) and listens on
 * each port named on the command line (billing's gRPC port). It reads the
 * kernel's socket tables, so it asks nothing of the node, opens no connection,
 * and does not depend on the metrics endpoint, which METRICS_PORT may move or
 * turn off. `node dist/lib/infra/container-health.js [port…]`
 */

/** TCP states in /proc/net/tcp. */
const ESTABLISHED = "01";
const LISTEN = "0A";

interface Socket {
	localPort: number;
	remotePort: number;
	state: string;
}

/** The sockets of /proc/net/tcp or /proc/net/tcp6 text. */
export function socketsOf(table: string): Socket[] {
	return table
		.split("\n")
		.slice(1)
		.map(line => line.trim().split(/\s+/))
		.filter(columns => columns.length > 3)
		.map(([, local, remote, state]) => ({ localPort: parseInt(local.split(":").at(-1)!, 16), remotePort: parseInt(remote.split(":").at(-1)!, 16), state }));
}

/** The port a TRANSPORTER URL connects to (nats://user@host:port, several comma-separated), 4222 by default. */
export function busPorts(transporter: string | undefined): number[] {
	if (!transporter) return [];
	return transporter.split(",").map(url => {
		const port = /:(\d+)\/?$/.exec(url.trim())?.[1];
		return port ? Number(port) : 4222;
	});
}

/** What is wrong, or undefined when the node is on the bus and listens where it should. */
export function healthProblem(sockets: Socket[], bus: number[], listening: number[]): string | undefined {
	if (bus.length && !sockets.some(s => s.state === ESTABLISHED && bus.includes(s.remotePort))) return `no connection to the bus (port ${bus.join(" or ")})`;
	const missing = listening.filter(port => !sockets.some(s => s.state === LISTEN && s.localPort === port));
	if (missing.length) return `not listening on ${missing.join(", ")}`;
	return undefined;
}

/** This network namespace's TCP sockets, IPv4 and IPv6: in a container, its own. */
export function readSockets(): Socket[] {
	return ["/proc/net/tcp", "/proc/net/tcp6"].flatMap(file => (fs.existsSync(file) ? socketsOf(fs.readFileSync(file, "utf8")) : []));
}

if (require.main === module) {
	const problem = healthProblem(readSockets(), busPorts(process.env.TRANSPORTER), process.argv.slice(2).map(Number));
	if (problem) {
		console.error(`unhealthy: ${problem}`);
		process.exit(1);
	}
}
