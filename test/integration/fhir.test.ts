import fc from "fast-check";
import type { ServiceSchema } from "moleculer";
import AppointmentsService from "../../services/appointments.service";
import BillingService from "../../services/billing.service";
import DoctorsService from "../../services/doctors.service";
import FhirService from "../../services/fhir.service";
import PatientsService from "../../services/patients.service";
import { MRN_SYSTEM } from "../../services/fhir/conventions";
import { type TestCluster, type TestUser, adminLogin, bearer, createUser, request, startCluster } from "../helpers/cluster";
import { type FhirValidatorRun, startFhirValidator } from "../helpers/fhir-validator";
import { createDoctor, fhirPatientBody, uniqueEmail } from "../helpers/fixtures";
import { eventually } from "../helpers/node-process";
import { SERVER_WAIT_MS } from "../helpers/servers";

/**
 * The FHIR API through the gateway, driven by a FHIR client library no one here
 * wrote (fhir-kit-client) and by plain HTTP for what a client library hides
 * (statuses, headers). Every resource MedSync answers with is kept, and HAPI
 * FHIR's validator checks them all against the R4 base profiles at the end.
 */

type Resource = { resourceType: string; id?: string; [key: string]: any };
type FhirClient = {
	capabilityStatement(): Promise<Resource>;
	create(p: { resourceType: string; body: object; options?: object }): Promise<Resource>;
	read(p: { resourceType: string; id: string }): Promise<Resource>;
	update(p: { resourceType: string; id: string; body: object }): Promise<Resource>;
	search(p: { resourceType: string; searchParams: Record<string, string | number | string[]> }): Promise<Resource>;
	nextPage(p: { bundle: object }): Promise<Resource> | undefined;
	patch(p: { resourceType: string; id: string; jsonPatch: object[] }): Promise<Resource>;
};

let cluster: TestCluster;
let adminToken: string;
let users: Record<"RECEPTIONIST" | "DOCTOR" | "VIEWER", TestUser>;
let client: FhirClient;
let validator: FhirValidatorRun;
const emitted: Resource[] = [];

/** Keeps every resource an answer carries, and hands it to the validator. */
function keep<T>(body: T): T {
	if (body && typeof body === "object" && "resourceType" in body) {
		emitted.push(body as Resource);
		validator.submit(body as Resource);
	}
	return body;
}

const FHIR_HEADERS = { "content-type": "application/fhir+json", accept: "application/fhir+json" };
async function fhir(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, token: string | null = adminToken) {
	const res = await request(cluster.baseUrl, method, `/fhir${path}`, body, { ...FHIR_HEADERS, ...(token && bearer(token)), ...headers });
	keep(res.body);
	return res;
}

function expectOutcome(res: { status: number; headers: Headers; body: any }, status: number, code: string, expression?: string) {
	expect(res.status).toBe(status);
	expect(res.headers.get("content-type")).toMatch(/^application\/fhir\+json/);
	expect(res.body.resourceType).toBe("OperationOutcome");
	expect(res.body.issue[0]).toMatchObject({ severity: "error", code });
	if (expression) expect(res.body.issue.flatMap((i: any) => i.expression ?? [])).toContain(expression);
}

const api = (method: string, path: string, body?: unknown, token = adminToken) => request(cluster.baseUrl, method, path, body, bearer(token));

beforeAll(async () => {
	validator = startFhirValidator();
	cluster = await startCluster([PatientsService, BillingService, DoctorsService, AppointmentsService, FhirService] as ServiceSchema[]);
	adminToken = await adminLogin(cluster.baseUrl);
	users = {
		RECEPTIONIST: await createUser(cluster.baseUrl, adminToken, "RECEPTIONIST"),
		DOCTOR: await createUser(cluster.baseUrl, adminToken, "DOCTOR"),
		VIEWER: await createUser(cluster.baseUrl, adminToken, "VIEWER")
	};
	const { Client } = (await import("fhir-kit-client")) as unknown as { Client: new (config: object) => FhirClient };
	client = new Client({ baseUrl: `${cluster.baseUrl}/fhir`, bearerToken: adminToken });
	for (const method of ["capabilityStatement", "create", "read", "update", "search", "nextPage", "patch"] as const) {
		const call = client[method].bind(client) as (...args: any[]) => Promise<Resource> | undefined;
		(client as any)[method] = (...args: any[]) => call(...args)?.then(keep);
	}
}, SERVER_WAIT_MS);

afterAll(async () => {
	await cluster?.stop();
	// Whatever the tests did, the validator's JVM ends with the suite.
	validator?.stop();
});

