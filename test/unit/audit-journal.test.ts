import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Errors } from "moleculer";
import { type AuditRecord, type SetAsideRecord, AuditJournal, refusedForContent } from "../../lib/infra/audit-journal";
import { eventually } from "../helpers/node-process";

const quiet = { warn: () => {}, info: () => {} };

function record(n: number): AuditRecord {
	return {
		id: crypto.randomUUID(),
		at: new Date().toISOString(),
		userId: null,
		role: null,
		action: `patients.get#${n}`,
		resource: "patient",
		patientId: null,
		outcome: "success",
		status: 200,
		ip: null,
		requestId: null
	};
}

let file: string;
beforeEach(() => {
	file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "journal-")), "gateway.jsonl");
});

describe("the audit journal", () => {
	test("keeps a record on disk before append returns, then ships it", async () => {
		const shipped: AuditRecord[] = [];
		const journal = new AuditJournal(file, async records => shipped.push(...records), quiet);
		journal.open();
		const r = record(1);
		journal.append(r);
		expect(fs.readFileSync(file, "utf8")).toContain(r.id);
		await eventually(async () => (shipped.length === 1 ? true : undefined), 2000, "shipping");
		expect(shipped).toEqual([r]);
		await journal.close();
	});

	test("records appended close together ship together, in order, rather than one shipment each", async () => {
		const shipments: AuditRecord[][] = [];
		const journal = new AuditJournal(file, async records => shipments.push(records), quiet);
		journal.open();
		const records = Array.from({ length: 30 }, (_, n) => record(n));
		for (const [n, r] of records.entries()) {
			journal.append(r);
			if (n % 10 === 9) await new Promise(resolve => setTimeout(resolve, 5));
		}
		await eventually(async () => (shipments.flat().length === 30 ? true : undefined), 2000, "shipping");
		expect(shipments.flat()).toEqual(records);
		expect(shipments.length).toBeLessThanOrEqual(2);
		await journal.close();
	});

	test("while the store is down, records wait; once it is back they arrive in order", async () => {
		let up = false;
		const shipped: AuditRecord[] = [];
		const journal = new AuditJournal(
			file,
			async records => {
				if (!up) throw new Error("audit service unavailable");
				shipped.push(...records);
			},
			quiet
		);
		journal.open();
		const records = [1, 2, 3].map(record);
		records.forEach(r => journal.append(r));
		await new Promise(r => setTimeout(r, 300));
		expect(shipped).toEqual([]);
		expect(journal.pending).toBe(3);
		up = true;
		await eventually(async () => (shipped.length === 3 ? true : undefined), 5000, "delivery after recovery");
		expect(shipped.map(r => r.id)).toEqual(records.map(r => r.id));
		await journal.close();
	});

	test("what a crashed process left unshipped is shipped by the next one, and nothing twice", async () => {
		const first = new AuditJournal(file, async () => Promise.reject(new Error("down")), quiet);
		first.open();
		const lost = [record(1), record(2)];
		lost.forEach(r => first.append(r));
		// No close(): the process died. A line cut short by the crash follows.
		fs.appendFileSync(file, '{"id":"cut-sh');

		const shipped: AuditRecord[] = [];
		const second = new AuditJournal(file, async records => shipped.push(...records), quiet);
		second.open();
		await eventually(async () => (shipped.length === 2 ? true : undefined), 2000, "recovery");
		expect(shipped.map(r => r.id)).toEqual(lost.map(r => r.id));
		// The cut line is kept for an operator, not dropped.
		expect(fs.readFileSync(`${file}.damaged`, "utf8")).toBe('{"id":"cut-sh');
		await second.close();

		// Everything is shipped: a new start has nothing to send again.
		const third = new AuditJournal(file, async records => shipped.push(...records), quiet);
		third.open();
		expect(third.pending).toBe(0);
		await third.close();
		expect(shipped).toHaveLength(2);
	});
});

