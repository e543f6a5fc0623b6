import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { ServiceSchema } from "moleculer";
import AppointmentsService from "../../services/appointments.service";
import BillingService from "../../services/billing.service";
import DoctorsService from "../../services/doctors.service";
import PatientsService from "../../services/patients.service";
import { config } from "../../lib/infra/config";
import { HTTP_DURATION_BUCKETS } from "../../lib/infra/metrics";
import { PROJECT_ROOT } from "../../lib/infra/paths";
import { type TestCluster, adminLogin, bearer, request, startCluster } from "../helpers/cluster";
import { createDoctor, createPatient, patientBody } from "../helpers/fixtures";
import { eventually } from "../helpers/node-process";
import { type Family, parsePrometheus, sampleOf } from "../helpers/prometheus";

/**
 * What Prometheus scrapes from a node, after real requests through the
 * gateway: the latency histogram by route template, the pool gauges, the
 * event-loop lag and the business counters, read with a strict parser of the
 * text format (test/helpers/prometheus.ts).
 */
let cluster: TestCluster;
let adminToken: string;

const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
	request(cluster.baseUrl, method, path, body, { ...bearer(adminToken), ...headers });

async function scrape(): Promise<Map<string, Family>> {
	const port = (cluster.broker.metrics as unknown as { reporter: { server: { address(): { port: number } } }[] }).reporter[0].server.address().port;
	const res = await fetch(`http://127.0.0.1:${port}/metrics`);
	expect(res.status).toBe(200);
	return parsePrometheus(await res.text());
}

/** A sample's value, 0 when the series does not exist yet (a counter never incremented). */
const valueOf = (families: Map<string, Family>, name: string, labels: Record<string, string> = {}) => sampleOf(families, name, labels)?.value ?? 0;

const inDays = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);

beforeAll(async () => {
	cluster = await startCluster([PatientsService, BillingService, DoctorsService, AppointmentsService] as ServiceSchema[]);
	adminToken = await adminLogin(cluster.baseUrl);
});

afterAll(() => cluster?.stop());

describe("HTTP server latency", () => {
	test("a histogram in seconds by method, route template and status; never a raw path", async () => {
		const patient = await createPatient(api);
		expect((await api("GET", `/patients/${patient.id}`)).status).toBe(200);
		expect((await api("GET", `/patients/${crypto.randomUUID()}`)).status).toBe(404);
		expect((await api("GET", `/no-such-path/${patient.id}`)).status).toBe(404);
		const families = await scrape();

		const histogram = families.get("http_server_request_duration_seconds");
		expect(histogram?.type).toBe("histogram");
		const read = { method: "GET", route: "/patients/:id", status: "200" };
		expect(valueOf(families, "http_server_request_duration_seconds_count", read)).toBeGreaterThanOrEqual(1);
		expect(valueOf(families, "http_server_request_duration_seconds_sum", read)).toBeGreaterThan(0);
		expect(valueOf(families, "http_server_request_duration_seconds_count", { method: "GET", route: "/patients/:id", status: "404" })).toBeGreaterThanOrEqual(1);
		expect(valueOf(families, "http_server_request_duration_seconds_count", { method: "POST", route: "/patients", status: "201" })).toBeGreaterThanOrEqual(1);
		// A path no route serves is one series, whatever its path.
		expect(valueOf(families, "http_server_request_duration_seconds_count", { method: "GET", route: "unmatched", status: "404" })).toBeGreaterThanOrEqual(1);
		// The buckets are the ones chosen, in seconds.
		const bounds = histogram!.samples.filter(s => s.name.endsWith("_bucket") && s.labels.route === "/patients/:id" && s.labels.status === "200").map(s => s.labels.le);
		expect(bounds).toEqual(expect.arrayContaining([...HTTP_DURATION_BUCKETS.map(String), "+Inf"]));
		// No id, and so no patient, ever reaches a label.
		for (const sample of histogram!.samples) expect(sample.labels.route).not.toContain(patient.id);
	});
});