describe("metadata", () => {
	test("a CapabilityStatement, public, in FHIR JSON, whatever Accept or _format asks for JSON", async () => {
		const statement = await client.capabilityStatement();
		expect(statement).toMatchObject({ resourceType: "CapabilityStatement", fhirVersion: "4.0.1", kind: "instance", format: expect.arrayContaining(["application/fhir+json"]) });
		const types = statement.rest[0].resource.map((r: any) => r.type);
		expect(types).toEqual(["Patient", "Practitioner", "PractitionerRole", "Schedule", "Slot", "Appointment", "AuditEvent"]);
		const patient = statement.rest[0].resource[0];
		expect(patient.interaction.map((i: any) => i.code)).toEqual(["read", "vread", "history-instance", "search-type", "create", "update", "delete"]);
		expect(patient).toMatchObject({ versioning: "versioned-update", readHistory: true });
		expect(patient.conditionalCreate).toBe(true);
		const anonymous = await fhir("GET", "/metadata?_format=json", undefined, { accept: "application/json" }, null);
		expect(anonymous.status).toBe(200);
		expect(anonymous.headers.get("content-type")).toMatch(/^application\/fhir\+json/);
		expectOutcome(await fhir("GET", "/metadata?_format=xml", undefined, {}, null), 406, "not-supported");
		expectOutcome(await fhir("GET", "/metadata", undefined, { accept: "application/fhir+xml" }, null), 406, "not-supported");
	});

	test("tells the truth: every search parameter it lists is taken under Prefer: handling=strict, and one it does not list is refused", async () => {
		const statement = (await fhir("GET", "/metadata")).body;
		const doctor = await createDoctor(api);
		const patient = await client.create({ resourceType: "Patient", body: fhirPatientBody() });
		const sample: Record<string, string> = {
			_id: patient.id!,
			identifier: "10000008",
			name: "Fhir",
			email: "nobody@example.org",
			birthdate: "ge1900-01-01",
			practitioner: `Practitioner/${doctor.id}`,
			patient: `Patient/${patient.id}`,
			specialty: "Cardiology",
			actor: `Practitioner/${doctor.id}`,
			schedule: `Schedule/${doctor.id}`,
			start: "ge2020-01-01",
			date: "ge2020-01-01",
			status: "free",
			altid: crypto.randomUUID(),
			_count: "5",
			_page: "1",
			_total: "accurate"
		};
		for (const resource of statement.rest[0].resource) {
			for (const param of resource.searchParam ?? []) {
				if (param.name === "_sort") continue;
				const query = new URLSearchParams({ [param.name]: sample[param.name] });
				if (resource.type === "Slot" && param.name !== "schedule") query.append("schedule", sample.schedule);
				if (resource.type === "Appointment" && param.name === "status") query.set("status", "booked");
				const res = await fhir("GET", `/${resource.type}?${query}`, undefined, { prefer: "handling=strict" });
				expect([resource.type, param.name, res.status]).toEqual([resource.type, param.name, 200]);
			}
			if (resource.interaction.some((i: any) => i.code === "search-type")) {
				expectOutcome(await fhir("GET", `/${resource.type}?nonsense=1`, undefined, { prefer: "handling=strict" }), 400, "invalid", "nonsense");
			}
		}
		const lenient = await fhir("GET", "/Patient?nonsense=1&_count=1");
		expect(lenient.status).toBe(200);
		expect(lenient.body.link[0].url).not.toContain("nonsense");
	});
});

