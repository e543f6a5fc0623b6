import crypto from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace";
import { Errors, ServiceBroker } from "moleculer";
import { config } from "../../lib/infra/config";
import {
	activeTracer,
	contextFrom,
	inSpan,
	injectInto,
	metadataCarrier,
	spanExporter,
	startTracing,
	stopTracing,
	traceCarrier
} from "../../lib/infra/tracing";
import { TracingMiddleware } from "../../lib/infra/tracing-middleware";
import { publishOutbox } from "../../services/patients/events";
import type { OutboxRow } from "../../services/patients/queries";
import type { OutgoingMessage } from "../../mixins/kafka.mixin";
import { startOtlpReceiver } from "../helpers/otlp-receiver";

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

function outboxRow(traceContext: Record<string, string> | null): OutboxRow {
	return { id: "1", eventId: crypto.randomUUID(), topic: "patient", key: crypto.randomUUID(), eventType: "PATIENT_CREATED", payload: Buffer.from("x"), traceContext };
}

describe("tracing off (the default)", () => {
	test("makes no span, no carrier and no header", async () => {
		expect(activeTracer()).toBeUndefined();
		expect(traceCarrier()).toBeNull();
		await expect(inSpan("work", { kind: SpanKind.INTERNAL }, async span => span)).resolves.toBeUndefined();
		let sent: OutgoingMessage[] = [];
		await publishOutbox([outboxRow(null)], async messages => void (sent = messages));
		expect(Object.keys(sent[0].headers!)).toEqual(["event-type", "event-id"]);
	});

	test("the Moleculer middleware leaves every handler as it is", () => {
		const handler = async () => "answer";
		const middleware = TracingMiddleware("medsync") as unknown as { localAction(next: unknown, action: unknown): unknown; remoteAction(next: unknown, action: unknown): unknown };
		expect(middleware.localAction(handler, { name: "patients.get" })).toBe(handler);
		expect(middleware.remoteAction(handler, { name: "patients.get" })).toBe(handler);
	});
});

