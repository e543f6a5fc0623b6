import { execFile } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import type { ServiceSchema } from "moleculer";
import { chromium } from "playwright-core";
import AnalyticsService from "../../services/analytics.service";
import AppointmentsService from "../../services/appointments.service";
import BillingService from "../../services/billing.service";
import DoctorsService from "../../services/doctors.service";
import FhirService from "../../services/fhir.service";
import PatientsService from "../../services/patients.service";
import { type TestCluster, adminLogin, request, startCluster } from "../helpers/cluster";
import { patientsNamed } from "../helpers/fixtures";

const ARTIFACTS = path.resolve(__dirname, "../../test-artifacts");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ROOT = path.resolve(__dirname, "../..");
const run = promisify(execFile);

/** A tool from node_modules, on this Node (the machine's own may be older than the tool wants). */
function tool(script: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
	return run(process.execPath, [path.join(ROOT, "node_modules", script), ...args], { cwd: options.cwd ?? ROOT, env: { ...process.env, ...options.env }, maxBuffer: 16 * 1024 * 1024 });
}

/** The document, written where the tools read it. */
function writeSpec(dir: string): string {
	fs.mkdirSync(dir, { recursive: true });
	const file = path.join(dir, "openapi.json");
	fs.writeFileSync(file, JSON.stringify(spec, null, 2));
	return file;
}

let cluster: TestCluster;
let spec: any;

beforeAll(async () => {
	cluster = await startCluster([PatientsService, BillingService, DoctorsService, AppointmentsService, AnalyticsService, FhirService] as ServiceSchema[]);
	spec = (await request(cluster.baseUrl, "GET", "/openapi.json")).body;
});

afterAll(() => cluster?.stop());

