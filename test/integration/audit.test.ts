import type { ServiceSchema } from "moleculer";
import PatientsService from "../../services/patients.service";
import BillingService from "../../services/billing.service";
import { type TestCluster, adminLogin, bearer, request, startCluster } from "../helpers/cluster";
import { eventually } from "../helpers/node-process";

/**
 * The audit trail at its edges, through the HTTP gateway, with the real audit
 * service and PostgreSQL: records the store refuses, a journal that cannot ship.
 */
let cluster: TestCluster;
let adminToken: string;

const api = (method: string, path: string, body?: unknown) => request(cluster.baseUrl, method, path, body, bearer(adminToken));

/** The audit records naming `patientId`, once there are at least `count`. */
const auditOf = (patientId: string, count: number) =>
	eventually(async () => {
		const res = await api("GET", `/audit?patientId=${patientId}`);
		return res.body.total >= count ? (res.body.rows as Record<string, unknown>[]) : undefined;
	}, 10_000, `${count} audit record(s) of ${patientId}`);

async function newPatient(): Promise<{ id: string }> {
	const res = await api("POST", "/patients", { name: "Audit Edge", email: `audit.${Date.now()}.${Math.random()}@example.org`, address: "1 Journal Row", dateOfBirth: "1960-02-29" });
	expect(res.status).toBe(201);
	return res.body;
}

beforeAll(async () => {
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
		const patient = await newPatient();
		expect((await api("GET", `/patients/${patient.id}`)).status).toBe(200);

		expect(await auditOf(oddId, 1)).toEqual([expect.objectContaining({ userId: null, action: "patients.get", patientId: oddId, outcome: "denied", status: 401 })]);
		expect(await auditOf(patient.id, 2)).toContainEqual(expect.objectContaining({ role: "ADMIN", action: "patients.get", patientId: patient.id, outcome: "success", status: 200 }));
	});
});
