import type { ServiceSchema } from "moleculer";
import AppointmentsService from "../../services/appointments.service";
import BillingService from "../../services/billing.service";
import DoctorsService from "../../services/doctors.service";
import PatientsService from "../../services/patients.service";
import { type TestCluster, adminLogin, bearer, request, startCluster } from "../helpers/cluster";
import { doctorBody, patientBody } from "../helpers/fixtures";

/**
 * The classes of bad input that once gave a 500 or were silently misread, each
 * through the gateway with the real services and PostgreSQL behind it.
 */

let cluster: TestCluster;
let admin: Record<string, string>;

beforeAll(async () => {
	cluster = await startCluster([PatientsService, BillingService, DoctorsService, AppointmentsService] as ServiceSchema[]);
	admin = bearer(await adminLogin(cluster.baseUrl));
});

afterAll(() => cluster?.stop());

const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
	request(cluster.baseUrl, method, path, body, { ...admin, ...headers });

/** Every error body has all five fields, and names no node or action. */
function expectErrorBody(res: { status: number; body: any }, status: number, type?: string) {
	expect(res.status).toBe(status);
	expect(Object.keys(res.body).sort()).toEqual(["code", "data", "message", "name", "type"]);
	expect(res.body.code).toBe(status);
	if (type) expect(res.body.type).toBe(type);
	expect(JSON.stringify(res.body)).not.toMatch(/nodeID|"action"/);
}

describe("paging bounds", () => {
	test.each(["/patients", "/doctors", "/appointments", "/billing/accounts", "/audit", "/auth/users"])("GET %s?page=99999999999999999999 is 422 naming page", async path => {
		const res = await api("GET", `${path}?page=99999999999999999999`);
		expectErrorBody(res, 422, "VALIDATION_ERROR");
		expect(res.body.data.map((e: { field: string }) => e.field)).toEqual(["page"]);
	});

	test("the last allowed page is an empty page, not an error", async () => {
		const res = await api("GET", "/patients?page=1000000&pageSize=100");
		expect(res.status).toBe(200);
		expect(res.body.rows).toEqual([]);
	});
});

describe("control characters", () => {
	test("a NUL in a body's string is 422 naming the field, on create and update", async () => {
		const created = await api("POST", "/patients", patientBody({ name: "Nul\u0000Byte" }));
		expectErrorBody(created, 422, "VALIDATION_ERROR");
		expect(created.body.data).toEqual([expect.objectContaining({ field: "name", type: "controlCharacter" })]);
		const doctor = await api("POST", "/doctors", doctorBody());
		expect(doctor.status).toBe(201);
		const patched = await api("PATCH", `/doctors/${doctor.body.id}`, { address: "line\u0000two" });
		expect(patched.body.data).toEqual([expect.objectContaining({ field: "address", type: "controlCharacter" })]);
	});

	test("a NUL in a query value or a path id is 422, never a 500", async () => {
		const search = await api("GET", "/patients?search=ada%00lovelace");
		expectErrorBody(search, 422, "VALIDATION_ERROR");
		expect(search.body.data[0].field).toBe("search");
		expectErrorBody(await api("GET", "/patients/abc%00def"), 422, "VALIDATION_ERROR");
	});

	test("line breaks and tabs in an address are kept", async () => {
		const res = await api("POST", "/patients", patientBody({ address: "Flat 2\n12 High St\tNorth" }));
		expect(res.status).toBe(201);
		expect(res.body.address).toBe("Flat 2\n12 High St\tNorth");
	});
});

describe("null for a field that is optional but not nullable", () => {
	test.each(["timezone", "consultationFee", "slotMinutes", "availability"])("a doctor's %s: null is 422 on create and on update", async field => {
		const created = await api("POST", "/doctors", doctorBody({ [field]: null }));
		expectErrorBody(created, 422, "VALIDATION_ERROR");
		expect(created.body.data).toEqual([expect.objectContaining({ field, type: "notNullable" })]);
		const doctor = await api("POST", "/doctors", doctorBody());
		const patched = await api("PATCH", `/doctors/${doctor.body.id}`, { [field]: null });
		expect(patched.body.data).toEqual([expect.objectContaining({ field, type: "notNullable" })]);
	});

	test("a nullable field still clears with null", async () => {
		const doctor = await api("POST", "/doctors", doctorBody({ phone: "+44 20 7946 0000" }));
		const patched = await api("PATCH", `/doctors/${doctor.body.id}`, { phone: null });
		expect(patched.status).toBe(200);
		expect(patched.body.phone).toBeNull();
	});
});

describe("content types", () => {
	test.each([
		["text/plain", '{"name":"x"}'],
		["application/xml", "<patient><name>x</name></patient>"],
		["multipart/form-data; boundary=xyz", '--xyz\r\nContent-Disposition: form-data; name="name"\r\n\r\nx\r\n--xyz--\r\n'],
		["application/x-www-form-urlencoded", "name=x"]
	])("a %s body to a JSON route is 415, and nothing is written", async (contentType, body) => {
		const before = (await api("GET", "/patients?pageSize=1")).body.total;
		const res = await api("POST", "/patients", body, { "content-type": contentType });
		expectErrorBody(res, 415, "UNSUPPORTED_MEDIA_TYPE");
		expect((await api("GET", "/patients?pageSize=1")).body.total).toBe(before);
	});

	test("a JSON-based media type and a charset are read as JSON; a request without a body needs no content type", async () => {
		const res = await api("POST", "/patients", patientBody(), { "content-type": "application/vnd.medsync+json; charset=utf-8" });
		expect(res.status).toBe(201);
		const bodiless = await fetch(`${cluster.baseUrl}/auth/logout`, { method: "POST", headers: bearer(await adminLogin(cluster.baseUrl)) });
		expect(bodiless.status).toBe(204);
	});
});