describe("records the store refuses", () => {
	const poison = (n: number): AuditRecord => ({ ...record(n), action: "poison" });
	const isPoison = (r: AuditRecord) => r.action === "poison";
	const setAsideLines = () =>
		fs
			.readFileSync(`${file}.set-aside`, "utf8")
			.split("\n")
			.filter(Boolean)
			.map(line => JSON.parse(line) as SetAsideRecord);

	/** A store that refuses a whole batch holding a poison record, as a validation error or as PostgreSQL refusing the data. */
	function strictStore(shipped: AuditRecord[], refusal: () => Error) {
		return async (records: AuditRecord[]) => {
			if (records.some(isPoison)) throw refusal();
			shipped.push(...records);
		};
	}
	const validationError = () =>
		new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", [{ type: "uuid", field: "records[0].patientId", message: "The 'patientId' field must be a valid UUID." }]);
	const dataError = () => Object.assign(new Error('invalid input syntax for type uuid: "x"'), { code: "22P02" });

	test.each([
		["a validation error (422)", validationError, "The 'patientId' field must be a valid UUID."],
		["a PostgreSQL data error (22P02)", dataError, 'invalid input syntax for type uuid: "x" (22P02)']
	])("a batch refused for a poison record, by %s: every good record ships, the poison one is set aside, and the journal goes on", async (_kind, refusal, reason) => {
		const shipped: AuditRecord[] = [];
		const setAside: number[] = [];
		const warnings: string[] = [];
		const logger = { info: () => {}, warn: (line: string) => warnings.push(line) };
		const journal = new AuditJournal(file, strictStore(shipped, refusal), logger, { onSetAside: count => setAside.push(count) });
		journal.open();
		const bad = poison(3);
		const before = [1, 2].map(record);
		const after = [4, 5, 6, 7].map(record);
		[...before, bad, ...after].forEach(r => journal.append(r));

		await eventually(async () => (shipped.length === 6 ? true : undefined), 2000, "the good records");
		expect(shipped).toEqual([...before, ...after]);
		expect(journal.pending).toBe(0);
		expect(setAside).toEqual([1]);
		expect(journal.listSetAside()).toEqual({ count: 1, records: [{ id: bad.id, at: expect.any(String), reason }] });
		expect(setAsideLines()).toEqual([{ at: expect.any(String), reason, record: bad }]);
		// Logged once, by id and reason, with nothing else of the record.
		const logged = warnings.filter(line => line.includes(bad.id));
		expect(logged).toHaveLength(1);
		expect(logged[0]).toContain(reason);
		expect(logged[0]).not.toContain("poison");

		const later = record(8);
		journal.append(later);
		await eventually(async () => (shipped.length === 7 ? true : undefined), 2000, "a record appended later");
		expect(shipped.at(-1)).toEqual(later);
		await journal.close();

		// The set-aside record outlives the process; nothing ships twice.
		const reopened = new AuditJournal(file, strictStore(shipped, refusal), quiet);
		reopened.open();
		expect(reopened.listSetAside().records.map(r => r.id)).toEqual([bad.id]);
		await new Promise(resolve => setTimeout(resolve, 200));
		expect(shipped).toHaveLength(7);
		await reopened.close();
	});

	test("a store that answers which records it refused: those are set aside, the others are stored", async () => {
		const stored: AuditRecord[] = [];
		const journal = new AuditJournal(
			file,
			async records => {
				stored.push(...records.filter(r => !isPoison(r)));
				return { stored: records.length - 1, refused: records.flatMap((r, index) => (isPoison(r) ? [{ index, reason: "The 'at' field must be a date-time." }] : [])) };
			},
			quiet
		);
		journal.open();
		const records = [record(1), poison(2), record(3)];
		records.forEach(r => journal.append(r));
		await eventually(async () => (journal.setAsideCount === 1 ? true : undefined), 2000, "the refused record set aside");
		expect(stored.map(r => r.id)).toEqual([records[0].id, records[2].id]);
		expect(journal.listSetAside().records).toEqual([{ id: records[1].id, at: expect.any(String), reason: "The 'at' field must be a date-time." }]);
		await journal.close();
	});

	test("an unreachable store is retried, never a reason to set records aside", async () => {
		const failures = [
			new Errors.ServiceNotFoundError({ action: "audit.record" }),
			new Errors.RequestTimeoutError({ action: "audit.record", nodeID: "audit-1" }),
			Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" })
		];
		const shipped: AuditRecord[] = [];
		const journal = new AuditJournal(
			file,
			async records => {
				const failure = failures.shift();
				if (failure) throw failure;
				shipped.push(...records);
			},
			quiet
		);
		journal.open();
		const records = [1, 2, 3].map(record);
		records.forEach(r => journal.append(r));
		await eventually(async () => (shipped.length === 3 ? true : undefined), 10_000, "delivery after the failures");
		expect(shipped).toEqual(records);
		expect(journal.setAsideCount).toBe(0);
		await journal.close();
	});

	test("a damaged line that is no record is set aside like any refused record, and the good ones ship", async () => {
		const good = [record(1), record(2)];
		fs.writeFileSync(file, [good[0], null, good[1]].map(line => JSON.stringify(line)).join("\n") + "\n");
		const shipped: unknown[] = [];
		const journal = new AuditJournal(
			file,
			async records => {
				const refused = records.flatMap((r, index) => (typeof r?.id === "string" ? [] : [{ index, reason: "The '' field is required." }]));
				shipped.push(...records.filter((_r, index) => !refused.some(refusal => refusal.index === index)));
				return { refused };
			},
			quiet
		);
		journal.open();
		await eventually(async () => (journal.setAsideCount === 1 ? true : undefined), 2000, "the damaged line set aside");
		expect(shipped).toEqual(good);
		expect(journal.listSetAside().records).toEqual([{ id: null, at: expect.any(String), reason: "The '' field is required." }]);
		await journal.close();
	});

	test("a crash after setting a record aside but before noting the shipment sets it aside once", async () => {
		const store = async (records: AuditRecord[]) => ({ refused: records.flatMap((r, index) => (isPoison(r) ? [{ index, reason: "bad" }] : [])) });
		const first = new AuditJournal(file, store, quiet);
		first.open();
		first.append(record(1));
		first.append(poison(2));
		await eventually(async () => (first.setAsideCount === 1 ? true : undefined), 2000, "the record set aside");
		await first.close();
		// The offset as it was before that shipment: the next start ships the batch again.
		fs.writeFileSync(`${file}.offset`, "0");

		const second = new AuditJournal(file, store, quiet);
		second.open();
		await eventually(async () => (second.pending === 0 ? true : undefined), 2000, "the batch shipped again");
		expect(second.setAsideCount).toBe(1);
		expect(setAsideLines()).toHaveLength(1);
		await second.close();
	});

	test("what is a refusal and what is worth a retry", () => {
		expect(refusedForContent(new Errors.ValidationError("bad", "VALIDATION_ERROR", []))).toBe(true);
		expect(refusedForContent(new Errors.MoleculerClientError("bad request", 400))).toBe(true);
		expect(refusedForContent({ code: "22021" })).toBe(true);
		expect(refusedForContent({ code: "23502" })).toBe(true);
		expect(refusedForContent(new Errors.ServiceNotFoundError({ action: "audit.record" }))).toBe(false);
		expect(refusedForContent(new Errors.ServiceNotAvailableError({ action: "audit.record" }))).toBe(false);
		expect(refusedForContent(new Errors.RequestTimeoutError({ action: "audit.record", nodeID: "n" }))).toBe(false);
		expect(refusedForContent(new Errors.MoleculerServerError("boom", 500))).toBe(false);
		// A refusal of the call, not of its records: never a reason to set the trail aside.
		expect(refusedForContent(new Errors.MoleculerClientError("who are you", 401))).toBe(false);
		expect(refusedForContent(new Errors.MoleculerClientError("not you", 403))).toBe(false);
		expect(refusedForContent({ code: "57P01" })).toBe(false);
		expect(refusedForContent({ code: "ECONNRESET" })).toBe(false);
		expect(refusedForContent(new Error("socket hang up"))).toBe(false);
		expect(refusedForContent(undefined)).toBe(false);
	});

	test("a replay ships what the store now takes and keeps what it still refuses, with the new reason", async () => {
		let fixed = false;
		const shipped: AuditRecord[] = [];
		const store = async (records: AuditRecord[]) => {
			// Before the fix every poison record is refused; after it, only those marked incurable.
			const refused = records.flatMap((r, index) => (isPoison(r) && (!fixed || r.role === "incurable") ? [{ index, reason: fixed ? "still bad" : "bad" }] : []));
			shipped.push(...records.filter((_r, index) => !refused.some(refusal => refusal.index === index)));
			return { refused };
		};
		const journal = new AuditJournal(file, store, quiet);
		journal.open();
		const curable = poison(1);
		const incurable = { ...poison(2), role: "incurable" };
		[curable, record(3), incurable].forEach(r => journal.append(r));
		await eventually(async () => (journal.setAsideCount === 2 ? true : undefined), 2000, "two records set aside");

		fixed = true;
		expect(await journal.replaySetAside()).toEqual({ replayed: 2, stored: 1, setAside: 1 });
		expect(shipped.map(r => r.id)).toContain(curable.id);
		expect(journal.listSetAside()).toEqual({ count: 1, records: [{ id: incurable.id, at: expect.any(String), reason: "still bad" }] });
		expect(setAsideLines()).toEqual([expect.objectContaining({ reason: "still bad", record: incurable })]);
		await journal.close();
	});

	test("a replay while the store is away changes nothing", async () => {
		let up = true;
		const journal = new AuditJournal(
			file,
			async records => {
				if (!up) throw new Errors.ServiceNotFoundError({ action: "audit.record" });
				return { refused: records.flatMap((r, index) => (isPoison(r) ? [{ index, reason: "bad" }] : [])) };
			},
			quiet
		);
		journal.open();
		journal.append(poison(1));
		await eventually(async () => (journal.setAsideCount === 1 ? true : undefined), 2000, "the record set aside");
		const before = fs.readFileSync(`${file}.set-aside`, "utf8");
		up = false;
		await expect(journal.replaySetAside()).rejects.toThrow(/audit\.record/);
		expect(fs.readFileSync(`${file}.set-aside`, "utf8")).toBe(before);
		expect(journal.setAsideCount).toBe(1);
		await journal.close();
	});

	test("the backlog: how many records wait, and for how long the oldest", async () => {
		const journal = new AuditJournal(file, async () => Promise.reject(new Error("down")), quiet);
		journal.open();
		expect(journal.backlog()).toEqual({ pending: 0, oldestSeconds: 0 });
		const start = Date.now();
		journal.append(record(1));
		journal.append(record(2));
		const { pending, oldestSeconds } = journal.backlog(start + 90_000);
		expect(pending).toBe(2);
		expect(oldestSeconds).toBeGreaterThanOrEqual(89);
		expect(oldestSeconds).toBeLessThanOrEqual(90);
		await journal.close();

		// After a restart, the age counts from when the record was made.
		const reopened = new AuditJournal(file, async () => Promise.reject(new Error("down")), quiet);
		reopened.open();
		expect(reopened.backlog(start + 90_000).oldestSeconds).toBeGreaterThanOrEqual(89);
		await reopened.close();
	});
});
