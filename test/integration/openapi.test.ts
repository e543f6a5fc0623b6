import fs from "node:fs";
import path from "node:path";
import type { ServiceSchema } from "moleculer";
import { chromium } from "playwright-core";
import AnalyticsService from "../../services/analytics.service";
import AppointmentsService from "../../services/appointments.service";
import BillingService from "../../services/billing.service";
import DoctorsService from "../../services/doctors.service";
import PatientsService from "../../services/patients.service";
import { type TestCluster, request, startCluster } from "../helpers/cluster";

const ARTIFACTS = path.resolve(__dirname, "../../test-artifacts");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let cluster: TestCluster;
let spec: any;

beforeAll(async () => {
	cluster = await startCluster([PatientsService, BillingService, DoctorsService, AppointmentsService, AnalyticsService] as ServiceSchema[]);
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
		expect(create.properties.gender).toEqual({ type: ["string", "null"], enum: ["male", "female", "other", "unknown"] });
		expect(create.additionalProperties).toBe(false);
		const patch = spec.paths["/patients/{id}"].patch.requestBody.content["application/json"].schema;
		expect(patch.required).toBeUndefined();
		expect(spec.paths["/auth/login"].post.security).toEqual([]);
		expect(spec.paths["/patients/{id}"].delete.description).toBe("Roles: ADMIN.");
		expect(spec.components.securitySchemes.bearerAuth).toMatchObject({ type: "http", scheme: "bearer" });
	});
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
