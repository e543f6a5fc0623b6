import {
	Server,
	type ServerUnaryCall,
	type ServiceDefinition,
	type UntypedServiceImplementation,
	type handleUnaryCall,
	type sendUnaryData,
	status
} from "@grpc/grpc-js";
import { type Span, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { type GrpcServerSecurity, bearerCheck, serverCredentials } from "../lib/infra/grpc-security";
import { toGrpcError } from "../lib/infra/grpc-status";
import { errorFields, throttledLog } from "../lib/infra/log-fields";
import { activeTracer, grpcSpanAttributes, inSpan, metadataCarrier } from "../lib/infra/tracing";
import type { MixinSchema } from "../types/mixin";

/** The RPCs of a generated server interface, without the index signature it inherits from grpc-js's UntypedServiceImplementation. */
type Rpcs<TServer> = { [K in keyof TServer as string extends K ? never : K]: TServer[K] };

/**
 * One handler per RPC of `TServer`, the generated server interface (ts-proto's
 * `<Service>Server`, e.g. `BillingServiceServer`): its request in, a promise of
 * its response (or a thrown error) out. A missing, misspelt or wrongly typed
 * handler does not compile; nor does one for a streaming RPC, which this mixin
 * cannot serve.
 */
export type UnaryHandlers<TServer, TService> = {
	[K in keyof Rpcs<TServer>]: Rpcs<TServer>[K] extends handleUnaryCall<infer Req, infer Res> ? (this: TService, request: Req) => Promise<Res> : never;
};

/** `TServer` is the generated server interface, given explicitly: nothing else says which request and response types each RPC has. */
export interface GrpcServerOptions<TServer extends UntypedServiceImplementation, TService> {
	/** Generated service definition of the same service, e.g. `BillingServiceService` from proto/generated. */
	definition: ServiceDefinition<NoInfer<TServer>>;
	/** Where to listen, read at start, so configuration and tests decide. */
	host: () => string;
	port: () => number;
	/** The settings that set host and port, named when the server cannot listen there. */
	settings: string;
	/** TLS and the token every call must carry (lib/infra/grpc-security.ts), read at start. */
	security: () => Promise<GrpcServerSecurity>;
	handlers: UnaryHandlers<NoInfer<TServer>, TService>;
	/** How long stop() lets calls in flight finish before cutting them off. */
	drainMs?: number;
}

interface GrpcServerVars {
	grpcServer?: Server;
	/** The port actually bound (differs from the configured one when that is 0). */
	grpcPort?: number;
}

/**
 * Serves a gRPC service from a Moleculer service: the server starts and stops
 * with it, and stopping drains calls in flight. Over TLS, every call must carry
 * the service token, else it is answered UNAUTHENTICATED before any handler
 * runs. Errors thrown by handlers become proper gRPC statuses (lib/infra/grpc-status.ts).
 */
export function GrpcServerMixin<TServer extends UntypedServiceImplementation = never, TService extends Service = Service>(
	options: GrpcServerOptions<TServer, TService>
): MixinSchema {
	const schema: ServiceSchema<ServiceSettingSchema, Record<string, never>, GrpcServerVars> = {
		name: "grpc-server",

		async started(this: Service & GrpcServerVars) {
			const security = await options.security();
			const authorized = security.plaintext ? () => true : bearerCheck(security.token);
			// Anyone who reaches the port can knock: a line per 10 s, with a count, not one per knock.
			const warnRefused = throttledLog(10_000);
			const server = new Server();
			const implementation = Object.fromEntries(
				Object.entries<(this: TService, request: unknown) => Promise<unknown>>(options.handlers).map(([method, handler]) => [
					method,
					(call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
						if (!authorized(call.metadata)) {
							warnRefused(unlogged =>
								this.logger.warn(`gRPC ${method} refused: no valid service credential (peer ${call.getPeer()}; ${unlogged} more refused since the last such line)`)
							);
							callback({ code: status.UNAUTHENTICATED, details: "A valid service credential is required" });
							return;
						}
						const respond = async (span?: Span) => {
							try {
								const response = await handler.call(this as unknown as TService, call.request);
								span?.setAttribute("rpc.grpc.status_code", status.OK);
								callback(null, response);
							} catch (err) {
								const grpcError = toGrpcError(err);
								span?.setAttribute("rpc.grpc.status_code", grpcError.code ?? status.UNKNOWN);
								// A client's mistake (a bad argument, a missing record) is no failure of the server.
								if (grpcError.code === status.INTERNAL || grpcError.code === status.UNAVAILABLE) span?.setStatus({ code: SpanStatusCode.ERROR });
								if (grpcError.code === status.INTERNAL) this.logger.error(errorFields(err), `gRPC ${method} failed`);
								callback(grpcError);
							}
						};
						if (!activeTracer()) {
							void respond();
							return;
						}
						// A server span continuing the caller's trace from the call's metadata.
						const path = call.getPath();
						const start = { kind: SpanKind.SERVER, carrier: () => metadataCarrier(call.metadata), attributes: grpcSpanAttributes(path) };
						void inSpan(path.replace(/^\//, ""), start, respond);
					}
				])
			);
			server.addService(options.definition, implementation);
			const host = options.host();
			// An IPv6 address is bracketed in a gRPC address, as in a URL.
			const bindHost = host.includes(":") ? `[${host}]` : host;
			this.grpcPort = await new Promise<number>((resolve, reject) =>
				server.bindAsync(`${bindHost}:${options.port()}`, serverCredentials(security), (err, port) =>
					// grpc-js says only "No address added out of total 1 resolved": say where, and what to change.
					err ? reject(new Error(`The gRPC server cannot listen on ${bindHost}:${options.port()} (in use, or not this machine's): set ${options.settings}`, { cause: err })) : resolve(port)
				)
			);
			this.grpcServer = server;
			if (security.plaintext) {
				this.logger.warn(
					`gRPC server on ${bindHost}:${this.grpcPort} takes plaintext calls with no credential (${security.optIn}): anyone who reaches the port can call every RPC`
				);
			} else {
				this.logger.info(`gRPC server listening on ${bindHost}:${this.grpcPort} (TLS${security.tls.clientCa ? ", client certificates required" : ""}, service token required)`);
			}
		},

		async stopped(this: Service & GrpcServerVars) {
			const server = this.grpcServer;
			if (!server) return;
			this.grpcServer = undefined;
			await new Promise<void>(resolve => {
				const cutoff = setTimeout(() => {
					server.forceShutdown();
					resolve();
				}, options.drainMs ?? 5000);
				server.tryShutdown(() => {
					clearTimeout(cutoff);
					resolve();
				});
			});
		}
	};
	return schema;
}
