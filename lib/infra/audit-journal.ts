import fs from "node:fs";
import path from "node:path";
import { isDataRefusal } from "./db-errors";
import { type Static, Type } from "@sinclair/typebox";
import { instant, uuidRule } from "../domain/validation";
import { isUuid } from "./sql";
import { Instant, Nullable, StringEnum, Uuid } from "../domain/schemas";

/** One access to patient data, as the audit trail keeps it. */
export const AuditRecordSchema = Type.Object(
	{
		id: Uuid,
		at: Instant,
		userId: Nullable(Uuid),
		role: Nullable(Type.String()),
		action: Type.String({ description: "The action called, e.g. patients.get." }),
		resource: Type.String(),
		patientId: Nullable(Uuid),
		outcome: StringEnum(["success", "denied", "error"] as const),
		status: Type.Integer({ description: "The HTTP status answered." }),
		ip: Nullable(Type.String()),
		requestId: Nullable(Type.String()),
		operator: Type.Optional(
			Nullable(Type.String({ description: "Who read through an operator's tool (the REPL), `<OS user>@<host>`; null for a read through the gateway, which names its user." }))
		)
	},
	{ $id: "AuditRecord" }
);

export type AuditRecord = Static<typeof AuditRecordSchema>;

/** Widths of the audit trail's text columns (migrations/audit.ts); the gateway clips what a client controls to fit. */
export const AUDIT_TEXT_MAX = { role: 16, action: 100, resource: 32, ip: 64, requestId: 100, operator: 200 } as const;

/** A record the audit trail's table can take, field by field: what the audit service checks each record against. */
export const AUDIT_RECORD_RULE = {
	id: uuidRule(),
	at: instant(),
	userId: uuidRule({ optional: true, nullable: true }),
	role: { type: "string", max: AUDIT_TEXT_MAX.role, optional: true, nullable: true },
	action: { type: "string", max: AUDIT_TEXT_MAX.action },
	resource: { type: "string", max: AUDIT_TEXT_MAX.resource },
	patientId: uuidRule({ optional: true, nullable: true }),
	outcome: { type: "enum", values: ["success", "denied", "error"] },
	status: { type: "number", integer: true, min: 100, max: 599 },
	ip: { type: "string", max: AUDIT_TEXT_MAX.ip, optional: true, nullable: true },
	requestId: { type: "string", max: AUDIT_TEXT_MAX.requestId, optional: true, nullable: true },
	operator: { type: "string", max: AUDIT_TEXT_MAX.operator, optional: true, nullable: true }
};

/** A call's outcome as the audit trail records it, from its HTTP status. */
export function auditOutcome(status: number): AuditRecord["outcome"] {
	if (status < 400) return "success";
	return status === 401 || status === 403 ? "denied" : "error";
}

const stringOrNull = (value: unknown): string | null => (typeof value === "string" && value ? value : null);

/**
 * Whose data an audited call touched: the patient named in its params, or in
 * its answer (a billing account names its patient); a malformed id names none,
 * which keeps the trail's column a uuid.
 */
export function auditedPatientId(resource: string, params: Record<string, unknown>, answer: { id?: unknown; patientId?: unknown } | undefined): string | null {
	const patientId =
		stringOrNull(params.patientId) ?? stringOrNull(answer?.patientId) ?? (resource === "patient" ? (stringOrNull(params.id) ?? stringOrNull(answer?.id)) : null);
	return patientId && isUuid(patientId) ? patientId : null;
}

/** Why the store refused one record of a shipment, which it names by its position in the shipment. */
export interface Refusal {
	index: number;
	reason: string;
}

/** The store's answer to a shipment: the records it refused; it has stored the others. Any other answer means it stored them all. */
export interface ShipResult {
	refused: Refusal[];
}

/** A record the store refused, kept beside the journal with why and when, until an operator replays it. */
export interface SetAsideRecord {
	at: string;
	reason: string;
	record: AuditRecord;
}

