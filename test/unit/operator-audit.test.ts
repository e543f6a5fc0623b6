import crypto from "node:crypto";
import os from "node:os";
import { type Context, ServiceBroker } from "moleculer";
import type { AuditRecord } from "../../lib/infra/audit-journal";
import { OperatorAuditMiddleware, OperatorIdentityMiddleware, UNKNOWN_OPERATOR, operatorIdentity } from "../../lib/infra/operator-audit";
import brokerConfig from "../../moleculer.config";
import { failure } from "../helpers/expect";

/**
 * The audit of operators' calls (lib/infra/operator-audit.ts) on one broker:
 * an audited action of a stand-in patients service, an audit service that
 * keeps what it is sent (or refuses it), and REPL calls as moleculer-repl makes
 * them (meta.$repl). The REPL's own test (operations.test.ts) runs the real
 * services and GET /audit.
 */
const records: AuditRecord[] = [];
let auditAnswer: "store" | "refuse" | "fail" = "store";
const patientId = crypto.randomUUID();

const broker = new ServiceBroker({ logger: false, validator: brokerConfig.validator, middlewares: [OperatorAuditMiddleware, OperatorIdentityMiddleware(false)] });

beforeAll(async () => {
	broker.createService({
		name: "audit",
		actions: {
			record(ctx: Context<{ records: AuditRecord[] }>) {
				if (auditAnswer === "fail") throw new Error("the audit database is away");
				if (auditAnswer === "refuse") return { stored: 0, refused: [{ index: 0, reason: "bad record" }] };
				records.push(...ctx.params.records);
				return { stored: ctx.params.records.length, refused: [] };
			}
		}
	});
	broker.createService({
		name: "patients",
		actions: {
			get: { audit: "patient", handler: (ctx: Context<{ id: string }>) => ({ id: ctx.params.id, name: "A Patient" }) },
			missing: {
				audit: "patient",
				handler() {
					throw Object.assign(new Error("Patient not found"), { code: 404 });
				}
			},
			// Reads two patients on the caller's behalf, as a service's action does when it asks another.
			both: { audit: "patient", handler: (ctx: Context<{ ids: string[] }>) => Promise.all(ctx.params.ids.map(id => ctx.call("patients.get", { id }))) },
			// Not audited itself, but reads a patient.
			summary: (ctx: Context<{ id: string }>) => ctx.call("patients.get", { id: ctx.params.id }),
			// What the audit of the operator's call leaves in the meta it hands back.
			metaAfter: async (ctx: Context<{ id: string }>) => {
				await ctx.call("patients.get", { id: ctx.params.id });
				return { ...ctx.meta };
			}
		}
	});
	await broker.start();
});

afterAll(() => broker.stop());

beforeEach(() => {
	records.length = 0;
	auditAnswer = "store";
});

const replCall = (action: string, params: object, meta: object = {}) => broker.call(action, params, { meta: { $repl: true, ...meta } });

test("names the operator as `<OS user>@<host>`", () => {
	expect(operatorIdentity()).toBe(`${os.userInfo().username}@${os.hostname()}`);
});

test("a REPL call of an audited action is recorded with the operator, the patient and the outcome", async () => {
	expect(await replCall("patients.get", { id: patientId })).toEqual({ id: patientId, name: "A Patient" });
	expect(records).toEqual([
		expect.objectContaining({ action: "patients.get", resource: "patient", patientId, outcome: "success", status: 200, userId: null, operator: operatorIdentity() })
	]);
	await expect(replCall("patients.missing", { id: patientId })).rejects.toMatchObject({ code: 404 });
	expect(records[1]).toMatchObject({ action: "patients.missing", patientId, outcome: "error", status: 404 });
});

test("a REPL call that names no operator is recorded as unknown; one claiming a gateway user is still the operator's", async () => {
	// A node that is not a REPL (no OperatorIdentity of its own) passing on moleculer-repl's mark alone.
	const bare = new ServiceBroker({ logger: false, nodeID: "bare", middlewares: [OperatorAuditMiddleware] });
	bare.createService({ name: "patients", actions: { get: { audit: "patient", handler: (ctx: Context<{ id: string }>) => ({ id: ctx.params.id }) } } });
	bare.createService({ name: "audit", actions: { record: (ctx: Context<{ records: AuditRecord[] }>) => (records.push(...ctx.params.records), { refused: [] }) } });
	await bare.start();
	try {
		await bare.call("patients.get", { id: patientId }, { meta: { $repl: true } });
		await bare.call("patients.get", { id: patientId }, { meta: { $repl: true, operator: "  " } });
	} finally {
		await bare.stop();
	}
	await replCall("patients.get", { id: patientId }, { user: { id: crypto.randomUUID(), role: "ADMIN" } });
	expect(records.map(r => r.operator)).toEqual([UNKNOWN_OPERATOR, UNKNOWN_OPERATOR, operatorIdentity()]);
});

test("the calls an operator's call makes are recorded once: by the outermost audited action, or each when it is not audited", async () => {
	const other = crypto.randomUUID();
	await replCall("patients.both", { ids: [patientId, other] });
	expect(records.map(r => r.action)).toEqual(["patients.both"]);
	records.length = 0;
	await replCall("patients.summary", { id: patientId });
	await replCall("patients.summary", { id: other });
	expect(records.map(r => [r.action, r.patientId])).toEqual([
		["patients.get", patientId],
		["patients.get", other]
	]);
	// The mark that spares nested calls does not come back to the caller, whose next read is recorded.
	const meta = (await replCall("patients.metaAfter", { id: patientId })) as Record<string, unknown>;
	expect(meta.$operatorAudited).toBeUndefined();
});

test("gateway calls (a user) and a service's own calls (neither user nor operator) are not recorded here", async () => {
	await broker.call("patients.get", { id: patientId }, { meta: { user: { id: crypto.randomUUID(), role: "ADMIN" } } });
	await broker.call("patients.get", { id: patientId });
	expect(records).toEqual([]);
});

test("if the audit trail does not take the record, the answer is withheld (503)", async () => {
	auditAnswer = "fail";
	expect(await failure(replCall("patients.get", { id: patientId }))).toMatchObject({ code: 503, type: "AUDIT_UNAVAILABLE" });
	auditAnswer = "refuse";
	const refused = await failure(replCall("patients.get", { id: patientId }));
	expect(refused).toMatchObject({ code: 503, message: expect.stringContaining("refused: bad record") });
	expect(JSON.stringify(refused)).not.toContain("A Patient");
});
