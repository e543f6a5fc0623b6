import fs from "node:fs";
import path from "node:path";

/** One access to patient data, as the audit trail keeps it. */
export interface AuditRecord {
	id: string;
	at: string;
	userId: string | null;
	role: string | null;
	action: string;
	resource: string;
	patientId: string | null;
	outcome: "success" | "denied" | "error";
	status: number;
	ip: string | null;
	requestId: string | null;
}

interface Logger {
	warn(...args: unknown[]): void;
	info(...args: unknown[]): void;
}

const BATCH_SIZE = 500;
/**
 * How long a new record waits for others before a shipment leaves. Under load,
 * one shipment (an insert, and the offset file rewritten) then carries many
 * records instead of one; the record itself is on disk before this wait.
 */
const LINGER_MS = 100;
const MAX_BACKOFF_MS = 30_000;
/** Once everything is shipped and the file has grown past this, it starts over. */
const COMPACT_BYTES = 1024 * 1024;

/**
 * A durable buffer between a request and the audit store. `append` writes the
 * record to a local file before it returns, so a crash or an absent audit
 * service loses nothing; shipping to the store happens in the background, in
 * order, retried with backoff, and a shipped prefix is remembered in
 * `<file>.offset`. The store ignores an id it already has, so a record shipped
 * twice (a crash between shipping and saving the offset) is kept once.
 */
export class AuditJournal {
	private fd = -1;
	private readonly queue: { record: AuditRecord; bytes: number }[] = [];
	private offset = 0;
	private shipping: Promise<void> | undefined;
	private timer: NodeJS.Timeout | undefined;
	private backoffMs = 0;
	private unsynced = false;
	private syncing = false;
	private syncTimer: NodeJS.Timeout | undefined;

	constructor(
		private readonly file: string,
		private readonly ship: (records: AuditRecord[]) => Promise<unknown>,
		private readonly logger: Logger
	) {}

	/** Loads what an earlier run left unshipped and starts shipping. */
	open(): void {
		fs.mkdirSync(path.dirname(this.file), { recursive: true });
		const offsetFile = `${this.file}.offset`;
		this.offset = fs.existsSync(offsetFile) ? Number(fs.readFileSync(offsetFile, "utf8")) || 0 : 0;
		const content = fs.existsSync(this.file) ? fs.readFileSync(this.file) : Buffer.alloc(0);
		if (this.offset > content.length) this.offset = content.length;

		let position = this.offset;
		for (const line of content.subarray(this.offset).toString("utf8").split("\n")) {
			const bytes = Buffer.byteLength(line) + 1;
			if (!line) continue;
			try {
				this.queue.push({ record: JSON.parse(line) as AuditRecord, bytes });
				position += bytes;
			} catch {
				// A line cut short by a crash mid-write: drop it and what follows it in the file.
				fs.truncateSync(this.file, position);
				break;
			}
		}
		this.fd = fs.openSync(this.file, "a", 0o600);
		// Page cache survives a process crash; this bounds what a power cut could take.
		this.syncTimer = setInterval(() => this.sync(), 1000);
		this.syncTimer.unref();
		if (this.queue.length) this.logger.info(`Audit journal: ${this.queue.length} record(s) from an earlier run to ship`);
		this.schedule(0);
	}

	/** Writes the record to the journal (synchronously, so it is kept once this returns) and queues it for shipping. */
	append(record: AuditRecord): void {
		const line = JSON.stringify(record) + "\n";
		fs.writeSync(this.fd, line);
		this.unsynced = true;
		this.queue.push({ record, bytes: Buffer.byteLength(line) });
		if (!this.backoffMs) this.schedule(this.queue.length >= BATCH_SIZE ? 0 : LINGER_MS);
	}

	/** Records written but not yet in the audit store. */
	get pending(): number {
		return this.queue.length;
	}

	/** Tries one last shipment; whatever is left stays in the file for the next start. */
	async close(): Promise<void> {
		clearTimeout(this.timer);
		clearInterval(this.syncTimer);
		await this.shipping;
		if (this.queue.length) await this.shipBatch().catch(() => {});
		fs.fdatasyncSync(this.fd);
		fs.closeSync(this.fd);
		this.fd = -1;
	}

	/** Flushes to disk off the event loop: a synchronous fsync would stall every request for its duration. */
	private sync(): void {
		if (this.unsynced && this.fd >= 0 && !this.syncing) {
			this.unsynced = false;
			this.syncing = true;
			fs.fdatasync(this.fd, () => (this.syncing = false));
		}
	}

	private schedule(delayMs: number): void {
		if (this.timer || this.fd < 0) return;
		this.timer = setTimeout(() => {
			this.timer = undefined;
			this.shipping ??= this.drain().finally(() => (this.shipping = undefined));
		}, delayMs);
		// The journal alone does not keep a process alive; whatever appends to it does.
		this.timer.unref();
	}

	/** Ships full batches back to back; a partial one waits out the linger for company. */
	private async drain(): Promise<void> {
		while (this.queue.length && this.fd >= 0) {
			try {
				await this.shipBatch();
				this.backoffMs = 0;
				if (this.queue.length < BATCH_SIZE) {
					if (this.queue.length) this.schedule(LINGER_MS);
					return;
				}
			} catch (err) {
				this.backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(250, this.backoffMs * 2));
				this.logger.warn(`Audit journal: shipping failed (${String(err)}); ${this.queue.length} record(s) wait, retry in ${this.backoffMs} ms`);
				this.schedule(this.backoffMs);
				return;
			}
		}
	}

	private async shipBatch(): Promise<void> {
		const batch = this.queue.slice(0, BATCH_SIZE);
		await this.ship(batch.map(entry => entry.record));
		this.queue.splice(0, batch.length);
		this.offset += batch.reduce((sum, entry) => sum + entry.bytes, 0);
		if (!this.queue.length && this.offset >= COMPACT_BYTES) {
			fs.ftruncateSync(this.fd, 0);
			this.offset = 0;
		}
		const offsetFile = `${this.file}.offset`;
		fs.writeFileSync(`${offsetFile}.tmp`, String(this.offset));
		fs.renameSync(`${offsetFile}.tmp`, offsetFile);
	}
}