export interface AuditJournalOptions {
	/** Told how many records were just set aside (for a metric). */
	onSetAside?(count: number): void;
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
/** Set-aside records named in the one log line that reports them. */
const LOGGED_REFUSALS = 5;

/**
 * Whether a failed shipment was refused for what it holds, so that sending it
 * again cannot succeed: the store found it malformed or invalid (400, 422) or
 * PostgreSQL refused the data (SQLSTATE class 22, data exception, or 23,
 * integrity constraint violation). Anything else may pass on a retry: the store
 * away or slow, a lost connection, and a refusal of the call rather than of
 * its records (a 401 or 403 one day), which must not set the whole trail aside.
 */
export function refusedForContent(err: unknown): boolean {
	const { code, retryable } = (err ?? {}) as { code?: unknown; retryable?: unknown };
	if (retryable === true) return false;
	if (typeof code === "number") return code === 400 || code === 422;
	return isDataRefusal(code);
}

/** A refusal's reason, for the set-aside file and the log: a validation error names the fields in its data, its message is generic. */
function reasonOf(err: unknown): string {
	const { message, code, data } = (err ?? {}) as { message?: unknown; code?: unknown; data?: unknown };
	const fields = Array.isArray(data) ? data.map(item => (item as { message?: unknown } | null)?.message).filter(m => typeof m === "string") : [];
	const text = fields.join(" ") || (typeof message === "string" ? message : String(err));
	return (typeof code === "string" ? `${text} (${code})` : text).slice(0, 500);
}

/** The refusals of a store's answer (see ShipResult) that name a record of a shipment of `size`. */
function refusalsIn(answer: unknown, size: number): Refusal[] {
	const refused = (answer as Partial<ShipResult> | null | undefined)?.refused;
	if (!Array.isArray(refused)) return [];
	return refused
		.filter(r => Number.isInteger(r?.index) && r.index >= 0 && r.index < size)
		.map(r => ({ index: r.index, reason: String(r.reason ?? "refused").slice(0, 500) }));
}

/**
 * The JSON lines of `file` from byte `from`. A line that does not parse (one
 * cut short by a crash mid-write, or damage) ends the file: it and what follows
 * it move to `<file>.damaged`, kept for an operator, and `damagedBytes` says how much.
 */
function readJsonLines<T>(file: string, from = 0): { lines: { value: T; bytes: number }[]; damagedBytes: number } {
	if (!fs.existsSync(file)) return { lines: [], damagedBytes: 0 };
	const content = fs.readFileSync(file);
	const lines: { value: T; bytes: number }[] = [];
	let position = from;
	for (const line of content.subarray(from).toString("utf8").split("\n")) {
		const bytes = Buffer.byteLength(line) + 1;
		if (!line) {
			position += bytes;
			continue;
		}
		try {
			lines.push({ value: JSON.parse(line) as T, bytes });
			position += bytes;
		} catch {
			const damaged = content.subarray(position);
			appendDurably(`${file}.damaged`, damaged);
			fs.truncateSync(file, position);
			return { lines, damagedBytes: damaged.length };
		}
	}
	return { lines, damagedBytes: 0 };
}

/** Writes `text` at the end of `file` and flushes it to disk before returning. */
function appendDurably(file: string, text: string | Buffer): void {
	const fd = fs.openSync(file, "a", 0o600);
	try {
		fs.writeSync(fd, typeof text === "string" ? Buffer.from(text) : text);
		fs.fdatasyncSync(fd);
	} finally {
		fs.closeSync(fd);
	}
}

/** Replaces `file` by `text` at once: a crash leaves the old content or the new, never part of either. */
function replaceDurably(file: string, text: string): void {
	fs.writeFileSync(`${file}.tmp`, "", { mode: 0o600 });
	appendDurably(`${file}.tmp`, text);
	fs.renameSync(`${file}.tmp`, file);
}

const asLine = (value: unknown) => JSON.stringify(value) + "\n";

/** A record's id; a line of a damaged file that is no record has none. */
function idOf(record: unknown): string | undefined {
	const id = (record as { id?: unknown } | null)?.id;
	return typeof id === "string" ? id : undefined;
}

/**
 * A durable buffer between a request and the audit store. `append` writes the
 * record to a local file before it returns, so a crash or an absent audit
 * service loses nothing; shipping to the store happens in the background, in
 * order, retried with backoff, and a shipped prefix is remembered in
 * `<file>.offset`. The store ignores an id it already has, so a record shipped
 * twice (a crash between shipping and saving the offset) is kept once.
 *
 * A record the store refuses (it says which, or it refuses a whole shipment for
 * what it holds, which is then halved until the culprits are found) would block
 * every record after it if retried: it is set aside in `<file>.set-aside` with
 * the reason and the time, counted and logged, and the journal moves on. An
 * operator lists and replays the set-aside records (`listSetAside`,
 * `replaySetAside`); those still refused stay set aside.
 */
export class AuditJournal {
	private fd = -1;
	/** `since`: when the record was written, for the age of the backlog. */
	private readonly queue: { record: AuditRecord; bytes: number; since: number }[] = [];
	private offset = 0;
	private shipping: Promise<void> | undefined;
	/** Shipments and replays run one at a time: both end by moving records into or out of the set-aside file. */
	private turn: Promise<unknown> = Promise.resolve();
	private timer: NodeJS.Timeout | undefined;
	private backoffMs = 0;
	private unsynced = false;
	private syncing = false;
	private syncTimer: NodeJS.Timeout | undefined;
	private setAside: SetAsideRecord[] = [];
	private readonly setAsideFile: string;