describe("Patient", () => {
	test("create, read, update and delete, with Location, the MRN as identifier, and OperationOutcomes for what fails", async () => {
		const created = await fhir("POST", "/Patient", fhirPatientBody({ telecom: [{ system: "email", value: uniqueEmail("crud") }, { system: "phone", value: "+44 20 7946 0000" }] }));
		expect(created.status).toBe(201);
		expect(created.headers.get("location")).toBe(`${cluster.baseUrl}/fhir/Patient/${created.body.id}`);
		const patient = created.body;
		expect(patient.identifier[0]).toMatchObject({ system: MRN_SYSTEM, value: expect.stringMatching(/^\d{8}$/) });
		expect(patient).toMatchObject({ name: [{ text: "Fhir Patient" }], gender: "female", birthDate: "1984-06-15", address: [{ text: "12 Harbour Road, Portsmouth" }] });
		expect(await client.read({ resourceType: "Patient", id: patient.id })).toEqual(patient);
		// The same record through REST.
		expect((await api("GET", `/patients/${patient.id}`)).body).toMatchObject({ mrn: patient.identifier[0].value, phone: "+44 20 7946 0000", name: "Fhir Patient" });

		const changed = await client.update({ resourceType: "Patient", id: patient.id, body: { ...patient, telecom: [patient.telecom[0]], gender: "other" } });
		expect(changed).toMatchObject({ gender: "other", telecom: [patient.telecom[0]] });
		expect((await api("GET", `/patients/${patient.id}`)).body.phone).toBeNull();
		expectOutcome(await fhir("PUT", `/Patient/${patient.id}`, { ...patient, id: "another" }), 400, "invalid");
		const otherMrn = { ...patient, identifier: [{ system: MRN_SYSTEM, value: "99999999" }] };
		expectOutcome(await fhir("PUT", `/Patient/${patient.id}`, otherMrn), 422, "invariant", "Patient.identifier");

		const removed = await fhir("DELETE", `/Patient/${patient.id}`);
		expect(removed.status).toBe(204);
		expectOutcome(await fhir("GET", `/Patient/${patient.id}`), 404, "not-found");
		expectOutcome(await fhir("PUT", `/Patient/${patient.id}`, patient), 404, "not-found");
	});

	test("versions: versionId and ETag, If-Match on update and delete, vread, history, a deletion's version gone", async () => {
		const created = await fhir("POST", "/Patient", fhirPatientBody());
		const id = created.body.id;
		expect(created.body.meta.versionId).toBe("1");
		expect(created.headers.get("etag")).toBe('W/"1"');
		const changed = await fhir("PUT", `/Patient/${id}`, { ...created.body, gender: "other" }, { "if-match": 'W/"1"' });
		expect(changed.status).toBe(200);
		expect(changed.body.meta.versionId).toBe("2");
		expect(changed.headers.get("etag")).toBe('W/"2"');
		expectOutcome(await fhir("PUT", `/Patient/${id}`, { ...created.body, gender: "male" }, { "if-match": 'W/"1"' }), 412, "conflict");
		expect((await client.read({ resourceType: "Patient", id })).gender).toBe("other");

		const first = await fhir("GET", `/Patient/${id}/_history/1`);
		expect(first.body).toMatchObject({ id, gender: "female", meta: { versionId: "1" } });
		expect(first.headers.get("etag")).toBe('W/"1"');
		expect((await fhir("GET", `/Patient/${id}/_history/2`)).body).toMatchObject({ gender: "other", meta: { versionId: "2" } });
		expectOutcome(await fhir("GET", `/Patient/${id}/_history/9`), 404, "not-found");
		expectOutcome(await fhir("GET", `/Patient/${id}/_history/x`), 404, "not-found");

		expectOutcome(await fhir("DELETE", `/Patient/${id}`, undefined, { "if-match": 'W/"1"' }), 412, "conflict");
		expect((await fhir("DELETE", `/Patient/${id}`, undefined, { "if-match": 'W/"2"' })).status).toBe(204);
		expectOutcome(await fhir("GET", `/Patient/${id}/_history/3`), 410, "deleted");
		const history = (await fhir("GET", `/Patient/${id}/_history?_count=2`)).body;
		expect(history).toMatchObject({ resourceType: "Bundle", type: "history", total: 3 });
		expect(history.entry.map((e: any) => [e.request.method, e.response.etag, e.resource?.meta.versionId])).toEqual([
			["DELETE", 'W/"3"', undefined],
			["PUT", 'W/"2"', "2"]
		]);
		const older = await fhir("GET", new URL(history.link.find((l: any) => l.relation === "next").url).pathname.replace(/^\/fhir/, "") + "?_count=2&_page=2");
		expect(older.body.entry.map((e: any) => e.request.method)).toEqual(["POST"]);
	});

	test("Idempotency-Key: a retried create answers as the first time and registers no second patient", async () => {
		const body = fhirPatientBody();
		const key = { "idempotency-key": `fhir-${crypto.randomUUID()}` };
		const first = await fhir("POST", "/Patient", body, key);
		const retry = await fhir("POST", "/Patient", body, key);
		expect([first.status, retry.status]).toEqual([201, 201]);
		expect(retry.body).toEqual(first.body);
		expect(retry.headers.get("location")).toBe(first.headers.get("location"));
		expect((await client.search({ resourceType: "Patient", searchParams: { email: body.telecom[0].value } })).total).toBe(1);
		expectOutcome(await fhir("POST", "/Patient", fhirPatientBody(), key), 422, "invariant");
	});

	test("a merged patient reads as inactive, replaced by its survivor", async () => {
		const [duplicate, survivor] = [await client.create({ resourceType: "Patient", body: fhirPatientBody() }), await client.create({ resourceType: "Patient", body: fhirPatientBody() })];
		expect((await api("POST", `/patients/${duplicate.id}/merge`, { into: survivor.id })).status).toBe(200);
		const read = await fhir("GET", `/Patient/${duplicate.id}`);
		expect(read.status).toBe(200);
		expect(read.body).toMatchObject({ id: duplicate.id, active: false, link: [{ other: { reference: `Patient/${survivor.id}` }, type: "replaced-by" }] });
		expect((await client.search({ resourceType: "Patient", searchParams: { _id: duplicate.id! } })).total).toBe(0);
		const history = (await fhir("GET", `/Patient/${duplicate.id}/_history`)).body;
		expect(history.entry[0].resource).toMatchObject({ active: false, link: [{ type: "replaced-by" }], name: duplicate.name });
	});

	test("refuses what it cannot store or read: 400 for a malformed body, 422 naming the element for a broken rule", async () => {
		expectOutcome(await fhir("POST", "/Patient", "{not json"), 400, "invalid");
		expectOutcome(await fhir("POST", "/Patient", { resourceType: "Practitioner" }), 400, "invalid");
		expectOutcome(await fhir("POST", "/Patient", fhirPatientBody({ telecom: [] })), 422, "invariant", "Patient.telecom");
		expectOutcome(await fhir("POST", "/Patient", fhirPatientBody({ birthDate: undefined })), 422, "required", "Patient.birthDate");
		// A pattern the value fails is a broken rule, not a missing element, whatever its message says.
		const badPhone = fhirPatientBody({ telecom: [...fhirPatientBody().telecom, { system: "phone", value: "call me maybe" }] });
		const phone = await fhir("POST", "/Patient", badPhone);
		expect(phone.status).toBe(422);
		expect(phone.body.issue.map((i: { code: string }) => i.code)).toEqual(["invariant"]);
		expectOutcome(await fhir("POST", "/Patient", fhirPatientBody({ birthDate: "2999-01-01" })), 422, "invariant", "Patient.birthDate");
		expectOutcome(await fhir("POST", "/Patient", fhirPatientBody({ maritalStatus: { text: "Married" } })), 422, "invariant", "Patient.maritalStatus");
		expectOutcome(await fhir("POST", "/Patient", fhirPatientBody({ identifier: [{ system: MRN_SYSTEM, value: "10000008" }] })), 422, "invariant", "Patient.identifier");
		expectOutcome(await fhir("POST", "/Patient", fhirPatientBody({ name: "Ada" })), 400, "invalid", "Patient.name");
		expectOutcome(await fhir("POST", "/Patient", "<Patient/>", { "content-type": "application/fhir+xml" }), 415, "not-supported");
		const taken = fhirPatientBody();
		await client.create({ resourceType: "Patient", body: taken });
		expectOutcome(await fhir("POST", "/Patient", taken), 409, "conflict");
	});

	test("search: identifier, name, email, birthdate with prefixes, _sort, _total, and pages whose links and fullUrls resolve", async () => {
		const family = `Pager${Date.now()}`;
		const births = ["1970-01-01", "1980-05-05", "1980-12-31", "1990-07-07", "2000-02-29"];
		const made = [];
		for (const birthDate of births) made.push(await client.create({ resourceType: "Patient", body: fhirPatientBody({ name: [{ family, given: ["Ann"] }], birthDate }) }));
		const name = `Ann ${family}`;

		const first = await client.search({ resourceType: "Patient", searchParams: { name, _count: 2, _sort: "birthdate" } });
		expect(first).toMatchObject({ type: "searchset", total: 5 });
		const seen: string[] = [];
		let page: Resource | undefined = first;
		while (page) {
			for (const entry of page.entry ?? []) {
				seen.push(entry.resource.birthDate);
				// A fullUrl resolves to the resource it holds.
				const resolved = await request(cluster.baseUrl, "GET", new URL(entry.fullUrl).pathname, undefined, bearer(adminToken));
				expect(resolved.body).toEqual(entry.resource);
			}
			page = await client.nextPage({ bundle: page });
		}
		expect(seen).toEqual(births);
		const second = await fhir("GET", new URL(first.link.find((l: any) => l.relation === "next").url).pathname.replace(/^\/fhir/, "") + new URL(first.link.find((l: any) => l.relation === "next").url).search);
		expect(second.body.link.map((l: any) => l.relation)).toEqual(["self", "next", "previous"]);

		const descending = await client.search({ resourceType: "Patient", searchParams: { name, _sort: "-birthdate", _total: "none" } });
		expect(descending.total).toBeUndefined();
		expect(descending.entry.map((e: any) => e.resource.birthDate)).toEqual([...births].reverse());

		const born = async (...values: string[]) =>
			(await client.search({ resourceType: "Patient", searchParams: { name, birthdate: values, _sort: "birthdate" } })).entry?.map((e: any) => e.resource.birthDate) ?? [];
		expect(await born("1980")).toEqual(["1980-05-05", "1980-12-31"]);
		expect(await born("eq1980-05")).toEqual(["1980-05-05"]);
		expect(await born("gt1980-05-05", "lt2000-02-29")).toEqual(["1980-12-31", "1990-07-07"]);
		expect(await born("ge1990-07-07")).toEqual(["1990-07-07", "2000-02-29"]);
		expect(await born("le1970-01-01")).toEqual(["1970-01-01"]);

		const target = made[2];
		const mrn = target.identifier[0].value;
		for (const identifier of [mrn, `${MRN_SYSTEM}|${mrn}`]) {
			const byMrn = await client.search({ resourceType: "Patient", searchParams: { identifier } });
			expect(byMrn.entry.map((e: any) => e.resource.id)).toEqual([target.id]);
		}
		const byEmail = await client.search({ resourceType: "Patient", searchParams: { email: target.telecom[0].value.toUpperCase() } });
		expect(byEmail).toMatchObject({ total: 1, entry: [{ resource: { id: target.id } }] });
		expect((await client.search({ resourceType: "Patient", searchParams: { identifier: "http://other.example|" + mrn } })).total).toBe(0);
	});

	test("search input errors are 400s naming the parameter", async () => {
		expectOutcome(await fhir("GET", "/Patient?birthdate=ap1980"), 400, "invalid", "birthdate");
		expectOutcome(await fhir("GET", "/Patient?birthdate=1980-02-30"), 400, "invalid", "birthdate");
		expectOutcome(await fhir("GET", "/Patient?_count=0"), 400, "invalid", "_count");
		expectOutcome(await fhir("GET", "/Patient?_count=1000"), 400, "invalid", "_count");
		expectOutcome(await fhir("GET", "/Patient?_sort=email"), 400, "invalid", "_sort");
		expectOutcome(await fhir("GET", "/Patient?name=ann,bob"), 400, "invalid", "name");
		expectOutcome(await fhir("GET", "/Patient?name=ann@example.org"), 400, "invalid", "name");
		expectOutcome(await fhir("GET", "/Patient?name[x]=1"), 400, "invalid", "name");
	});

	test("conditional create (If-None-Exist): the match if one, a new patient if none, 412 if several", async () => {
		const body = fhirPatientBody();
		const first = await fhir("POST", "/Patient", body, { "if-none-exist": `email=${encodeURIComponent(body.telecom[0].value)}` });
		expect(first.status).toBe(201);
		const again = await fhir("POST", "/Patient", body, { "if-none-exist": `identifier=${MRN_SYSTEM}|${first.body.identifier[0].value}` });
		expect(again.status).toBe(200);
		expect(again.body.id).toBe(first.body.id);
		const family = `Twin${Date.now()}`;
		for (let i = 0; i < 2; i++) await client.create({ resourceType: "Patient", body: fhirPatientBody({ name: [{ family, given: ["Tom"] }] }) });
		expectOutcome(await fhir("POST", "/Patient", fhirPatientBody(), { "if-none-exist": `name=Tom ${family}` }), 412, "conflict");
		expectOutcome(await fhir("POST", "/Patient", fhirPatientBody(), { "if-none-exist": "nonsense=1" }), 400, "invalid", "nonsense");
	});

	test("the same tokens and roles as REST: 401 and 403 as OperationOutcomes", async () => {
		expectOutcome(await fhir("GET", "/Patient", undefined, {}, null), 401, "login");
		expectOutcome(await fhir("GET", "/Patient", undefined, {}, "not-a-token"), 401, "login");
		expectOutcome(await fhir("GET", "/Patient", undefined, {}, users.VIEWER.token), 403, "forbidden");
		expectOutcome(await fhir("POST", "/Patient", fhirPatientBody(), {}, users.DOCTOR.token), 403, "forbidden");
		expectOutcome(await fhir("DELETE", `/Patient/${crypto.randomUUID()}`, undefined, {}, users.RECEPTIONIST.token), 403, "forbidden");
		expect((await fhir("GET", "/Patient?_count=1", undefined, {}, users.DOCTOR.token)).status).toBe(200);
		expectOutcome(await fhir("GET", "/Nothing"), 404, "not-found");
	});

	test("a FHIR read of a patient is audited exactly as a REST read is, allowed or refused", async () => {
		const patient = await client.create({ resourceType: "Patient", body: fhirPatientBody() });
		await api("GET", `/patients/${patient.id}`, undefined, users.DOCTOR.token);
		await fhir("GET", `/Patient/${patient.id}`, undefined, {}, users.DOCTOR.token);
		await api("GET", `/patients/${patient.id}`, undefined, users.VIEWER.token);
		await fhir("GET", `/Patient/${patient.id}`, undefined, {}, users.VIEWER.token);
		const rows = await eventually(async () => {
			const trail = (await api("GET", `/audit?patientId=${patient.id}&pageSize=100`)).body.rows;
			return trail.filter((r: any) => r.action !== "fhir.patientCreate").length === 4 ? trail : undefined;
		});
		const view = (action: string, outcome: string) => {
			const { id: _id, at: _at, requestId: _requestId, action: _action, ...rest } = rows.find((r: any) => r.action === action && r.outcome === outcome);
			return rest;
		};
		expect(view("fhir.patientRead", "success")).toEqual(view("patients.get", "success"));
		expect(view("fhir.patientRead", "success")).toMatchObject({ userId: users.DOCTOR.id, role: "DOCTOR", resource: "patient", patientId: patient.id, status: 200 });
		expect(view("fhir.patientRead", "denied")).toEqual(view("patients.get", "denied"));
		expect(view("fhir.patientRead", "denied")).toMatchObject({ userId: users.VIEWER.id, status: 403, patientId: patient.id });

		// The same trail as AuditEvents, for ADMIN only.
		const events = await client.search({ resourceType: "AuditEvent", searchParams: { patient: `Patient/${patient.id}`, altid: users.VIEWER.id, date: `ge${new Date(Date.now() - 3_600_000).toISOString()}` } });
		expect(events.total).toBe(2);
		expect(events.entry.map((e: any) => e.resource.subtype[0].code).sort()).toEqual(["fhir.patientRead", "patients.get"]);
		expect(events.entry[0].resource).toMatchObject({ outcome: "4", agent: [{ altId: users.VIEWER.id, role: [{ text: "VIEWER" }], requestor: true }], entity: [{ what: { reference: `Patient/${patient.id}` } }] });
		expect((await client.search({ resourceType: "AuditEvent", searchParams: { patient: `Patient/${patient.id}`, date: "lt2000" } })).total).toBe(0);
		expectOutcome(await fhir("GET", `/AuditEvent?patient=Patient/${patient.id}`, undefined, {}, users.RECEPTIONIST.token), 403, "forbidden");
	});
});

