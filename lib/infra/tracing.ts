import type { IncomingMessage, ServerResponse } from "node:http";
import {
	type Attributes,
	type Context,
	DiagLogLevel,
	ROOT_CONTEXT,
	type Span,
	SpanKind,
	SpanStatusCode,
	type TextMapGetter,
	type TextMapSetter,
	type Tracer,
	context,
	diag,
	isSpanContextValid,
	trace
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter as OtlpJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, type SpanExporter, TracerProvider } from "@opentelemetry/sdk-trace";
import {
	ATTR_ERROR_TYPE,
	ATTR_HTTP_REQUEST_METHOD,
	ATTR_HTTP_RESPONSE_STATUS_CODE,
	ATTR_HTTP_ROUTE,
	ATTR_SERVICE_NAME,
	ATTR_SERVICE_VERSION
} from "@opentelemetry/semantic-conventions";

/**
 * OpenTelemetry tracing for MedSync. One tracer per process, started by the
 * broker's TracingMiddleware when TRACING_EXPORTER is set; until then (and
 * always with tracing off) every helper here returns at its first line, so
 * no span, carrier or context is ever made.
 *
 * Trace context crosses every boundary as W3C `traceparent`/`tracestate`: in
 * HTTP headers at the gateway, in Moleculer context headers between nodes, in
 * gRPC metadata, and in the outbox row and Kafka message headers.
 */

/** W3C trace context as text headers: `traceparent` and, when there is one, `tracestate`. */
export type TraceCarrier = Record<string, string>;

export interface TracingOptions {
	/** `service.name` of this process's spans, e.g. medsync-billing. */
	serviceName: string;
	/** `service.instance.id`: the Moleculer node ID. */
	instanceId: string;
	version: string;
	/** Where finished spans go. */
	exporter: SpanExporter;
	/** Batch and send every this many ms (OTLP); 0 sends each span as it ends (the console). */
	batchDelayMs: number;
	/** Where the SDK's own warnings (an unreachable collector) go. */
	warn(message: string): void;
}

export type ExporterKind = "otlp" | "console";
export type OtlpProtocol = "http/protobuf" | "http/json";

/** The exporter TRACING_EXPORTER names; OTLP reads its endpoint, headers and timeout from OTel's own OTEL_EXPORTER_OTLP_* variables. */
export function spanExporter(kind: ExporterKind, protocol: OtlpProtocol): SpanExporter {
	if (kind === "console") return new ConsoleSpanExporter();
	return protocol === "http/json" ? new OtlpJsonExporter() : new OtlpProtobufExporter();
}

const propagator = new W3CTraceContextPropagator();

let provider: TracerProvider | undefined;
let tracer: Tracer | undefined;
/** Brokers sharing this process's tracer (tests run several): the last to stop shuts it down. */
let users = 0;

/** Starts this process's tracer; a second broker in the same process shares the first one's (its options are not read). */
export function startTracing(optionsOf: () => TracingOptions): void {
	users++;
	if (provider) return;
	const options = optionsOf();
	context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
	diag.setLogger(
		{ error: options.warn, warn: options.warn, info: () => {}, debug: () => {}, verbose: () => {} },
		{ logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true }
	);
	provider = new TracerProvider({
		resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName, [ATTR_SERVICE_VERSION]: options.version, "service.instance.id": options.instanceId }),
		spanProcessors: [
			options.batchDelayMs > 0
				? new BatchSpanProcessor({ exporter: options.exporter, scheduledDelayMillis: options.batchDelayMs })
				: new SimpleSpanProcessor({ exporter: options.exporter })
		]
	});
	tracer = provider.getTracer("medsync", options.version);
}

/** Sends what is buffered and stops, once the last broker that started tracing stops. */
export async function stopTracing(): Promise<void> {
	if (!provider || --users > 0) return;
	const stopping = provider;
	provider = undefined;
	tracer = undefined;
	await stopping.shutdown();
	context.disable();
	diag.disable();
}

/** The tracer, or undefined while tracing is off: callers make no span then. */
export function activeTracer(): Tracer | undefined {
	return tracer;
}

const carrierGetter: TextMapGetter<Record<string, unknown>> = {
	get: (carrier, key) => {
		const value = carrier[key];
		return typeof value === "string" || Array.isArray(value) ? value : undefined;
	},
	keys: carrier => Object.keys(carrier)
};

const carrierSetter: TextMapSetter<TraceCarrier> = {
	set: (carrier, key, value) => {
		carrier[key] = value;
	}
};