	constructor(
		private readonly file: string,
		private readonly ship: (records: AuditRecord[]) => Promise<unknown>,
		private readonly logger: Logger,
		private readonly options: AuditJournalOptions = {}
	) {
		this.setAsideFile = `${file}.set-aside`;
	}

	/** Loads what an earlier run left unshipped, and set aside, and starts shipping. */
	open(): void {
		fs.mkdirSync(path.dirname(this.file), { recursive: true });
		const offsetFile = `${this.file}.offset`;
		const size = fs.existsSync(this.file) ? fs.statSync(this.file).size : 0;
		this.offset = Math.min(size, fs.existsSync(offsetFile) ? Number(fs.readFileSync(offsetFile, "utf8")) || 0 : 0);
		const journal = readJsonLines<AuditRecord>(this.file, this.offset);
		for (const { value: record, bytes } of journal.lines) {
			this.queue.push({ record, bytes, since: Date.parse(String((record as Partial<AuditRecord> | null)?.at)) || Date.now() });
		}
		const setAside = readJsonLines<SetAsideRecord>(this.setAsideFile);
		this.setAside = setAside.lines.map(line => line.value);
		for (const [file, { damagedBytes }] of [[this.file, journal], [this.setAsideFile, setAside]] as const) {
			if (damagedBytes) this.logger.warn(`Audit journal: ${damagedBytes} byte(s) of ${file} did not parse; kept in ${file}.damaged`);
		}
		this.fd = fs.openSync(this.file, "a", 0o600);
		// Page cache survives a process crash; this bounds what a power cut could take.
		this.syncTimer = setInterval(() => this.sync(), 1000);
		this.syncTimer.unref();
		if (this.queue.length) this.logger.info(`Audit journal: ${this.queue.length} record(s) from an earlier run to ship`);
		if (this.setAside.length) this.logger.warn(`Audit journal: ${this.setAside.length} record(s) set aside in ${this.setAsideFile}, to replay`);
		this.schedule(0);
	}

	/** Writes the record to the journal (synchronously, so it is kept once this returns) and queues it for shipping. */
	append(record: AuditRecord): void {
		const line = asLine(record);
		fs.writeSync(this.fd, line);
		this.unsynced = true;
		this.queue.push({ record, bytes: Buffer.byteLength(line), since: Date.now() });
		if (!this.backoffMs) this.schedule(this.queue.length >= BATCH_SIZE ? 0 : LINGER_MS);
	}

	/** Records written but not yet in the audit store. */
	get pending(): number {
		return this.queue.length;
	}

	/** Records written but not yet in the audit store, and how long the oldest of them has waited (0 when none). */
	backlog(now = Date.now()): { pending: number; oldestSeconds: number } {
		const oldest = this.queue[0]?.since;
		return { pending: this.queue.length, oldestSeconds: oldest === undefined ? 0 : Math.max(0, (now - oldest) / 1000) };
	}

	/** How many records are set aside. */
	get setAsideCount(): number {
		return this.setAside.length;
	}