describe("database pools", () => {
	test("each service's pool: connections, idle, waiting, labelled by service", async () => {
		await createPatient(api);
		const families = await scrape();
		for (const service of ["patients", "billing", "doctors", "appointments", "auth", "audit"]) {
			const total = sampleOf(families, "medsync_db_pool_connections", { service });
			const idle = sampleOf(families, "medsync_db_pool_idle_connections", { service });
			const waiting = sampleOf(families, "medsync_db_pool_waiting_requests", { service });
			expect([service, total?.value]).toEqual([service, expect.any(Number)]);
			// A registration has used the patients', billing's and (the login) auth's pools, which keep a connection open.
			if (["patients", "billing", "auth"].includes(service)) expect([service, total!.value >= 1]).toEqual([service, true]);
			expect(idle!.value).toBeGreaterThanOrEqual(0);
			expect(idle!.value).toBeLessThanOrEqual(total!.value);
			expect(waiting!.value).toBeGreaterThanOrEqual(0);
		}
		expect(families.get("medsync_db_pool_connections")?.type).toBe("gauge");
	});

	test("a statement waiting for a connection shows in the waiting gauge", async () => {
		const db = (cluster.broker.getLocalService("doctors") as unknown as { db: { transaction<T>(work: () => Promise<T>): Promise<T> } }).db;
		// Hold every connection of the doctors pool, then ask for one more.
		const { databasePoolMax } = config;
		let release!: () => void;
		const held = new Promise<void>(resolve => (release = resolve));
		const holders = Array.from({ length: databasePoolMax }, () => db.transaction(() => held));
		const waiter = db.transaction(async () => undefined);
		try {
			const families = await eventually(async () => {
				const now = await scrape();
				return valueOf(now, "medsync_db_pool_waiting_requests", { service: "doctors" }) >= 1 ? now : undefined;
			}, 5000, "a waiting statement");
			expect(valueOf(families, "medsync_db_pool_connections", { service: "doctors" })).toBe(databasePoolMax);
			expect(valueOf(families, "medsync_db_pool_idle_connections", { service: "doctors" })).toBe(0);
		} finally {
			release();
			await Promise.all([...holders, waiter]);
		}
		expect(valueOf(await scrape(), "medsync_db_pool_waiting_requests", { service: "doctors" })).toBe(0);
	});
});

describe("event-loop lag", () => {
	test("a blocked event loop shows in the lag gauges, in seconds", async () => {
		await scrape();
		// Blocks this process's event loop for 100 ms: the sampler's next tick is at least that late.
		const until = Date.now() + 100;
		while (Date.now() < until);
		await new Promise(resolve => setTimeout(resolve, 20));
		const families = await scrape();
		expect(families.get("nodejs_eventloop_lag_seconds")?.type).toBe("gauge");
		expect(valueOf(families, "nodejs_eventloop_lag_max_seconds")).toBeGreaterThanOrEqual(0.05);
		expect(valueOf(families, "nodejs_eventloop_lag_p99_seconds")).toBeGreaterThan(0);
		expect(valueOf(families, "nodejs_eventloop_lag_seconds")).toBeGreaterThan(0);
	});
});