/** The context a carrier names (W3C headers, as strings or node's header arrays); a missing or malformed one is a new trace. */
export function contextFrom(carrier: Record<string, unknown> | null | undefined): Context {
	return carrier ? propagator.extract(ROOT_CONTEXT, carrier, carrierGetter) : ROOT_CONTEXT;
}

/** `ctx` (by default the active context) as W3C headers, or null with tracing off or no span in it. */
export function traceCarrier(ctx?: Context): TraceCarrier | null {
	if (!tracer) return null;
	const current = ctx ?? context.active();
	const span = trace.getSpan(current);
	if (!span || !isSpanContextValid(span.spanContext())) return null;
	const carrier: TraceCarrier = {};
	propagator.inject(current, carrier, carrierSetter);
	return carrier;
}

/** Writes `ctx`'s trace context into any carrier (gRPC metadata, message headers). */
export function injectInto<C>(ctx: Context, carrier: C, set: (carrier: C, key: string, value: string) => void): void {
	propagator.inject(ctx, carrier, { set });
}

/**
 * A span's error: its type (never the message, which may quote a value a
 * client sent). A client's mistake (a Moleculer error with a 4xx code) is the
 * client's, so the span's status stays unset; anything else marks it failed.
 */
export function recordFailure(span: Span, err: unknown): void {
	const { name, type, code } = (err ?? {}) as { name?: string; type?: unknown; code?: unknown };
	span.setAttribute(ATTR_ERROR_TYPE, typeof type === "string" ? type : (name ?? "Error"));
	const clientMistake = typeof type === "string" && typeof code === "number" && code >= 400 && code < 500;
	if (!clientMistake) span.setStatus({ code: SpanStatusCode.ERROR, message: name });
}

/** A gRPC call's attributes, from its path (`/BillingService/CreateBillingAccount`). */
export function grpcSpanAttributes(path: string): Attributes {
	const [, service = "", method = ""] = /^\/?([^/]*)\/(.*)$/.exec(path) ?? [];
	return { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method };
}

/** gRPC metadata as a trace context carrier. */
export function metadataCarrier(metadata: { getMap(): Record<string, unknown> }): Record<string, unknown> {
	return metadata.getMap();
}

export interface SpanStart {
	kind: SpanKind;
	/**
	 * Where a remote parent's context comes in (HTTP or message headers, gRPC
	 * metadata), read only with tracing on; with none in it the span starts a
	 * trace. Without this the span's parent is the active context.
	 */
	carrier?: () => Record<string, unknown> | null | undefined;
	attributes?: Attributes;
}

/**
 * Runs `work` in a new span, active for everything it does, ended with its
 * outcome. With tracing off it runs `work` alone (with no span).
 */
export function inSpan<T>(name: string, start: SpanStart, work: (span: Span | undefined, spanContext: Context) => Promise<T>): Promise<T> {
	if (!tracer) return work(undefined, context.active());
	const parent = start.carrier ? contextFrom(start.carrier()) : context.active();
	const span = tracer.startSpan(name, { kind: start.kind, attributes: start.attributes }, parent);
	const spanContext = trace.setSpan(parent, span);
	return context.with(spanContext, () =>
		work(span, spanContext).then(
			result => {
				span.end();
				return result;
			},
			err => {
				recordFailure(span, err);
				span.end();
				throw err;
			}
		)
	);
}

/**
 * The gateway's server span of one HTTP request, continuing the client's trace
 * when it sent a `traceparent`. Named by the route's template once routing
 * found it (`POST /patients/:id`), never by the URL, whose path and query may
 * hold patient data.
 */
export function traceHttpRequest<T>(req: IncomingMessage & { $alias?: { fullPath?: string } }, res: ServerResponse, handle: () => T): T {
	if (!tracer) return handle();
	const method = req.method ?? "_OTHER";
	const parent = contextFrom(req.headers);
	const span = tracer.startSpan(method, { kind: SpanKind.SERVER, attributes: { [ATTR_HTTP_REQUEST_METHOD]: method } }, parent);
	res.once("close", () => {
		const route = req.$alias?.fullPath;
		if (route) {
			span.setAttribute(ATTR_HTTP_ROUTE, route);
			span.updateName(`${method} ${route}`);
		}
		span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, res.statusCode);
		if (res.statusCode >= 500) {
			span.setAttribute(ATTR_ERROR_TYPE, String(res.statusCode));
			span.setStatus({ code: SpanStatusCode.ERROR });
		}
		span.end();
	});
	return context.with(trace.setSpan(parent, span), handle);
}