describe("prototype keys", () => {
	test.each(["__proto__", "constructor", "prototype"])("a %s key in a body is 422 naming it, as any unknown key is", async key => {
		const body = `{"name":"Proto","email":"proto.${key}@example.org","address":"x","dateOfBirth":"1990-01-01","${key}":{"admin":true}}`;
		const res = await api("POST", "/patients", body);
		expectErrorBody(res, 422, "VALIDATION_ERROR");
		expect(res.body.data.map((e: { field: string }) => e.field)).toEqual([key]);
	});

	test("in a query, too", async () => {
		for (const query of ["__proto__=1", "constructor=1", "__proto__[admin]=1"]) {
			const res = await api("GET", `/patients?${query}`);
			expectErrorBody(res, 422, "VALIDATION_ERROR");
		}
	});

	test("nested in an object", async () => {
		const res = await api("POST", "/doctors", `{"name":"Dr P","email":"dr.p@example.org","specialization":"G","address":"x","joiningDate":"2020-01-01","availability":[{"day":"monday","start":"09:00","end":"10:00","__proto__":{"x":1}}]}`);
		expectErrorBody(res, 422, "VALIDATION_ERROR");
	});
});

describe("every error body", () => {
	test("400 malformed JSON, 401 no token, 404 unknown route, 409 conflict and 413 too large all carry data", async () => {
		expectErrorBody(await api("POST", "/patients", "{"), 400, "INVALID_JSON");
		expectErrorBody(await request(cluster.baseUrl, "GET", "/patients"), 401, "UNAUTHORIZED");
		expectErrorBody(await api("GET", "/no/such/route"), 404, "NOT_FOUND");
		const patient = patientBody();
		expect((await api("POST", "/patients", patient)).status).toBe(201);
		expectErrorBody(await api("POST", "/patients", patient), 409, "CONFLICT");
		expectErrorBody(await api("POST", "/patients", { name: "x".repeat(200 * 1024) }), 413, "PAYLOAD_TOO_LARGE");
	});

	test("a refused role names the route, not the action", async () => {
		const signup = await request(cluster.baseUrl, "POST", "/auth/signup", { email: "viewer.edge@example.org", password: "a sturdy passphrase 42" });
		expect(signup.status).toBe(201);
		const login = await request(cluster.baseUrl, "POST", "/auth/login", { email: "viewer.edge@example.org", password: "a sturdy passphrase 42" });
		const res = await request(cluster.baseUrl, "DELETE", "/patients/00000000-0000-0000-0000-000000000001", undefined, bearer(login.body.token));
		expectErrorBody(res, 403, "FORBIDDEN");
		expect(res.body.message).toBe("The VIEWER role may not DELETE /patients/:id");
	});
});

describe("security headers", () => {
	function expectApiHeaders(headers: Headers) {
		expect(headers.get("x-content-type-options")).toBe("nosniff");
		expect(headers.get("cache-control")).toBe("no-store");
		expect(headers.get("referrer-policy")).toBe("no-referrer");
		expect(headers.get("x-frame-options")).toBe("DENY");
		expect(headers.get("content-security-policy")).toBe("default-src 'none';frame-ancestors 'none'");
	}

	test("on answers carrying patient data, and on every kind of error", async () => {
		const created = await api("POST", "/patients", patientBody());
		expectApiHeaders(created.headers);
		expectApiHeaders((await api("GET", `/patients/${created.body.id}`)).headers);
		expectApiHeaders((await request(cluster.baseUrl, "GET", "/patients")).headers);
		expectApiHeaders((await api("GET", "/no/such/route")).headers);
		expectApiHeaders((await api("POST", "/patients", "{")).headers);
		expectApiHeaders((await api("POST", "/patients", { name: "x".repeat(200 * 1024) })).headers);
		expectApiHeaders((await request(cluster.baseUrl, "GET", "/health")).headers);
	});

	test("HSTS only over TLS: here behind a proxy that says it terminated TLS (TRUST_PROXY)", async () => {
		expect((await api("GET", "/patients")).headers.get("strict-transport-security")).toBeNull();
		const overTls = await api("GET", "/patients", undefined, { "x-forwarded-proto": "https" });
		expect(overTls.headers.get("strict-transport-security")).toBe("max-age=31536000; includeSubDomains");
		// The proxy's entry is the last; an earlier one is the client's claim.
		const claimed = await api("GET", "/patients", undefined, { "x-forwarded-proto": "https, http" });
		expect(claimed.headers.get("strict-transport-security")).toBeNull();
	});

	test("the docs page may load its own scripts and styles, and nothing else", async () => {
		const page = await fetch(`${cluster.baseUrl}/docs`);
		expect(page.headers.get("content-security-policy")).toContain("default-src 'self'");
		expect(page.headers.get("x-frame-options")).toBe("DENY");
		expect(await page.text()).not.toMatch(/<script>[^<]/);
		expect((await fetch(`${cluster.baseUrl}/docs/init.js`)).status).toBe(200);
	});
});
