import fs from "node:fs";
import path from "node:path";
import { SpanKind } from "@opentelemetry/api";
import type { ActionSchema, Context, Middleware, ServiceBroker } from "moleculer";
import { config } from "./config";
import { PROJECT_ROOT } from "./paths";
import { inSpan, injectInto, spanExporter, startTracing, stopTracing } from "./tracing";

type ActionHandler = (ctx: Context) => Promise<unknown>;

/** What every action span says: the call (rpc.* as OpenTelemetry's RPC conventions have it) and the request's id, to find its log lines. */
function actionAttributes(action: ActionSchema, ctx: Context) {
	return {
		"rpc.system": "moleculer",
		"rpc.service": action.service?.name ?? "",
		"rpc.method": (action as { rawName?: string }).rawName ?? action.name ?? "",
		"medsync.request_id": ctx.requestID ?? ""
	};
}

/**
 * A span per Moleculer action call, on every node, when TRACING_EXPORTER is
 * set; without it the handlers are returned unwrapped, so tracing off costs
 * nothing per call.
 *
 * A call to another node is a client span on the caller, whose trace context
 * travels in the call's Moleculer headers (not its meta, which flows back to
 * the caller and on to its later calls) and becomes the remote parent of the
 * callee's server span. A local call's span is the child of whatever is active
 * (OpenTelemetry's context follows the async work of the call).
 */
export function TracingMiddleware(serviceName: string): Middleware {
	const on = config.tracingExporter !== undefined;
	const localAction = (next: ActionHandler, action: ActionSchema): ActionHandler => {
		if (!on) return next;
		return function (this: ServiceBroker, ctx: Context) {
			const remote = ctx.nodeID !== null && ctx.nodeID !== ctx.broker.nodeID;
			const start = remote ? { kind: SpanKind.SERVER, carrier: () => ctx.headers as Record<string, unknown> } : { kind: SpanKind.INTERNAL };
			return inSpan(action.name!, { ...start, attributes: actionAttributes(action, ctx) }, () => next(ctx));
		};
	};
	const remoteAction = (next: ActionHandler, action: ActionSchema): ActionHandler => {
		if (!on) return next;
		return (ctx: Context) =>
			inSpan(action.name!, { kind: SpanKind.CLIENT, attributes: actionAttributes(action, ctx) }, (_span, spanContext) => {
				// A copy: the caller may have passed its own headers object.
				const headers: Record<string, unknown> = { ...ctx.headers };
				injectInto(spanContext, headers, (carrier, key, value) => (carrier[key] = value));
				ctx.headers = headers;
				return next(ctx);
			});
	};
	return {
		name: "Tracing",
		created(broker: ServiceBroker) {
			if (!on) return;
			const logger = broker.getLogger("tracing");
			startTracing(() => ({
				serviceName,
				instanceId: broker.nodeID,
				version: packageVersion(),
				exporter: spanExporter(config.tracingExporter!, config.otlpProtocol),
				batchDelayMs: config.tracingExporter === "console" ? 0 : config.tracingBatchDelayMs,
				warn: message => logger.warn(`Tracing: ${message}`)
			}));
		},
		async stopped() {
			if (on) await stopTracing();
		},
		localAction,
		remoteAction
	} as unknown as Middleware;
}

function packageVersion(): string {
	return (JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8")) as { version: string }).version;
}