describe("scheduling", () => {
	test("practitioners, roles, schedules and free slots; booking a free slot, a conflicting booking is 409; status changes by PUT and PATCH", async () => {
		const doctor = await createDoctor(api, { specialization: `Fhirology${Date.now()}`, timezone: "Europe/Berlin" });
		const practitioner = await client.read({ resourceType: "Practitioner", id: doctor.id });
		expect(practitioner).toMatchObject({ name: [{ text: doctor.name }], telecom: [{ system: "email", value: doctor.email }] });
		const byName = await client.search({ resourceType: "Practitioner", searchParams: { name: doctor.name } });
		expect(byName.entry.map((e: any) => e.resource.id)).toEqual([doctor.id]);
		const roles = await client.search({ resourceType: "PractitionerRole", searchParams: { specialty: doctor.specialization } });
		expect(roles.entry[0].resource).toMatchObject({ practitioner: { reference: `Practitioner/${doctor.id}` }, specialty: [{ text: doctor.specialization }] });
		expect(roles.entry[0].resource.availableTime).toHaveLength(7);
		const schedules = await client.search({ resourceType: "Schedule", searchParams: { actor: `Practitioner/${doctor.id}` } });
		expect(schedules.entry.map((e: any) => e.resource.id)).toEqual([doctor.id]);
		await client.read({ resourceType: "Schedule", id: doctor.id });

		const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
		const slots = await client.search({ resourceType: "Slot", searchParams: { schedule: `Schedule/${doctor.id}`, start: [`ge${tomorrow}`, `lt${tomorrow}T23:59:00Z`], status: "free", _count: 100 } });
		expect(slots.total).toBeGreaterThan(10);
		const byActor = await client.search({ resourceType: "Slot", searchParams: { "schedule.actor": `Practitioner/${doctor.id}`, start: [`ge${tomorrow}`, `lt${tomorrow}T23:59:00Z`], _count: 100 } });
		expect(byActor.entry.map((e: any) => e.resource.id)).toEqual(slots.entry.map((e: any) => e.resource.id));
		const slot = slots.entry[2].resource;
		expect(await client.read({ resourceType: "Slot", id: slot.id })).toEqual(slot);

		const [patient, other] = [await client.create({ resourceType: "Patient", body: fhirPatientBody() }), await client.create({ resourceType: "Patient", body: fhirPatientBody() })];
		const appointment = (patientId: string) => ({
			resourceType: "Appointment",
			status: "booked",
			slot: [{ reference: `Slot/${slot.id}` }],
			start: slot.start,
			end: slot.end,
			description: "Check-up",
			participant: [
				{ actor: { reference: `Patient/${patientId}` }, status: "accepted" },
				{ actor: { reference: `Practitioner/${doctor.id}` }, status: "accepted" }
			]
		});
		const booked = await fhir("POST", "/Appointment", appointment(patient.id!), {}, users.RECEPTIONIST.token);
		expect(booked.status).toBe(201);
		expect(booked.headers.get("location")).toBe(`${cluster.baseUrl}/fhir/Appointment/${booked.body.id}`);
		expect(booked.body).toMatchObject({ status: "booked", minutesDuration: 30, description: "Check-up", meta: { versionId: "1" } });
		expect(booked.headers.get("etag")).toBe('W/"1"');
		expect(Date.parse(booked.body.start)).toBe(Date.parse(slot.start));
		expectOutcome(await fhir("POST", "/Appointment", appointment(other.id!)), 409, "conflict");
		expectOutcome(await fhir("GET", `/Slot/${slot.id}`), 404, "not-found");
		const after = await client.search({ resourceType: "Slot", searchParams: { schedule: `Schedule/${doctor.id}`, start: [`ge${tomorrow}`, `lt${tomorrow}T23:59:00Z`], _count: 100 } });
		expect(after.total).toBe(slots.total - 1);
		expectOutcome(await fhir("POST", "/Appointment", { ...appointment(other.id!), slot: undefined, start: "2020-01-01T09:00:00Z", end: undefined }), 422, "invariant", "Appointment.start");
		expectOutcome(await fhir("POST", "/Appointment", { ...appointment(other.id!), participant: [] }), 422, "invariant", "Appointment.participant");

		const id = booked.body.id;
		const mine = await client.search({ resourceType: "Appointment", searchParams: { patient: `Patient/${patient.id}` } });
		expect(mine.entry.map((e: any) => e.resource.id)).toEqual([id]);
		const theirs = await client.search({ resourceType: "Appointment", searchParams: { practitioner: `Practitioner/${doctor.id}`, date: [`ge${tomorrow}`, `lt${tomorrow}T23:59:00Z`], status: "booked" } });
		expect(theirs.entry.map((e: any) => e.resource.id)).toEqual([id]);
		expect((await client.search({ resourceType: "Appointment", searchParams: { practitioner: `Practitioner/${doctor.id}`, date: `lt${tomorrow}` } })).total).toBe(0);
		expect((await client.search({ resourceType: "Appointment", searchParams: { patient: `Patient/${patient.id}`, status: "proposed" } })).total).toBe(0);

		// A doctor may mark the arrival (REST: POST /appointments/:id/arrive) but not cancel (REST: POST …/cancel).
		const arrived = await fhir("PUT", `/Appointment/${id}`, { ...booked.body, status: "arrived" }, { "if-match": 'W/"1"' }, users.DOCTOR.token);
		expect(arrived.status).toBe(200);
		expect(arrived.body).toMatchObject({ status: "arrived", meta: { versionId: "2" } });
		expect(arrived.headers.get("etag")).toBe('W/"2"');
		// A change made against a version it no longer has: 412, and nothing written.
		expectOutcome(await fhir("PUT", `/Appointment/${id}`, { ...arrived.body, status: "fulfilled" }, { "if-match": 'W/"1"' }), 412, "conflict");
		expectOutcome(await fhir("PUT", `/Appointment/${id}`, arrived.body, { "if-match": 'W/"1"' }), 412, "conflict");
		expect((await fhir("GET", `/Appointment/${id}`)).headers.get("etag")).toBe('W/"2"');
		const cancel = [{ op: "replace", path: "/status", value: "cancelled" }, { op: "add", path: "/cancelationReason", value: { text: "Patient unwell" } }];
		expectOutcome(await fhir("PATCH", `/Appointment/${id}`, cancel, { "content-type": "application/json-patch+json" }, users.DOCTOR.token), 403, "forbidden");
		expectOutcome(await fhir("PATCH", `/Appointment/${id}`, [cancel[0]], { "content-type": "application/json-patch+json" }), 422, "invariant", "Appointment.cancelationReason");
		const cancelled = await client.patch({ resourceType: "Appointment", id, jsonPatch: cancel });
		expect(cancelled).toMatchObject({ status: "cancelled", cancelationReason: { text: "Patient unwell" } });
		expectOutcome(await fhir("PUT", `/Appointment/${id}`, { ...cancelled, status: "fulfilled" }), 409, "conflict");
	});
});

