import { createHistogram, performance } from "node:perf_hooks";
import type { MetricRegistry } from "moleculer";

/**
 * MedSync's own metrics, named as Prometheus expects them once Moleculer's dots
 * become underscores: base units (seconds), `_total` on counters only. What
 * each one means for an operator: docs/operations.md, "Metrics".
 */
export const METRICS = {
	httpDuration: "http.server.request.duration.seconds",
	poolConnections: "medsync.db.pool.connections",
	poolIdle: "medsync.db.pool.idle.connections",
	poolWaiting: "medsync.db.pool.waiting.requests",
	eventLoopLag: "nodejs.eventloop.lag.seconds",
	eventLoopLagP99: "nodejs.eventloop.lag.p99.seconds",
	eventLoopLagMax: "nodejs.eventloop.lag.max.seconds",
	patientsRegistered: "medsync.patients.registered.total",
	appointmentsBooked: "medsync.appointments.booked.total",
	appointmentsCancelled: "medsync.appointments.cancelled.total",
	appointmentsFulfilled: "medsync.appointments.fulfilled.total",
	ledgerPostings: "medsync.billing.postings.total"
} as const;

/**
 * OpenTelemetry's advice for `http.server.request.duration`, in seconds: fine
 * below 100 ms where most answers fall, up to the 10 s request timeout.
 */
export const HTTP_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

type MetricOptions =
	| MetricRegistry.GaugeMetricOptions
	| MetricRegistry.CounterMetricOptions
	| MetricRegistry.HistogramMetricOptions;

/**
 * Registers a metric unless the broker has it already. Services in one process
 * share a broker, and registering a name again would replace the metric with
 * an empty one, losing the values the other services set.
 */
export function ensureMetric(registry: MetricRegistry, options: MetricOptions): void {
	if (!registry.isEnabled() || registry.hasMetric(options.name)) return;
	registry.register(options as never);
}

/** The business counters: each counts a change once it has committed. */
export function registerBusinessCounter(registry: MetricRegistry, name: (typeof METRICS)[keyof typeof METRICS], description: string, labelNames?: string[]): void {
	ensureMetric(registry, { type: "counter", name, description, labelNames });
}

/** Counts a committed change; nothing when metrics are off. */
export function countCommitted(registry: MetricRegistry, name: (typeof METRICS)[keyof typeof METRICS], labels?: Record<string, string>, by = 1): void {
	if (registry.isEnabled() && by > 0) registry.increment(name, labels, by);
}

const collectors = new WeakMap<MetricRegistry, Set<() => void>>();

/**
 * Runs `collect` just before each scrape, to set gauges that are cheap to read
 * and costly to keep current (a pool's counts change on every statement).
 * Returns what stops it.
 */
export function beforeScrape(registry: MetricRegistry, collect: () => void): () => void {
	let set = collectors.get(registry);
	if (!set) collectors.set(registry, (set = new Set()));
	set.add(collect);
	return () => set.delete(collect);
}

/** Runs the registry's collectors; the Prometheus reporter calls it before it renders. */
export function collectForScrape(registry: MetricRegistry): void {
	for (const collect of collectors.get(registry) ?? []) collect();
}

/** A pool's counts, as pg's Pool keeps them. */
export interface PoolStats {
	total: number;
	idle: number;
	waiting: number;
}

/** Gauges of a service's connection pool, labelled by service, read at each scrape. */
export function registerPoolGauges(registry: MetricRegistry, service: string, stats: () => PoolStats): () => void {
	if (!registry.isEnabled()) return () => {};
	ensureMetric(registry, { type: "gauge", name: METRICS.poolConnections, labelNames: ["service"], description: "Connections the service's database pool holds, busy or idle" });
	ensureMetric(registry, { type: "gauge", name: METRICS.poolIdle, labelNames: ["service"], description: "Connections of the service's database pool that are idle" });
	ensureMetric(registry, { type: "gauge", name: METRICS.poolWaiting, labelNames: ["service"], description: "Statements and transactions waiting for one of the pool's connections" });
	return beforeScrape(registry, () => {
		const now = stats();
		registry.set(METRICS.poolConnections, now.total, { service });
		registry.set(METRICS.poolIdle, now.idle, { service });
		registry.set(METRICS.poolWaiting, now.waiting, { service });
	});
}

/** How often the lag sampler wakes: a lag shorter than this is no concern, and a finer one would cost more. */
const LAG_RESOLUTION_MS = 10;

/**
 * Event-loop lag between two scrapes: how late a timer due every 10 ms woke,
 * as prom-client's Node.js metrics name it, so Node.js dashboards read it as
 * they are. Moleculer collects CPU and memory but no lag. Not Node's own
 * monitorEventLoopDelay: on Node 24 it records about 10 ms for a loop blocked
 * for 100 ms (checked with a script), which hid the very stalls this is for.
 * Returns what stops the sampler.
 */
