import { Client } from "pg";
import { onClient } from "../../lib/infra/database";
import { CONNECT_TIMEOUT_MS } from "../../lib/infra/postgres";
import {
	type OutboxRow,
	countPendingOutbox,
	markOutboxFailed,
	markOutboxSent,
	outboxRelaySession,
	pendingOutboxEvents,
	purgeSentOutbox,
	tryOutboxRelayLock
} from "./queries";

interface Logger {
	info(...args: unknown[]): void;
	warn(...args: unknown[]): void;
}

export interface OutboxRelayOptions {
	databaseUrl: string;
	/** Publishes the rows, in order; resolves once the broker has them. */
	send(rows: OutboxRow[]): Promise<void>;
	logger: Logger;
	/** Told the number of pending events after each pass (for the outbox depth metric). */
	onDepth?(pending: number): void;
}

const BATCH_SIZE = 100;
/** A safety net under LISTEN/NOTIFY, and the retry pace while the broker is down. */
const POLL_MS = 2000;
/**
 * How long a wake-up waits for more commits before reading the outbox: under
 * load, one read, one publish and one update then carry many events instead of
 * one each.
 */
const LINGER_MS = 5;
/** Sent rows are kept this long, for inspection, then purged. */
const RETENTION_DAYS = 7;

/**
 * Publishes the outbox's pending events in id order and marks them sent. It
 * wakes on NOTIFY (sent by a trigger at commit) and polls as a fallback. Only
 * one relay per database works at a time (an advisory lock), so order holds
 * when several nodes run the service. If publishing fails, nothing is marked:
 * the same rows go again on the next wake, so delivery is at least once, and
 * consumers deduplicate by event id.
 *
 * It has a connection of its own, which PostgreSQL needs for LISTEN, and runs
 * every statement there rather than on the service's pool: that session holds
 * the lock, so a relay whose connection broke (and whose lock another node may
 * then take) reads and marks nothing more.
 */
export class OutboxRelay {
	private client: Client | undefined;
	private timer: NodeJS.Timeout | undefined;
	private running: Promise<void> | undefined;
	private again = false;
	private leader = false;
	private stopped = false;
	private lastPurge = 0;

	constructor(private readonly options: OutboxRelayOptions) {}

	async start(): Promise<void> {
		this.client = await this.connect();
		this.timer = setInterval(() => this.wake(), POLL_MS);
		this.wake();
	}

	private async connect(): Promise<Client> {
		const client = new Client({ connectionString: this.options.databaseUrl, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
		client.on("notification", () => this.wake());
		// A lost connection (the database restarted or went away) is replaced at the next wake; its advisory lock went with it.
		const lost = () => {
			if (this.client !== client) return;
			this.client = undefined;
			this.leader = false;
		};
		client.on("error", err => {
			this.options.logger.warn(`Outbox relay connection: ${err.message}`);
			lost();
		});
		client.on("end", lost);
		try {
			await client.connect();
			const db = onClient(client);
			for (const statement of outboxRelaySession) await db.query(statement);
		} catch (err) {
			await client.end().catch(() => {});
			throw err;
		}
		return client;
	}

	/** Lets the batch in hand finish, then closes the connection (which releases the lock). */
	async stop(): Promise<void> {
		this.stopped = true;
		clearInterval(this.timer);
		await this.running;
		await this.client?.end().catch(() => {});
		this.client = undefined;
	}

	wake(): void {
		if (this.stopped) return;
		if (this.running) {
			this.again = true;
			return;
		}
		this.running = new Promise(resolve => setTimeout(resolve, LINGER_MS))
			.then(() => this.drain())
			.catch(err => this.options.logger.warn(`Outbox relay: ${(err as Error).message}`))
			.finally(() => {
				this.running = undefined;
				if (this.again) {
					this.again = false;
					this.wake();
				}
			});
	}

	private async drain(): Promise<void> {
		if (this.stopped) return;
		// Reconnecting here, at the poll's pace, while the database is away.
		this.client ??= await this.connect();
		const db = onClient(this.client);
		if (!this.leader) {
			const [{ locked }] = await db.query<{ locked: boolean }>(tryOutboxRelayLock);
			this.leader = locked;
			if (!this.leader) return;
			this.options.logger.info("Outbox relay: this node publishes the outbox");
		}
		let more = true;
		while (more && !this.stopped) {
			const batch = await db.query<OutboxRow>(pendingOutboxEvents(BATCH_SIZE));
			// A short batch took everything pending; what commits after it wakes the relay again.
			more = batch.length === BATCH_SIZE;
			if (!batch.length) break;
			const ids = batch.map(r => r.id);
			try {
				await this.options.send(batch);
			} catch (err) {
				await db.query(markOutboxFailed(ids, (err as Error).message));
				this.options.logger.warn(`Outbox relay: ${batch.length} event(s) wait (${(err as Error).message}); retrying`);
				const [{ n }] = await db.query<{ n: number }>(countPendingOutbox);
				this.options.onDepth?.(n);
				return;
			}
			await db.query(markOutboxSent(ids));
		}
		// Drained: nothing was pending when the last batch was read.
		this.options.onDepth?.(0);
		if (Date.now() - this.lastPurge > 3_600_000) {
			this.lastPurge = Date.now();
			await db.query(purgeSentOutbox(RETENTION_DAYS));
		}
	}
}
