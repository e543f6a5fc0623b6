import { Server, type ServerUnaryCall, type ServiceDefinition, type sendUnaryData, status } from "@grpc/grpc-js";
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { type GrpcServerSecurity, bearerCheck, serverCredentials } from "../lib/grpc-security";
import { toGrpcError } from "../lib/grpc-status";
import { errorFields, throttledLog } from "../lib/log-fields";
import type { MixinSchema } from "../types/mixin";

/** A unary RPC implemented by the Moleculer service: the request in, the response (or a thrown error) out. */
export type UnaryHandler<TService> = (this: TService, request: any) => Promise<unknown>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface GrpcServerOptions<TService> {
	/** Generated service definition, e.g. `BillingServiceService` from proto/generated. */
	definition: ServiceDefinition;
	/** Where to listen, read at start, so configuration and tests decide. */
	host: () => string;
	port: () => number;
	/** TLS and the token every call must carry (lib/grpc-security.ts), read at start. */
	security: () => Promise<GrpcServerSecurity>;
	handlers: Record<string, UnaryHandler<TService>>;
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
 * runs. Errors thrown by handlers become proper gRPC statuses (lib/grpc-status.ts).
 */
export function GrpcServerMixin<TService extends Service>(options: GrpcServerOptions<TService>): MixinSchema {
	const schema: ServiceSchema<ServiceSettingSchema, Record<string, never>, GrpcServerVars> = {
		name: "grpc-server",

		async started(this: Service & GrpcServerVars) {
			const security = await options.security();
			const authorized = security.plaintext ? () => true : bearerCheck(security.token);
			// Anyone who reaches the port can knock: a line per 10 s, with a count, not one per knock.
			const warnRefused = throttledLog(10_000);
			const server = new Server();
			const implementation = Object.fromEntries(
				Object.entries(options.handlers).map(([method, handler]) => [
					method,
					(call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
						if (!authorized(call.metadata)) {
							warnRefused(unlogged =>
								this.logger.warn(`gRPC ${method} refused: no valid service credential (peer ${call.getPeer()}; ${unlogged} more refused since the last such line)`)
							);
							callback({ code: status.UNAUTHENTICATED, details: "A valid service credential is required" });
							return;
						}
						handler.call(this as unknown as TService, call.request).then(
							response => callback(null, response),
							err => {
								const grpcError = toGrpcError(err);
								if (grpcError.code === status.INTERNAL) this.logger.error(errorFields(err), `gRPC ${method} failed`);
								callback(grpcError);
							}
						);
					}
				])
			);
			server.addService(options.definition, implementation);
			const host = options.host();
			// An IPv6 address is bracketed in a gRPC address, as in a URL.
			const bindHost = host.includes(":") ? `[${host}]` : host;
			this.grpcPort = await new Promise<number>((resolve, reject) =>
				server.bindAsync(`${bindHost}:${options.port()}`, serverCredentials(security), (err, port) => (err ? reject(err) : resolve(port)))
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