describe("business counters", () => {
	test("count committed changes once: registrations, bookings, cancellations, fulfilments, postings", async () => {
		const before = await scrape();
		const count = (families: Map<string, Family>) => ({
			registered: valueOf(families, "medsync_patients_registered_total"),
			booked: valueOf(families, "medsync_appointments_booked_total"),
			cancelled: valueOf(families, "medsync_appointments_cancelled_total"),
			fulfilled: valueOf(families, "medsync_appointments_fulfilled_total"),
			payments: valueOf(families, "medsync_billing_postings_total", { type: "PAYMENT" }),
			charges: valueOf(families, "medsync_billing_postings_total", { type: "CHARGE" })
		});
		const start = count(before);

		// One registration, retried under its key: one patient, counted once.
		const key = { "idempotency-key": crypto.randomUUID() };
		const body = patientBody();
		const first = await api("POST", "/patients", body, key);
		expect(first.status).toBe(201);
		expect((await api("POST", "/patients", body, key)).status).toBe(201);
		// A refused registration (a taken email) commits nothing.
		expect((await api("POST", "/patients", patientBody({ email: body.email }))).status).toBe(409);
		const patient = first.body;

		const doctor = await createDoctor(api);
		const book = async (hour: number) => {
			const res = await api("POST", "/appointments", { doctorId: doctor.id, patientId: patient.id, start: `${inDays(12)}T${String(hour).padStart(2, "0")}:00:00Z` });
			expect(res.status).toBe(201);
			return res.body as { id: string };
		};
		const [kept, dropped] = [await book(9), await book(11)];
		expect((await api("POST", `/appointments/${kept.id}/arrive`)).status).toBe(200);
		expect((await api("POST", `/appointments/${kept.id}/fulfil`)).status).toBe(200);
		expect((await api("POST", `/appointments/${dropped.id}/cancel`, { reason: "Patient called" })).status).toBe(200);
		// A step the lifecycle refuses commits nothing.
		expect((await api("POST", `/appointments/${dropped.id}/cancel`, { reason: "Again" })).status).toBe(409);

		const account = patient.billingAccountId as string;
		const payment = { type: "PAYMENT", amount: 2_500 };
		const paymentKey = { "idempotency-key": crypto.randomUUID() };
		expect((await api("POST", `/billing/accounts/${account}/transactions`, payment, paymentKey)).status).toBe(201);
		expect((await api("POST", `/billing/accounts/${account}/transactions`, payment, paymentKey)).status).toBe(201);

		// The fulfilment's charge reaches billing after the answer.
		const after = await eventually(async () => {
			const now = await scrape();
			return count(now).charges > start.charges ? now : undefined;
		}, 15_000, "the consultation's charge");
		expect(count(after)).toEqual({
			registered: start.registered + 1,
			booked: start.booked + 2,
			cancelled: start.cancelled + 1,
			fulfilled: start.fulfilled + 1,
			payments: start.payments + 1,
			charges: start.charges + 1
		});
		for (const name of ["medsync_patients_registered_total", "medsync_appointments_booked_total", "medsync_billing_postings_total"]) {
			expect([name, after.get(name)?.type]).toEqual([name, "counter"]);
		}
	});
});

describe("the rest of the operator's gauges", () => {
	test("the outbox depth and the audit journal's backlog are there, under the medsync_ prefix", async () => {
		await createPatient(api);
		const families = await scrape();
		expect(sampleOf(families, "medsync_outbox_pending")?.value).toBeGreaterThanOrEqual(0);
		expect(sampleOf(families, "medsync_audit_journal_pending")?.value).toBeGreaterThanOrEqual(0);
		expect(sampleOf(families, "medsync_audit_journal_oldest_seconds")?.value).toBeGreaterThanOrEqual(0);
		// Moleculer's own per-action series stay, now as Prometheus histograms.
		expect(families.get("moleculer_request_time")?.type).toBe("histogram");
		expect(sampleOf(families, "moleculer_request_time_count", { action: "patients.create" })?.value).toBeGreaterThanOrEqual(1);
	});
});

describe("the Grafana dashboard", () => {
	test("queries only metrics the nodes export", async () => {
		await createPatient(api);
		const families = await scrape();
		const dashboard = fs.readFileSync(path.join(PROJECT_ROOT, "observability/grafana/dashboards/medsync.json"), "utf8");
		const queries = (JSON.parse(dashboard) as { panels: { targets?: { expr: string }[] }[] }).panels.flatMap(panel => panel.targets ?? []).map(target => target.expr);
		const names = new Set(queries.flatMap(expr => [...expr.matchAll(/\b((?:http_server|medsync|nodejs)_[a-z0-9_]+)/g)].map(m => m[1].replace(/_(bucket|sum|count)$/, ""))));
		expect(names.size).toBeGreaterThanOrEqual(15);
		// Consumer lag has series only with Kafka, which this suite does without; kafka.test.ts reads it.
		names.delete("medsync_kafka_consumer_lag");
		for (const name of names) expect([name, families.has(name)]).toEqual([name, true]);
	});
});
