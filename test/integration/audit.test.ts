import crypto from "node:crypto";
import type { ActionSchema, ServiceSchema } from "moleculer";
import PatientsService from "../../services/patients.service";
import BillingService from "../../services/billing.service";
import AuditService from "../../services/audit.service";
import { config } from "../../lib/infra/config";
import type { AuditJournal, AuditRecord } from "../../lib/infra/audit-journal";
import { replCommands } from "../../lib/tooling/repl-commands";
import { type TestCluster, adminLogin, bearer, request, startCluster } from "../helpers/cluster";
import { createPatient } from "../helpers/fixtures";
import { eventually } from "../helpers/node-process";

/**
 * The audit trail at its edges, through the HTTP gateway, with the real audit
 * service and PostgreSQL: ids of any UUID version, records the audit service
 * refuses (set aside, listed, replayed), and a journal that cannot ship.
 */
let cluster: TestCluster;
let adminToken: string;

const api = (method: string, path: string, body?: unknown) => request(cluster.baseUrl, method, path, body, bearer(adminToken));

/** The audit records naming `patientId`, once there are at least `count`. */
const auditOf = (patientId: string, count: number) =>
	eventually(async () => {
		const res = await api("GET", `/audit?patientId=${patientId}`);
		return res.body.total >= count ? (res.body.rows as Record<string, unknown>[]) : undefined;
	}, 15_000, `${count} audit record(s) of ${patientId}`);

/** A value of the gateway node's Prometheus endpoint. */
async function metric(name: string): Promise<number | undefined> {
	const port = (cluster.broker.metrics as unknown as { reporter: { server: { address(): { port: number } } }[] }).reporter[0].server.address().port;
	const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
	const match = text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m"));
	return match ? Number(match[1]) : undefined;
}

/** What the REPL's `audit-set-aside` command prints, run on this process's broker. */
async function replAuditSetAside(replay?: "replay"): Promise<unknown> {
	const command = replCommands.find(c => c.command.startsWith("audit-set-aside "))!;
	const log = jest.spyOn(console, "log").mockImplementation(() => {});
	try {
		await command.action(cluster.broker, { replay } as never, {});
		return JSON.parse(log.mock.calls.map(call => call.join(" ")).join("\n"));
	} finally {
		log.mockRestore();
	}
}

/** Replaces the running audit service by one made from `schema`. */
async function runAudit(schema: ServiceSchema): Promise<void> {
	const running = cluster.broker.getLocalService("audit");
	if (running) await cluster.broker.destroyService(running);
	cluster.broker.createService(schema);
	await cluster.broker.waitForServices(["audit"]);
}

/**
 * The audit service as it was before this fix, where it matters here: the
 * batch checked as a whole with fastest-validator's own `uuid` rule, and every
 * record of a batch that passed sent to the insert.
 */
const AuditServiceBefore: ServiceSchema = {
	...(AuditService as ServiceSchema),
	actions: {
		...AuditService.actions,
		record: {
			...(AuditService.actions!.record as ActionSchema),
			params: { records: { type: "array", max: 1000, items: { type: "object", props: { patientId: { type: "uuid", nullable: true } } } } }
		}
	},
	created() {
		this.checkRecord = () => true;
	}
};

beforeAll(async () => {
	// For this file: a journal stuck for a second is already too long (see the /ready test).
	config.auditJournalMaxAgeSeconds = 1;
	cluster = await startCluster([PatientsService as ServiceSchema, BillingService as ServiceSchema]);
	adminToken = await adminLogin(cluster.baseUrl);
});

afterAll(async () => {
	await cluster?.stop();
});

describe("what an id is", () => {
	test("an anonymous request for an id of no UUID version is recorded, and so is every access after it", async () => {
		// A UUID to PostgreSQL and the gateway, but not to fastest-validator's `uuid` rule (no version digit).
		const oddId = "00000000-0000-0000-0000-000000000001";
		expect((await request(cluster.baseUrl, "GET", `/patients/${oddId}`)).status).toBe(401);
		const patient = await createPatient(api);
		expect((await api("GET", `/patients/${patient.id}`)).status).toBe(200);

		expect(await auditOf(oddId, 1)).toEqual([expect.objectContaining({ userId: null, action: "patients.get", patientId: oddId, outcome: "denied", status: 401 })]);
		expect(await auditOf(patient.id, 2)).toContainEqual(expect.objectContaining({ role: "ADMIN", action: "patients.get", patientId: patient.id, outcome: "success", status: 200 }));
	});

	test("a client's X-Request-ID longer than the trail keeps is cut, and the access recorded", async () => {
		const patient = await createPatient(api);
		const requestId = `r${"x".repeat(300)}`;
		expect((await request(cluster.baseUrl, "GET", `/patients/${patient.id}`, undefined, { ...bearer(adminToken), "x-request-id": requestId })).status).toBe(200);
		const rows = await auditOf(patient.id, 2);
		expect(rows).toContainEqual(expect.objectContaining({ action: "patients.get", requestId: requestId.slice(0, 100) }));
	});
});

