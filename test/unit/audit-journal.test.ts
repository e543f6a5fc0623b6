import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { type AuditRecord, AuditJournal } from "../../lib/audit-journal";
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
		await second.close();

		const third = new AuditJournal(file, async records => shipped.push(...records), quiet);
		third.open();
		await new Promise(r => setTimeout(r, 100));
		expect(third.pending).toBe(0);
		expect(shipped).toHaveLength(2);
		await third.close();
	});
});