describe("hostile input", () => {
	const RUNS = Number(process.env.FUZZ_RUNS ?? 100) / 4;
	const text = fc.oneof(
		fc.string({ maxLength: 30 }),
		fc.string({ unit: "binary", maxLength: 30 }),
		fc.constantFrom("", "ge", "eq2030-13-01", "gt99999-01-01", "Patient/", "Patient/../x", "|", "a|b|c", "\\,", "0", "-1", "1e309", "x".repeat(300))
	);
	const json = fc.jsonValue({ maxDepth: 3 });

	test("search: random parameters and values are a 200 Bundle or a 4xx OperationOutcome, never a 5xx", async () => {
		const names = ["_id", "identifier", "name", "email", "birthdate", "practitioner", "patient", "specialty", "actor", "schedule", "schedule.actor", "start", "date", "status", "altid", "_count", "_page", "_sort", "_total", "_format"];
		const types = ["Patient", "Practitioner", "PractitionerRole", "Schedule", "Slot", "Appointment", "AuditEvent"];
		await fc.assert(
			fc.asyncProperty(fc.constantFrom(...types), fc.array(fc.tuple(fc.oneof(fc.constantFrom(...names), fc.string({ maxLength: 8 })), text), { maxLength: 4 }), async (type, pairs) => {
				const query = pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
				const res = await request(cluster.baseUrl, "GET", `/fhir/${type}?${query}`, undefined, bearer(adminToken));
				expect(res.status).toBeLessThan(500);
				expect(res.body.resourceType).toBe(res.status === 200 ? "Bundle" : "OperationOutcome");
			}),
			{ numRuns: RUNS }
		);
	});

	test("writes: a resource with any element replaced by any JSON, and any JSON Patch, is never a 5xx", async () => {
		const doctor = await createDoctor(api);
		const patient = await client.create({ resourceType: "Patient", body: fhirPatientBody() });
		const start = new Date(Date.now() + 3 * 86_400_000);
		start.setUTCHours(9, 0, 0, 0);
		const appointment = {
			resourceType: "Appointment",
			status: "booked",
			start: start.toISOString(),
			minutesDuration: 30,
			participant: [{ actor: { reference: `Patient/${patient.id}` }, status: "accepted" }, { actor: { reference: `Practitioner/${doctor.id}` }, status: "accepted" }]
		};
		const booked = (await fhir("POST", "/Appointment", appointment)).body;
		const bodies: Record<string, Record<string, unknown>> = { Patient: fhirPatientBody(), Appointment: appointment };
		const targets: Record<string, string> = { Patient: patient.id!, Appointment: booked.id };
		await fc.assert(
			fc.asyncProperty(
				fc.constantFrom("Patient", "Appointment"),
				fc.constantFrom("POST", "PUT", "PATCH"),
				fc.oneof(fc.constantFrom("resourceType", "id", "name", "telecom", "birthDate", "address", "gender", "identifier", "participant", "start", "status", "slot", "minutesDuration", "cancelationReason"), fc.string({ maxLength: 8 })),
				json,
				async (type, method, key, value) => {
					const path = method === "POST" ? `/fhir/${type}` : `/fhir/${type}/${targets[type]}`;
					const body = method === "PATCH" ? [{ op: "replace", path: `/${key}`, value }] : { ...bodies[type], ...(method === "PUT" && { id: targets[type] }), [key]: value };
					const res = await request(cluster.baseUrl, method, path, body, { ...bearer(adminToken), "content-type": method === "PATCH" ? "application/json-patch+json" : "application/fhir+json" });
					expect([method, key, res.status]).toEqual([method, key, expect.any(Number)]);
					expect(res.status).toBeLessThan(500);
					if (res.status >= 400) expect(res.body.resourceType).toBe("OperationOutcome");
				}
			),
			{ numRuns: RUNS }
		);
	});
});

test("every resource MedSync emitted validates against the R4 base profiles (HAPI FHIR), with no errors", async () => {
	const types = new Set(emitted.flatMap(r => [r.resourceType, ...(r.entry ?? []).flatMap((e: { resource?: Resource }) => e.resource?.resourceType ?? [])]));
	for (const type of ["CapabilityStatement", "Bundle", "OperationOutcome", "Patient", "Practitioner", "PractitionerRole", "Schedule", "Slot", "Appointment", "AuditEvent"]) expect(types).toContain(type);
	expect(await validator.finish()).toEqual([]);
}, SERVER_WAIT_MS);