export function registerEventLoopLag(registry: MetricRegistry): () => void {
	const delay = createHistogram();
	let last = performance.now();
	const sampler = setInterval(() => {
		const now = performance.now();
		// The histogram takes whole numbers from 1: nanoseconds, at least 1.
		delay.record(Math.max(1, Math.round(Math.max(0, now - last - LAG_RESOLUTION_MS) * 1e6)));
		last = now;
	}, LAG_RESOLUTION_MS).unref();
	ensureMetric(registry, { type: "gauge", name: METRICS.eventLoopLag, description: "Mean event-loop delay since the last scrape, in seconds" });
	ensureMetric(registry, { type: "gauge", name: METRICS.eventLoopLagP99, description: "99th percentile of the event-loop delay since the last scrape, in seconds" });
	ensureMetric(registry, { type: "gauge", name: METRICS.eventLoopLagMax, description: "Longest event-loop delay since the last scrape, in seconds" });
	const stop = beforeScrape(registry, () => {
		// Before the sampler's first tick there is nothing to report (its mean is NaN): the gauges say 0.
		const seconds = (ns: number) => (Number.isFinite(ns) && delay.count > 0 ? ns / 1e9 : 0);
		registry.set(METRICS.eventLoopLag, seconds(delay.mean));
		registry.set(METRICS.eventLoopLagP99, seconds(delay.percentile(99)));
		registry.set(METRICS.eventLoopLagMax, seconds(delay.max));
		delay.reset();
	});
	return () => {
		stop();
		clearInterval(sampler);
	};
}

interface Snapshot {
	labels: Record<string, unknown>;
	value?: unknown;
	count?: number;
	sum?: number;
	buckets?: Record<string, number>;
}

interface RenderedMetric {
	name: string;
	type: string;
	description?: string;
	unit?: string;
	snapshot(): Snapshot[];
}

/** What the renderer needs of Moleculer's Prometheus reporter. */
export interface PrometheusFormat {
	matchMetricName(name: string): boolean;
	formatMetricName(name: string): string;
	labelsToStr(labels: Record<string, unknown>, extra?: Record<string, unknown>): string;
}

/**
 * The registry in Prometheus' text format (0.0.4). Moleculer's own renderer
 * writes a histogram's `_sum` and `_count` only beside quantiles, and adds
 * series no Prometheus type has (`_rate`, a histogram's `_min`, `_mean`,
 * quantiles): without `_sum` and `_count`, `histogram_quantile` over a rate and
 * an average latency cannot be computed, and strict parsers refuse the rest.
 * This one writes each counter, gauge and histogram as Prometheus defines it.
 */
export function renderPrometheus(registry: MetricRegistry, format: PrometheusFormat): string {
	const lines: string[] = [];
	const value = (v: unknown) => (v == null ? "NaN" : String(v));
	for (const metric of registry.store.values() as Iterable<RenderedMetric>) {
		// Moleculer's clock metrics carry the time as labels: a new series every scrape.
		if (!format.matchMetricName(metric.name) || metric.name.startsWith("os.datetime")) continue;
		const snapshot = metric.snapshot();
		if (snapshot.length === 0) continue;
		const name = format.formatMetricName(metric.name).replace(/[.-]/g, "_");
		const help = (metric.description ?? metric.name + (metric.unit ? ` (${metric.unit})` : "")).replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
		lines.push(`# HELP ${name} ${help}`);
		if (metric.type === "histogram") {
			lines.push(`# TYPE ${name} histogram`);
			for (const item of snapshot) {
				const bounds = Object.keys(item.buckets ?? {}).sort((a, b) => Number(a) - Number(b));
				for (const le of bounds) lines.push(`${name}_bucket${format.labelsToStr(item.labels, { le })} ${value(item.buckets![le])}`);
				lines.push(`${name}_bucket${format.labelsToStr(item.labels, { le: "+Inf" })} ${value(item.count)}`);
				lines.push(`${name}_sum${format.labelsToStr(item.labels)} ${value(item.sum)}`);
				lines.push(`${name}_count${format.labelsToStr(item.labels)} ${value(item.count)}`);
			}
		} else if (metric.type === "info") {
			lines.push(`# TYPE ${name} gauge`);
			for (const item of snapshot) lines.push(`${name}${format.labelsToStr(item.labels, { value: item.value })} 1`);
		} else {
			lines.push(`# TYPE ${name} ${metric.type}`);
			for (const item of snapshot) lines.push(`${name}${format.labelsToStr(item.labels)} ${value(item.value)}`);
		}
		lines.push("");
	}
	return lines.join("\n");
}