describe("the OpenAPI document", () => {
	test("is OpenAPI 3.1, served without a token, and lists every routed action", async () => {
		expect(spec.openapi).toBe("3.1.0");
		const operations = Object.values(spec.paths).flatMap((ops: any) => Object.values(ops).map((op: any) => op.operationId));
		for (const action of ["patients.create", "patients.list", "patients.get", "patients.replace", "patients.update", "patients.remove", "auth.login", "billing.postTransaction", "doctors.slots", "appointments.book", "appointments.noShow", "analytics.registrations", "audit.list", "api.ready"]) {
			expect(operations).toContain(action);
		}
		expect(operations).not.toContain("billing.openAccount"); // not routed
	});

	test("is generated from the params: path, query and body, with types and required fields", () => {
		const get = spec.paths["/patients/{id}"].get;
		expect(get.parameters).toEqual([{ name: "id", in: "path", required: true, schema: { type: "string", maxLength: 64 } }]);
		const list = spec.paths["/patients"].get.parameters;
		expect(list).toContainEqual({ name: "pageSize", in: "query", required: false, schema: { type: "integer", minimum: 1, maximum: 100, default: 20 } });
		expect(list).toContainEqual({ name: "bornFrom", in: "query", required: false, schema: { type: "string", format: "date" } });
		const create = spec.paths["/patients"].post.requestBody.content["application/json"].schema;
		expect(create.required.sort()).toEqual(["address", "dateOfBirth", "email", "name"]);
		expect(create.properties.email).toEqual({ type: "string", format: "email", maxLength: 254 });
		// Null by type and among the values: JSON Schema checks `enum` apart from `type`.
		expect(create.properties.gender).toEqual({ type: ["string", "null"], enum: ["male", "female", "other", "unknown", null] });
		expect(create.additionalProperties).toBe(false);
		const patch = spec.paths["/patients/{id}"].patch.requestBody.content["application/json"].schema;
		expect(patch.required).toBeUndefined();
		expect(spec.paths["/auth/login"].post.security).toEqual([]);
		expect(spec.paths["/patients/{id}"].delete.description).toBe("Roles: ADMIN.");
		expect(spec.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
	});

	test("describes each answer: the body's schema, its headers, and every error with the Error body", () => {
		const create = spec.paths["/patients"].post.responses;
		expect(create["201"].content["application/json"].schema).toEqual({ $ref: "#/components/schemas/Patient" });
		expect(Object.keys(create["201"].headers).sort()).toEqual(["ETag", "Location"]);
		expect(Object.keys(create).sort()).toEqual(["201", "400", "401", "403", "409", "413", "415", "422", "500", "503"]);
		expect(create["503"].headers).toEqual({ "Retry-After": { $ref: "#/components/headers/Retry-After" } });
		expect(create["422"].content["application/json"]).toMatchObject({ schema: { $ref: "#/components/schemas/Error" }, example: { code: 422, type: "VALIDATION_ERROR" } });

		const patient = spec.components.schemas.Patient;
		expect(patient.required).toEqual(expect.arrayContaining(["id", "mrn", "name", "email", "version", "billingAccountId"]));
		expect(patient.properties.gender).toEqual({ type: ["string", "null"], enum: ["male", "female", "other", "unknown", null] });
		expect(patient.properties.phone).toEqual({ type: ["string", "null"] });
		expect(patient.examples).toHaveLength(1);
		expect(patient.$id).toBeUndefined();

		const list = spec.paths["/patients"].get.responses["200"];
		expect(list.headers).toEqual({ Link: { $ref: "#/components/headers/Link" } });
		expect(list.content["application/json"].schema.properties.rows).toEqual({ type: "array", items: { $ref: "#/components/schemas/Patient" } });
		expect(Object.keys(spec.paths["/patients/{id}"].get.responses)).toEqual(expect.arrayContaining(["200", "301", "404"]));
		expect(Object.keys(spec.paths["/patients/{id}"].delete.responses)).toEqual(expect.arrayContaining(["204", "412"]));
		expect(spec.paths["/patients/{id}"].delete.responses["204"].content).toBeUndefined();
		expect(spec.paths["/auth/login"].post.responses["401"]).toBeDefined();
		expect(spec.paths["/auth/login"].post.responses["403"]).toBeUndefined();

		// Every operation: a success with a real schema (no empty one), and only statuses with the Error body fail.
		for (const [route, operations] of Object.entries<any>(spec.paths)) {
			for (const [method, op] of Object.entries<any>(operations)) {
				const statuses = Object.keys(op.responses);
				const successes = statuses.filter(status => Number(status) < 400);
				expect({ route, method, successes: successes.length > 0 }).toEqual({ route, method, successes: true });
				for (const status of successes) {
					const schema = op.responses[status].content?.["application/json"]?.schema;
					if (status !== "204") expect({ route, method, status, empty: !schema || Object.keys(schema).length === 0 }).toEqual({ route, method, status, empty: false });
				}
				// But the readiness report, which is its own 503's body.
				for (const status of statuses.filter(status => Number(status) >= 400 && route !== "/ready")) {
					expect(op.responses[status].content["application/json"].schema).toEqual({ $ref: "#/components/schemas/Error" });
				}
			}
		}
	});

	test("has a server, and an introduction that says how to get and use a token", () => {
		expect(spec.servers).toEqual([expect.objectContaining({ url: "/" })]);
		expect(spec.info.description).toContain("POST /auth/login");
		expect(spec.info.description).toContain("Authorization: Bearer");
	});

	test("leaves out FHIR, which has its own CapabilityStatement", async () => {
		expect((await request(cluster.baseUrl, "GET", "/fhir/metadata")).status).toBe(200);
		expect(Object.keys(spec.paths).filter(p => p.startsWith("/fhir"))).toEqual([]);
	});
});

describe("checked by real tools", () => {
	const work = path.join(ARTIFACTS, "openapi");

	test("@redocly/cli lints it with no errors, nor warnings", async () => {
		const file = writeSpec(work);
		// Exit 1 when there is an error: the report is then in the rejection's stdout.
		const { stdout } = await tool("@redocly/cli/bin/cli.js", ["lint", file, "--format=json"]).catch(err => err as { stdout: string });
		const report = JSON.parse(stdout) as { problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[] };
		expect(report.problems.map(p => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location[0]?.pointer}`)).toEqual([]);
	}, 120_000);

	test("openapi-typescript's types type a client that compiles and talks to the gateway", async () => {
		// Two directories down from the project, as the client's own source is: its relative imports hold.
		const dir = path.join(ARTIFACTS, "typed-client");
		fs.mkdirSync(dir, { recursive: true });
		const file = writeSpec(work);
		await tool("openapi-typescript/bin/cli.js", [file, "--output", path.join(dir, "api.ts")]);
		fs.copyFileSync(path.join(ROOT, "test/typed-client/client.mts"), path.join(dir, "client.mts"));
		fs.writeFileSync(
			path.join(dir, "tsconfig.json"),
			JSON.stringify({
				compilerOptions: { target: "ES2024", lib: ["ES2024", "DOM"], module: "nodenext", moduleResolution: "nodenext", strict: true, noEmit: true, skipLibCheck: true, types: ["node"] },
				files: ["client.mts"]
			})
		);
		const compiled = await tool("typescript/bin/tsc", ["-p", path.join(dir, "tsconfig.json")]).catch(err => err as { stdout: string });
		expect("stdout" in compiled ? compiled.stdout : "").toBe("");

		const token = await adminLogin(cluster.baseUrl);
		const { prefix, bodies } = patientsNamed(["Carla", "Bea", "Ann"]);
		Object.assign(bodies[0], { gender: "female" });
		// Node runs the TypeScript as it is, its types stripped: what tsc checked is what runs.
		const { stdout } = await run(process.execPath, [path.join(dir, "client.mts")], {
			cwd: dir,
			env: { ...process.env, MEDSYNC_URL: cluster.baseUrl, MEDSYNC_TOKEN: token, MEDSYNC_SEARCH: prefix, MEDSYNC_PATIENTS: JSON.stringify(bodies) }
		});
		const result = JSON.parse(stdout);
		expect(result.registered).toHaveLength(3);
		expect(result.read).toEqual({ id: result.registered[0], version: 1, etag: 'W/"1"' });
		expect(result.page1).toMatchObject({ names: [`${prefix} Ann`, `${prefix} Bea`], total: 3, totalPages: 2 });
		// The Link header keeps the search and the sort, and changes only the page.
		expect(result.page1.link).toBe(
			[1, 2, 2].map((page, i) => `</patients?search=${prefix}&pageSize=2&sort=name&page=${page}>; rel="${["first", "next", "last"][i]}"`).join(", ")
		);
		expect(result.page2).toEqual({ page: 2, names: [`${prefix} Carla`] });
		expect(result.missing).toEqual({ status: 404, type: "NOT_FOUND" });
	}, 120_000);
});

describe("the docs page, in headless Chromium", () => {
	test("loads with every endpoint listed, and 'try it out' succeeds on a GET", async () => {
		fs.mkdirSync(ARTIFACTS, { recursive: true });
		const browser = await chromium.launch({
			executablePath: CHROMIUM,
			args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
		});
		try {
			const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
			const external: string[] = [];
			page.on("request", req => {
				if (!req.url().startsWith(cluster.baseUrl)) external.push(req.url());
			});
			await page.goto(`${cluster.baseUrl}/docs`);
			await page.waitForSelector(".opblock", { timeout: 20_000 });

			const operationCount = Object.values(spec.paths).reduce((n: number, ops: any) => n + Object.keys(ops).length, 0);
			expect(await page.locator(".opblock").count()).toBe(operationCount);
			const listed = await page.locator(".opblock-summary-path").allInnerTexts();
			for (const p of Object.keys(spec.paths)) expect(listed.map(t => t.replace(/\u200b/g, ""))).toContain(p);

			const health = page.locator(".opblock-get", { has: page.locator('.opblock-summary-path[data-path="/health"]') });
			await health.locator(".opblock-summary").click();
			await health.getByRole("button", { name: "Try it out" }).click();
			await health.getByRole("button", { name: "Execute" }).click();
			const status = health.locator(".live-responses-table tbody .response-col_status").first();
			await status.waitFor({ timeout: 10_000 });
			expect((await status.innerText()).trim()).toMatch(/^200\b/);
			expect(await health.locator(".live-responses-table .microlight").first().innerText()).toContain('"status": "ok"');

			await page.screenshot({ path: path.join(ARTIFACTS, "api-docs.png"), fullPage: false });
			expect(external).toEqual([]); // everything from our own server: no CDN
		} finally {
			await browser.close();
		}
	});
});
