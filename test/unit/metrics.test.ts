import { MetricReporters, ServiceBroker } from "moleculer";
import { type PrometheusFormat, METRICS, beforeScrape, collectForScrape, ensureMetric, registerPoolGauges, renderPrometheus } from "../../lib/infra/metrics";
import { parsePrometheus, sampleOf } from "../helpers/prometheus";

/** A broker with metrics on and no reporter, and Moleculer's Prometheus formatting to render it with. */
function registry() {
	const broker = new ServiceBroker({ logger: false, metrics: { enabled: true, collectProcessMetrics: false, reporter: [] } });
	const format = new MetricReporters.Prometheus({ port: 0 }) as unknown as PrometheusFormat & { init(r: unknown): void; defaultLabels: object };
	format.defaultLabels = { nodeID: "n1" };
	return { metrics: broker.metrics, format };
}

describe("Prometheus text", () => {
	test("a labelled histogram: cumulative buckets in order, +Inf, _sum and _count per series; no series of no type", () => {
		const { metrics, format } = registry();
		ensureMetric(metrics, { type: "histogram", name: METRICS.httpDuration, labelNames: ["method", "route", "status"], buckets: [0.005, 0.1, 1, 2.5] });
		ensureMetric(metrics, { type: "counter", name: METRICS.patientsRegistered, description: "Patients \\ registered\nonce" });
		for (const seconds of [0.003, 0.05, 0.5, 3]) metrics.observe(METRICS.httpDuration, seconds, { method: "GET", route: "/patients/:id", status: "200" });
		metrics.observe(METRICS.httpDuration, 0.2, { method: "POST", route: "/patients", status: "201" });
		metrics.increment(METRICS.patientsRegistered);
		const text = renderPrometheus(metrics, format);

		const read = { method: "GET", route: "/patients/:id", status: "200" };
		expect(text.split("\n").filter(line => line.startsWith("http_server_request_duration_seconds_bucket") && line.includes('route="/patients/:id"'))).toEqual([
			'http_server_request_duration_seconds_bucket{nodeID="n1",method="GET",route="/patients/:id",status="200",le="0.005"} 1',
			'http_server_request_duration_seconds_bucket{nodeID="n1",method="GET",route="/patients/:id",status="200",le="0.1"} 2',
			'http_server_request_duration_seconds_bucket{nodeID="n1",method="GET",route="/patients/:id",status="200",le="1"} 3',
			'http_server_request_duration_seconds_bucket{nodeID="n1",method="GET",route="/patients/:id",status="200",le="2.5"} 3',
			'http_server_request_duration_seconds_bucket{nodeID="n1",method="GET",route="/patients/:id",status="200",le="+Inf"} 4'
		]);
		const families = parsePrometheus(text);
		expect(sampleOf(families, "http_server_request_duration_seconds_count", read)?.value).toBe(4);
		expect(sampleOf(families, "http_server_request_duration_seconds_sum", read)?.value).toBeCloseTo(3.553);
		expect(sampleOf(families, "http_server_request_duration_seconds_count", { route: "/patients" })?.value).toBe(1);
		expect(sampleOf(families, "medsync_patients_registered_total")?.value).toBe(1);
		expect(families.get("medsync_patients_registered_total")?.help).toBe("Patients \\\\ registered\\nonce");
		expect(text).not.toMatch(/_rate|_mean|quantile=/);
	});

	test("gauges read at the scrape, by service, and no longer once their service stops", () => {
		const { metrics, format } = registry();
		let waiting = 2;
		const stop = registerPoolGauges(metrics, "doctors", () => ({ total: 10, idle: 0, waiting }));
		let extra = 0;
		beforeScrape(metrics, () => extra++);
		collectForScrape(metrics);
		expect(sampleOf(parsePrometheus(renderPrometheus(metrics, format)), "medsync_db_pool_waiting_requests", { service: "doctors" })?.value).toBe(2);
		waiting = 0;
		collectForScrape(metrics);
		expect(sampleOf(parsePrometheus(renderPrometheus(metrics, format)), "medsync_db_pool_waiting_requests", { service: "doctors" })?.value).toBe(0);
		stop();
		waiting = 5;
		collectForScrape(metrics);
		expect(sampleOf(parsePrometheus(renderPrometheus(metrics, format)), "medsync_db_pool_waiting_requests", { service: "doctors" })?.value).toBe(0);
		expect(extra).toBe(3);
	});

	test("a metric registered twice (two services in one process) keeps the values the first one set", () => {
		const { metrics } = registry();
		const lag = { type: "gauge" as const, name: "medsync.kafka.consumer.lag", labelNames: ["group", "topic"] };
		ensureMetric(metrics, lag);
		metrics.set(lag.name, 7, { group: "billing", topic: "patient" });
		ensureMetric(metrics, lag);
		expect(metrics.getMetric(lag.name)?.snapshot()).toEqual([expect.objectContaining({ value: 7 })]);
	});
});

describe("the test's parser refuses what Prometheus would", () => {
	const histogram = (lines: string[]) => ["# TYPE x histogram", ...lines].join("\n");
	test.each([
		["a malformed line", "# TYPE a counter\na{b=\"c\" 1"],
		["a value that is no number", "# TYPE a counter\na one"],
		["a sample of no declared family", "a 1"],
		["a suffix the type has not", "# TYPE a counter\na_sum 1"],
		["a family declared after its samples", "# TYPE a counter\na 1\n# HELP a late"],
		["a histogram without +Inf", histogram(['x_bucket{le="1"} 1', "x_sum 1", "x_count 1"])],
		["a histogram without _count", histogram(['x_bucket{le="+Inf"} 1', "x_sum 1"])],
		["buckets that are not cumulative", histogram(['x_bucket{le="1"} 2', 'x_bucket{le="2"} 1', 'x_bucket{le="+Inf"} 2', "x_sum 1", "x_count 2"])]
	])("%s", (_what, text) => {
		expect(() => parsePrometheus(text)).toThrow();
	});

	test("and reads a well-formed one", () => {
		const families = parsePrometheus(histogram(['x_bucket{a="q\\"uote",le="1"} 1', 'x_bucket{a="q\\"uote",le="+Inf"} 2', 'x_sum{a="q\\"uote"} 3.5', 'x_count{a="q\\"uote"} 2']));
		expect(sampleOf(families, "x_sum", { a: 'q"uote' })?.value).toBe(3.5);
	});
});
