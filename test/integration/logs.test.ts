import { Writable } from "node:stream";
import type { ServiceSchema } from "moleculer";
import BillingService from "../../services/billing.service";
import PatientsService from "../../services/patients.service";
import { requestContext } from "../../lib/infra/request-context";
import { EVERYONE } from "../../lib/domain/roles";
import { type TestCluster, adminLogin, bearer, request, startCluster } from "../helpers/cluster";
import { patientBody } from "../helpers/fixtures";

/**
 * What the logs hold, read from the JSON lines the services write at info, as
 * in production: an access line per request with its route and ids, a 500's
 * cause, and no patient data anywhere.
 */

const lines: Record<string, any>[] = [];
let cluster: TestCluster;
let admin: Record<string, string>;

const capture = new Writable({
	write(chunk, _encoding, done) {
		for (const line of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(line));
		done();
	}
});

/**
 * A routed action that fails as a bug would, with a database error's detail
 * that repeats a row's values. Named as a service the gateway routes to.
 */
const FaultyService: ServiceSchema = {
	name: "analytics",
	actions: {
		fail: {
			rest: "GET /faulty",
			roles: EVERYONE,
			handler() {
				const cause = Object.assign(new Error("duplicate key value violates unique constraint"), { code: "23505", detail: "Key (email)=(hidden.cause@example.org) already exists." });
				throw new Error("Registering failed", { cause });
			}
		}
	}
};

beforeAll(async () => {
	cluster = await startCluster([PatientsService as ServiceSchema, BillingService as ServiceSchema, FaultyService], {
		logger: {
			type: "Pino",
			options: { level: "info", pino: { options: { mixin: () => ({ requestId: requestContext.getStore()?.requestId }) }, destination: capture } }
		}
	});
	admin = bearer(await adminLogin(cluster.baseUrl));
});

afterAll(() => cluster?.stop());

const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
	request(cluster.baseUrl, method, path, body, { ...admin, ...headers });

/** The access line of the request with this id. */
const accessLine = (requestId: string) => lines.find(line => line.requestId === requestId && line.status !== undefined);

test("registering, searching, reading and failing on a patient leaves no name, email or search term in the logs", async () => {
	const patient = patientBody({ name: "Zebediah Quist", email: "zebediah.quist@example.org", address: "7 Private Lane" });
	const created = await api("POST", "/patients", patient);
	expect(created.status).toBe(201);
	expect((await api("GET", "/patients?search=Zebediah")).body.total).toBe(1);
	expect((await api("GET", `/patients?search=${encodeURIComponent(patient.email)}`)).body.total).toBe(1);
	expect((await api("GET", `/patients?search=${created.body.mrn}`)).body.total).toBe(1);
	expect((await api("GET", `/patients/${created.body.id}`)).status).toBe(200);
	expect((await api("PATCH", `/patients/${created.body.id}`, { address: "8 Private Lane" })).status).toBe(200);
	expect((await api("POST", "/patients", patient)).status).toBe(409);
	expect((await api("POST", "/patients", { ...patient, dateOfBirth: "Zebediah" })).status).toBe(422);
	expect((await api("GET", `/patients/${encodeURIComponent(patient.email)}`)).status).toBe(404);
	expect((await api("GET", "/analytics/faulty")).status).toBe(500);

	const text = JSON.stringify(lines);
	expect(lines.length).toBeGreaterThan(10);
	for (const secret of ["Zebediah", "Quist", "zebediah.quist", "Private Lane", created.body.mrn, "hidden.cause@example.org"]) expect(text).not.toContain(secret);
});

test("every answered request has one structured access line: method, route template, status, ms, request id, user id", async () => {
	const me = await api("GET", "/auth/me");
	const created = await api("POST", "/patients", patientBody(), { "x-request-id": "req-created" });
	await api("GET", `/patients/${created.body.id}?x=1`, undefined, { "x-request-id": "req-read" });
	await api("POST", "/patients", { name: 5 }, { "x-request-id": "req-invalid" });
	await request(cluster.baseUrl, "GET", "/patients", undefined, { "x-request-id": "req-anonymous" });
	await api("GET", "/no/such/route", undefined, { "x-request-id": "req-unrouted" });

	expect(accessLine("req-created")).toMatchObject({ method: "POST", route: "/patients", status: 201, userId: me.body.id, msg: expect.stringMatching(/^POST \/patients 201 [\d.]+ ms$/) });
	expect(accessLine("req-created")?.ms).toEqual(expect.any(Number));
	expect(accessLine("req-read")).toMatchObject({ method: "GET", route: "/patients/:id", status: 200, userId: me.body.id });
	expect(accessLine("req-invalid")).toMatchObject({ method: "POST", route: "/patients", status: 422, userId: me.body.id });
	expect(accessLine("req-anonymous")).toMatchObject({ method: "GET", route: "/patients", status: 401, userId: null });
	expect(accessLine("req-unrouted")).toMatchObject({ method: "GET", route: null, status: 404 });
	for (const id of ["req-created", "req-read", "req-invalid", "req-anonymous", "req-unrouted"]) {
		expect(lines.filter(line => line.requestId === id && line.status !== undefined)).toHaveLength(1);
	}
});

test("a 500 is logged with its cause, stack and request id, and leaves the client nothing of it", async () => {
	const res = await api("GET", "/analytics/faulty", undefined, { "x-request-id": "req-faulty" });
	expect(res.status).toBe(500);
	expect(res.body).toEqual({ name: "InternalServerError", message: "Internal server error", code: 500, type: "INTERNAL_ERROR", data: null });
	const failure = lines.find(line => line.requestId === "req-faulty" && line.level === 50);
	expect(failure).toMatchObject({ method: "GET", route: "/analytics/faulty", msg: "Request failed" });
	expect(failure?.error).toMatchObject({ type: "Error", message: "Registering failed", stack: expect.stringContaining("logs.test.ts"), cause: { message: "duplicate key value violates unique constraint", code: "23505" } });
	expect(JSON.stringify(failure)).not.toContain("Key (email)");
});
