import { type CallOptions, type ChannelCredentials, type Client, type ClientUnaryCall, Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { type Span, SpanKind } from "@opentelemetry/api";
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { type GrpcClientSecurity, channelCredentials } from "../lib/infra/grpc-security";
import { activeTracer, grpcSpanAttributes, inSpan, injectInto } from "../lib/infra/tracing";
import { registerHealthCheck } from "./health.mixin";
import type { MixinSchema } from "../types/mixin";

type ClientConstructor<C extends Client> = new (address: string, creds: ChannelCredentials, options?: object) => C;

/** A generated client method, e.g. `client.createBillingAccount`. */
type UnaryMethod<Req, Res> = (
	request: Req,
	metadata: Metadata,
	options: Partial<CallOptions>,
	callback: (error: ServiceError | null, response: Res) => void
) => ClientUnaryCall;

export interface GrpcClientOptions<C extends Client> {
	/** Key under `this.grpcClients`. */
	name: string;
	/** Generated client class, e.g. `BillingServiceClient` from proto/generated. */
	client: ClientConstructor<C>;
	/** host:port, read at start. */
	address: () => string;
	/** TLS and the service token (lib/infra/grpc-security.ts), read at start. */
	security: () => Promise<GrpcClientSecurity>;
}

export interface GrpcClientVars {
	grpcClients: Record<string, Client>;
}

const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1000;

/**
 * One unary call with a deadline covering every attempt. UNAVAILABLE (peer
 * down, connection refused) is retried with exponential backoff while time
 * remains; any other status fails at once. With tracing on, the call (all its
 * attempts) is a client span whose context goes in the call's metadata.
 */
export function unaryCall<Req, Res>(client: Client, method: UnaryMethod<Req, Res>, request: Req, deadlineMs: number): Promise<Res> {
	if (!activeTracer()) return attempts(client, method, request, deadlineMs, new Metadata());
	const path = (method as { path?: string }).path ?? "";
	return inSpan(path.replace(/^\//, ""), { kind: SpanKind.CLIENT, attributes: grpcSpanAttributes(path) }, (span, spanContext) => {
		const metadata = new Metadata();
		injectInto(spanContext, metadata, (carrier, key, value) => carrier.set(key, value));
		return attempts(client, method, request, deadlineMs, metadata, span);
	});
}

/** The attempts of one call, `span` (with tracing on) told of each retry and the final status. */
async function attempts<Req, Res>(client: Client, method: UnaryMethod<Req, Res>, request: Req, deadlineMs: number, metadata: Metadata, span?: Span): Promise<Res> {
	const deadline = Date.now() + deadlineMs;
	for (let backoff = FIRST_BACKOFF_MS; ; backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)) {
		try {
			const response = await new Promise<Res>((resolve, reject) =>
				method.call(client, request, metadata, { deadline }, (err, answer) => (err ? reject(err) : resolve(answer)))
			);
			span?.setAttribute("rpc.grpc.status_code", status.OK);
			return response;
		} catch (err) {
			const code = (err as ServiceError).code;
			const retryable = code === status.UNAVAILABLE && Date.now() + backoff < deadline;
			if (!retryable) {
				span?.setAttribute("rpc.grpc.status_code", code ?? status.UNKNOWN);
				throw err;
			}
			span?.addEvent("retry", { "rpc.grpc.status_code": code });
			await new Promise(resolve => setTimeout(resolve, backoff));
		}
	}
}

/**
 * Gives a Moleculer service a gRPC client (`this.grpcClients[name]`): one channel,
 * opened at start and closed at stop. Call it with `unaryCall`.
 */
export function GrpcClientMixin<C extends Client>(options: GrpcClientOptions<C>): MixinSchema {
	const schema: ServiceSchema<ServiceSettingSchema, Record<string, never>, GrpcClientVars> = {
		name: "grpc-client",

		created(this: Service & GrpcClientVars) {
			registerHealthCheck(this, `grpc:${options.name}`, () => {
				const client = this.grpcClients?.[options.name];
				if (!client) return Promise.reject(new Error("not started"));
				return new Promise((resolve, reject) => client.waitForReady(Date.now() + 1000, err => (err ? reject(err) : resolve())));
			});
		},

		async started(this: Service & GrpcClientVars) {
			const security = await options.security();
			if (security.plaintext) this.logger.warn(`gRPC calls to ${options.name} go in plaintext with no credential (${security.optIn})`);
			this.grpcClients ??= {};
			this.grpcClients[options.name] = new options.client(options.address(), channelCredentials(security));
		},

		stopped(this: Service & GrpcClientVars) {
			this.grpcClients?.[options.name]?.close();
			delete this.grpcClients?.[options.name];
		}
	};
	return schema;
}
