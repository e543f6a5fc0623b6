import pg, { Pool } from "pg";
import { config } from "./config";
import { isDatabaseUnavailable } from "./db-errors";
import type { PoolStats } from "./metrics";
import { CONNECT_TIMEOUT_MS } from "./postgres";
import { prepared } from "./sql";

/**
 * How long a statement may wait for one of the pool's connections (pg's pool
 * would wait for ever). A wait is legitimate under load: requests queue for the
 * pool's connections, each held for a statement or a short transaction, so a
 * queue clears in milliseconds (the benchmark's reads at 64 connections have a
 * p99 under 150 ms, queueing included): 3 s is twenty times that. Waiting longer
 * means the connections are stuck, on a server that went away without closing
 * them: the request is then answered 503 well inside Moleculer's 10 s request
 * timeout. Connections stuck mid-statement on a host cut off stay stuck until
 * TCP keepalive gives them up (minutes); new ones fail within CONNECT_TIMEOUT_MS.
 */
export const ACQUIRE_TIMEOUT_MS = 3000;

/** The pool's connections give up connecting sooner than a statement gives up waiting for one (the pool's own timeout covers both). */
class QuickToConnect extends pg.Client {
	constructor(options?: pg.ClientConfig) {
		super({ ...options, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
	}
}

/** A parameterised statement: values go in `values`, never in the text (see `prepared`). */
export interface Statement {
	text: string;
	values: unknown[];
}

/** What runs statements: the database, or one transaction on it. */
export interface Queryable {
	/** The statement's rows, as PostgreSQL gives them (columns aliased to the names the mapper wants). */
	query<T>(statement: Statement): Promise<T[]>;
}

/**
 * A service's one way to its PostgreSQL database (docs/decisions/0001): a pool
 * of connections, each statement a named prepared statement, parsed and
 * planned once per connection. Nothing else in a service opens connections,
 * but for what PostgreSQL needs one of its own for (LISTEN, migrations under
 * an advisory lock).
 */
export class Database implements Queryable {
	private readonly pool: Pool;

	constructor(url: string) {
		this.pool = new Pool({
			connectionString: url,
			max: config.databasePoolMax,
			// A new backend starts with cold caches and costs tens of ms: connections opened in a burst stay for the next
			// one, and one stays always (after a lull, the first statements had paid for new backends: bench/changes.md).
			min: 1,
			idleTimeoutMillis: 300_000,
			// A server that is gone refuses at once, or (a host cut off) never answers: a connection gives up after
			// CONNECT_TIMEOUT_MS (QuickToConnect), a statement waiting for a connection after ACQUIRE_TIMEOUT_MS.
			Client: QuickToConnect,
			connectionTimeoutMillis: ACQUIRE_TIMEOUT_MS,
			// Lets TCP find a connection whose server vanished without a word, which nothing else would.
			keepAlive: true,
			keepAliveInitialDelayMillis: 10_000
		});
		// An idle connection the server dropped: the pool discards it; the next statement takes another.
		this.pool.on("error", () => {});
	}

	async query<T>(statement: Statement): Promise<T[]> {
		return (await this.pool.query(prepared(statement))).rows as T[];
	}

	/** Runs `work` in one transaction on one connection: committed if it resolves, rolled back if it throws. */
	async transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
		const client = await this.pool.connect();
		let broken = false;
		try {
			await client.query("BEGIN");
			const result = await work(onClient(client));
			await client.query("COMMIT");
			return result;
		} catch (err) {
			// A connection that lost its server cannot roll back; it leaves the pool instead of returning to it.
			broken = isDatabaseUnavailable(err);
			if (!broken) await client.query("ROLLBACK").catch(() => (broken = true));
			throw err;
		} finally {
			client.release(broken);
		}
	}

	/** The pool's connections (open, idle) and the statements waiting for one, for the pool gauges. */
	poolStats(): PoolStats {
		return { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount };
	}

	/** Closes every connection; for the service's stop. */
	end(): Promise<void> {
		return this.pool.end();
	}
}

/** Statements on one connection, prepared as the pool's are: a transaction's, or one a service holds for LISTEN. */
export function onClient(client: pg.ClientBase): Queryable {
	return { query: async <T>(statement: Statement) => (await client.query(prepared(statement))).rows as T[] };
}