describe("records the audit service refuses", () => {
	test("the audit service stores the good records of a batch and names the ones it refuses, and why", async () => {
		const good = { id: crypto.randomUUID(), at: new Date().toISOString(), userId: null, role: null, action: "patients.get", resource: "patient", patientId: crypto.randomUUID(), outcome: "denied", status: 401, ip: null, requestId: null };
		const bad = [{ ...good, id: crypto.randomUUID(), at: "yesterday" }, { ...good, id: "not-an-id" }, null];
		const answer = await cluster.broker.call("audit.record", { records: [bad[0], good, bad[1], bad[2]] });
		expect(answer).toEqual({
			stored: 1,
			refused: [
				{ index: 0, reason: expect.stringMatching(/'at'/) },
				{ index: 2, reason: expect.stringMatching(/'id' field must be a valid UUID/) },
				{ index: 3, reason: expect.any(String) }
			]
		});
		expect(await auditOf(good.patientId, 1)).toEqual([expect.objectContaining({ id: good.id })]);
	});

	test("refused by an older audit service, a record is set aside and counted while the others ship; the REPL lists it, and its replay after the fix stores it", async () => {
		const broker = cluster.broker;
		const journal = (broker.getLocalService("api") as unknown as { auditJournal: AuditJournal }).auditJournal;
		const setAsideBefore = (await metric("medsync_audit_journal_set_aside_total")) ?? 0;
		// A record no audit service will take (its time is no time): PostgreSQL refuses it, and the batch with it.
		const incurable: AuditRecord = { id: crypto.randomUUID(), at: "no time", userId: null, role: null, action: "patients.get", resource: "patient", patientId: null, outcome: "error", status: 500, ip: null, requestId: null };
		try {
			await runAudit(AuditServiceBefore);
			const oddId = "00000000-0000-0000-0000-000000000002";
			expect((await request(cluster.baseUrl, "GET", `/patients/${oddId}`)).status).toBe(401);
			journal.append(incurable);
			const patient = await createPatient(api);
			expect((await api("GET", `/patients/${patient.id}`)).status).toBe(200);

			// Every good record arrives, and the two the service refused wait beside the journal.
			await auditOf(patient.id, 2);
			const listed = await eventually(async () => {
				const list = await broker.call<{ count: number; records: { id: string; at: string; reason: string }[] }>("api.auditSetAside");
				return list.count === 2 ? list : undefined;
			}, 15_000, "two records set aside");
			expect(listed.records).toEqual(
				expect.arrayContaining([
					{ id: expect.any(String), at: expect.any(String), reason: expect.stringMatching(/patientId.*UUID/) },
					{ id: incurable.id, at: expect.any(String), reason: expect.stringMatching(/\(22007\)$/) }
				])
			);
			expect(await replAuditSetAside()).toEqual({ [broker.nodeID]: listed });
			expect(await metric("medsync_audit_journal_set_aside_total")).toBe(setAsideBefore + 2);
			await eventually(async () => ((await metric("medsync_audit_journal_set_aside")) === 2 ? true : undefined), 5000, "the set-aside gauge");
			expect((await api("GET", `/audit?patientId=${oddId}`)).body.total).toBe(0);
		} finally {
			await runAudit(AuditService as ServiceSchema);
		}

		// The operator's actions answer over the broker only.
		expect((await api("GET", "/api/auditSetAside")).status).toBe(404);
		expect((await api("POST", "/api/auditReplaySetAside")).status).toBe(404);

		expect(await replAuditSetAside("replay")).toEqual({ [broker.nodeID]: { replayed: 2, stored: 1, setAside: 1 } });
		expect(await auditOf("00000000-0000-0000-0000-000000000002", 1)).toEqual([expect.objectContaining({ action: "patients.get", outcome: "denied", status: 401 })]);
		const left = await broker.call<{ count: number; records: { id: string; reason: string }[] }>("api.auditSetAside");
		expect(left).toEqual({ count: 1, records: [expect.objectContaining({ id: incurable.id, reason: expect.stringMatching(/'at'/) })] });
	});
});

describe("a stuck journal", () => {
	test("/ready is degraded, and the backlog metrics say why, while the oldest record waits longer than the limit", async () => {
		const broker = cluster.broker;
		const waitedFor = config.readyServices;
		// The services this file runs, so that /ready can be 200.
		config.readyServices = ["auth", "audit", "patients", "billing"];
		try {
			await eventually(async () => ((await request(cluster.baseUrl, "GET", "/ready")).status === 200 ? true : undefined), 15_000, "ready");
			await broker.destroyService(broker.getLocalService("audit")!);
			const patient = await createPatient(api);

			const stuck = await eventually(async () => {
				const res = await request(cluster.baseUrl, "GET", "/ready");
				return res.body.checks.auditJournal.startsWith("degraded") ? res : undefined;
			}, 15_000, "/ready to see the stuck journal");
			expect(stuck.status).toBe(503);
			expect(stuck.body.checks.auditJournal).toMatch(/^degraded: \d+ record\(s\) not yet in the audit trail, the oldest for \d+ s \(limit 1 s\)$/);
			await eventually(async () => ((await metric("medsync_audit_journal_oldest_seconds"))! > 1 ? true : undefined), 5000, "the age gauge");
			expect(await metric("medsync_audit_journal_pending")).toBeGreaterThanOrEqual(1);

			broker.createService(AuditService as ServiceSchema);
			await broker.waitForServices(["audit"]);
			const ready = await eventually(async () => {
				const res = await request(cluster.baseUrl, "GET", "/ready");
				return res.status === 200 ? res : undefined;
			}, 40_000, "ready again");
			expect(ready.body.checks.auditJournal).toBe("up");
			await auditOf(patient.id, 1);
			await eventually(async () => ((await metric("medsync_audit_journal_pending")) === 0 ? true : undefined), 5000, "an empty backlog");
		} finally {
			config.readyServices = waitedFor;
			if (!broker.getLocalService("audit")) await runAudit(AuditService as ServiceSchema);
		}
	}, 90_000);
});