describe("tracing on", () => {
	const exporter = new InMemorySpanExporter();
	const spans = () => exporter.getFinishedSpans();
	const spanNamed = (name: string) => spans().find(s => s.name === name)!;

	beforeAll(() => startTracing(() => ({ serviceName: "medsync-test", instanceId: "unit", version: "0", exporter, batchDelayMs: 0, warn: () => {} })));
	afterAll(() => stopTracing());
	beforeEach(() => exporter.reset());

	test("the active span travels as a W3C traceparent and comes back as the parent of the next span", async () => {
		let carrier: Record<string, string> | null = null;
		await inSpan("caller", { kind: SpanKind.CLIENT }, async () => void (carrier = traceCarrier()));
		const caller = spanNamed("caller");
		expect(carrier!.traceparent).toBe(`00-${caller.spanContext().traceId}-${caller.spanContext().spanId}-01`);

		await inSpan("callee", { kind: SpanKind.SERVER, carrier: () => carrier }, async () => {});
		const callee = spanNamed("callee");
		expect(callee.spanContext().traceId).toBe(caller.spanContext().traceId);
		expect(callee.parentSpanContext?.spanId).toBe(caller.spanContext().spanId);
		expect(callee.parentSpanContext?.isRemote).toBe(true);
	});

	test("node's header arrays are read too; a missing or malformed traceparent starts a new trace", async () => {
		const traceId = crypto.randomBytes(16).toString("hex");
		const fromArray = trace.getSpanContext(contextFrom({ traceparent: [`00-${traceId}-${"1".repeat(16)}-01`] }));
		expect(fromArray?.traceId).toBe(traceId);
		for (const carrier of [{ traceparent: "00-not-a-trace-01" }, { traceparent: `00-${"0".repeat(32)}-${"1".repeat(16)}-01` }, {}, null]) {
			await inSpan("fresh", { kind: SpanKind.SERVER, carrier: () => carrier }, async () => {});
			expect(spanNamed("fresh").parentSpanContext).toBeUndefined();
			exporter.reset();
		}
	});

	test("gRPC metadata carries the context", async () => {
		const metadata = new Metadata();
		await inSpan("call", { kind: SpanKind.CLIENT }, async (_span, spanContext) => injectInto(spanContext, metadata, (m, key, value) => m.set(key, value)));
		expect(String(metadata.get("traceparent")[0])).toMatch(TRACEPARENT);
		const parent = trace.getSpanContext(contextFrom(metadataCarrier(metadata)));
		expect(parent?.spanId).toBe(spanNamed("call").spanContext().spanId);
	});

	test("a client's mistake leaves the span's status unset; anything else marks it failed; neither records the message", async () => {
		const mistake = new Errors.MoleculerClientError("Email bob@example.org is taken", 422, "VALIDATION_ERROR");
		await expect(inSpan("refused", { kind: SpanKind.SERVER }, () => Promise.reject(mistake))).rejects.toBe(mistake);
		await expect(inSpan("broken", { kind: SpanKind.SERVER }, () => Promise.reject(new TypeError("patient Bob")))).rejects.toThrow();
		expect(spanNamed("refused").status.code).toBe(SpanStatusCode.UNSET);
		expect(spanNamed("refused").attributes["error.type"]).toBe("VALIDATION_ERROR");
		expect(spanNamed("broken").status.code).toBe(SpanStatusCode.ERROR);
		expect(JSON.stringify(spans().map(s => [s.attributes, s.status, s.events]))).not.toMatch(/bob|Bob/);
	});

	test("the relay: a traced row gets a producer span in its trace, and its message that span's context", async () => {
		let carrier: Record<string, string> | null = null;
		await inSpan("patients.create", { kind: SpanKind.SERVER }, async () => void (carrier = traceCarrier()));
		let sent: OutgoingMessage[] = [];
		await publishOutbox([outboxRow(carrier), outboxRow(null)], async messages => void (sent = messages));
		const create = spanNamed("patients.create");
		const send = spanNamed("send patient");
		expect(send.kind).toBe(SpanKind.PRODUCER);
		expect(send.parentSpanContext?.spanId).toBe(create.spanContext().spanId);
		expect(sent[0].headers!.traceparent).toBe(`00-${create.spanContext().traceId}-${send.spanContext().spanId}-01`);
		expect(sent[1].headers!.traceparent).toBeUndefined();
		expect(spans()).toHaveLength(2);
	});

	test("a failed publish marks the producer spans failed", async () => {
		let carrier: Record<string, string> | null = null;
		await inSpan("patients.update", { kind: SpanKind.SERVER }, async () => void (carrier = traceCarrier()));
		await expect(publishOutbox([outboxRow(carrier)], () => Promise.reject(new Error("broker away")))).rejects.toThrow("broker away");
		expect(spanNamed("send patient").status.code).toBe(SpanStatusCode.ERROR);
	});

	describe("Moleculer calls between two nodes", () => {
		const namespace = `unit-${crypto.randomBytes(4).toString("hex")}`;
		let caller: ServiceBroker;
		let callee: ServiceBroker;
		let seenMeta: Record<string, unknown> | undefined;

		beforeAll(async () => {
			config.tracingExporter = "console";
			const node = (nodeID: string) =>
				new ServiceBroker({ namespace, nodeID, transporter: "Fake", logger: false, middlewares: [TracingMiddleware("medsync-test")] });
			caller = node("caller");
			callee = node("callee");
			callee.createService({
				name: "patients",
				actions: {
					get: {
						handler(ctx) {
							seenMeta = { ...ctx.meta };
							return { traceparent: traceCarrier()?.traceparent };
						}
					}
				}
			});
			await Promise.all([caller.start(), callee.start()]);
			await caller.waitForServices("patients");
		});

		afterAll(async () => {
			await Promise.all([caller?.stop(), callee?.stop()]);
			config.tracingExporter = undefined;
		});

		test("the caller's client span is the parent of the callee's server span, carried in headers, not meta", async () => {
			const meta = { user: { id: "u1" } };
			const answer = await inSpan("http", { kind: SpanKind.SERVER }, () => caller.call<{ traceparent: string }, object>("patients.get", {}, { meta }));
			const http = spanNamed("http");
			const client = spans().find(s => s.name === "patients.get" && s.kind === SpanKind.CLIENT)!;
			const server = spans().find(s => s.name === "patients.get" && s.kind === SpanKind.SERVER)!;
			expect(client.parentSpanContext?.spanId).toBe(http.spanContext().spanId);
			expect(server.parentSpanContext?.spanId).toBe(client.spanContext().spanId);
			expect(new Set([http, client, server].map(s => s.spanContext().traceId)).size).toBe(1);
			// The handler ran inside its own span.
			expect(answer.traceparent).toBe(`00-${server.spanContext().traceId}-${server.spanContext().spanId}-01`);
			expect(server.attributes).toMatchObject({ "rpc.system": "moleculer", "rpc.service": "patients", "rpc.method": "get" });
			expect(seenMeta).toEqual(meta);
		});
	});
});

describe("the OTLP exporter", () => {
	test("sends protobuf (the default) to OTEL_EXPORTER_OTLP_ENDPOINT's /v1/traces, with the span's trace id", async () => {
		const receiver = await startOtlpReceiver();
		const saved = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
		process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.endpoint;
		try {
			startTracing(() => ({ serviceName: "medsync-test", instanceId: "unit", version: "0", exporter: spanExporter("otlp", "http/protobuf"), batchDelayMs: 0, warn: () => {} }));
			const traceId = await inSpan("exported", { kind: SpanKind.INTERNAL }, async span => span!.spanContext().traceId);
			// Stopping waits for the export in flight.
			await stopTracing();
			expect(receiver.requests).toHaveLength(1);
			expect(receiver.requests[0].contentType).toBe("application/x-protobuf");
			// A trace id is 16 raw bytes in the protobuf encoding.
			expect(receiver.requests[0].body.includes(Buffer.from(traceId, "hex"))).toBe(true);
		} finally {
			if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
			else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = saved;
			await receiver.close();
		}
	});
});
