import http from "node:http";
import type { AddressInfo } from "node:net";

/** A span as an OTLP/JSON export carries it, with the `service.name` of the process that sent it. */
export interface ReceivedSpan {
	service: string;
	traceId: string;
	spanId: string;
	parentSpanId?: string;
	name: string;
	/** OTLP's numbering: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
	kind: number;
	attributes: Record<string, unknown>;
}

export const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

interface OtlpValue {
	stringValue?: string;
	intValue?: string | number;
	boolValue?: boolean;
	doubleValue?: number;
}

interface OtlpAttribute {
	key: string;
	value: OtlpValue;
}

interface OtlpExport {
	resourceSpans?: {
		resource?: { attributes?: OtlpAttribute[] };
		scopeSpans?: { spans?: (Omit<ReceivedSpan, "service" | "attributes"> & { attributes?: OtlpAttribute[] })[] }[];
	}[];
}

function attributesOf(list: OtlpAttribute[] = []): Record<string, unknown> {
	return Object.fromEntries(list.map(({ key, value }) => [key, value.stringValue ?? (value.intValue === undefined ? undefined : Number(value.intValue)) ?? value.boolValue ?? value.doubleValue]));
}

export interface OtlpReceiver {
	/** What OTEL_EXPORTER_OTLP_ENDPOINT is set to (the exporter adds /v1/traces). */
	endpoint: string;
	spans: ReceivedSpan[];
	/** Every request's body and content type, as received (for the protobuf encoding, which this receiver does not decode). */
	requests: { contentType: string; body: Buffer }[];
	close(): Promise<void>;
}

/**
 * A tiny OpenTelemetry collector: an HTTP server taking OTLP exports on
 * POST /v1/traces. It decodes the JSON encoding (OTEL_EXPORTER_OTLP_PROTOCOL=http/json)
 * into `spans`, and keeps every request's raw body.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
	const spans: ReceivedSpan[] = [];
	const requests: OtlpReceiver["requests"] = [];
	const server = http.createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on("data", chunk => chunks.push(chunk));
		req.on("end", () => {
			if (req.method !== "POST" || req.url !== "/v1/traces") {
				res.writeHead(404).end();
				return;
			}
			const body = Buffer.concat(chunks);
			const contentType = req.headers["content-type"] ?? "";
			requests.push({ contentType, body });
			if (contentType.startsWith("application/json")) {
				for (const resourceSpans of (JSON.parse(body.toString()) as OtlpExport).resourceSpans ?? []) {
					const service = String(attributesOf(resourceSpans.resource?.attributes)["service.name"]);
					for (const scope of resourceSpans.scopeSpans ?? []) {
						for (const span of scope.spans ?? []) spans.push({ ...span, service, attributes: attributesOf(span.attributes) });
					}
				}
			}
			res.writeHead(200, { "content-type": contentType || "application/json" }).end(contentType.startsWith("application/json") ? "{}" : "");
		});
	});
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	return {
		endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
		spans,
		requests,
		close: () => new Promise<void>(resolve => server.close(() => resolve()))
	};
}