	/** The set-aside records, oldest first (the first `limit`): the record's id, when it was set aside, and why. */
	listSetAside(limit = 100): { count: number; records: { id: string | null; at: string; reason: string }[] } {
		return { count: this.setAside.length, records: this.setAside.slice(0, limit).map(({ record, at, reason }) => ({ id: idOf(record) ?? null, at, reason })) };
	}

	/**
	 * Ships the set-aside records again (once the store has been put right):
	 * those it takes leave the set-aside file, those it still refuses stay, with
	 * the new reason. If the store cannot be reached this throws and the file
	 * stays as it was (what was shipped before is stored, and kept once when it
	 * comes again).
	 */
	replaySetAside(): Promise<{ replayed: number; stored: number; setAside: number }> {
		return this.serially(async () => {
			const entries = this.setAside;
			const still: SetAsideRecord[] = [];
			for (let start = 0; start < entries.length; start += BATCH_SIZE) {
				const chunk = entries.slice(start, start + BATCH_SIZE);
				for (const { index, reason } of await this.deliver(chunk.map(entry => entry.record))) still.push({ ...chunk[index], reason });
			}
			if (entries.length) replaceDurably(this.setAsideFile, still.map(asLine).join(""));
			this.setAside = still;
			const result = { replayed: entries.length, stored: entries.length - still.length, setAside: still.length };
			this.logger.info(`Audit journal: replayed ${result.replayed} set-aside record(s): ${result.stored} stored, ${result.setAside} still refused`);
			return result;
		});
	}

	/** Tries one last shipment; whatever is left stays in the file for the next start. */
	async close(): Promise<void> {
		clearTimeout(this.timer);
		clearInterval(this.syncTimer);
		await this.shipping;
		await this.serially(async () => {
			if (this.queue.length) await this.shipBatch().catch(() => {});
		});
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

	private serially<T>(work: () => Promise<T>): Promise<T> {
		const run = this.turn.then(work);
		this.turn = run.catch(() => {});
		return run;
	}

	private schedule(delayMs: number): void {
		if (this.timer || this.fd < 0) return;
		this.timer = setTimeout(() => {
			this.timer = undefined;
			this.shipping ??= this.serially(() => this.drain()).finally(() => (this.shipping = undefined));
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
		const refused = await this.deliver(batch.map(entry => entry.record));
		const at = new Date().toISOString();
		// Kept before the offset passes them: a crash in between sets them aside again (once), never loses them.
		this.putAside(refused.map(({ index, reason }) => ({ at, reason, record: batch[index].record })));
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

	/**
	 * Ships `records` and returns the ones the store refused, by position. A
	 * shipment refused as a whole for what it holds is halved, and the halves
	 * again, down to the records that cause it, so that none holds back the
	 * others. Throws when the store cannot be reached (retry later).
	 */
	private async deliver(records: AuditRecord[]): Promise<Refusal[]> {
		let answer: unknown;
		try {
			answer = await this.ship(records);
		} catch (err) {
			if (!refusedForContent(err)) throw err;
			if (records.length === 1) return [{ index: 0, reason: reasonOf(err) }];
			const half = Math.ceil(records.length / 2);
			const first = await this.deliver(records.slice(0, half));
			const second = await this.deliver(records.slice(half));
			return [...first, ...second.map(refusal => ({ ...refusal, index: refusal.index + half }))];
		}
		return refusalsIn(answer, records.length);
	}

	private putAside(entries: SetAsideRecord[]): void {
		if (!entries.length) return;
		const known = new Set(this.setAside.map(entry => idOf(entry.record)));
		const fresh = entries.filter(entry => idOf(entry.record) === undefined || !known.has(idOf(entry.record)));
		if (!fresh.length) return;
		appendDurably(this.setAsideFile, fresh.map(asLine).join(""));
		this.setAside.push(...fresh);
		this.options.onSetAside?.(fresh.length);
		// Ids and reasons only, none of the records' other fields.
		const named = fresh.slice(0, LOGGED_REFUSALS).map(({ record, reason }) => `${idOf(record) ?? "(no id)"}: ${reason}`);
		if (fresh.length > LOGGED_REFUSALS) named.push(`and ${fresh.length - LOGGED_REFUSALS} more`);
		this.logger.warn(`Audit journal: the audit service refused ${fresh.length} record(s), set aside in ${this.setAsideFile} to replay; ${named.join("; ")}`);
	}
}
