import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { MixinSchema } from "../types/mixin";

export type HealthCheck = () => Promise<void>;

interface HealthVars {
	healthChecks: Map<string, HealthCheck>;
}

const CHECK_TIMEOUT_MS = 1500;

/** Adds a named check to a service's `health` action; a check passes by resolving, fails by throwing. Call from `created`. */
export function registerHealthCheck(service: Service, name: string, check: HealthCheck): void {
	const s = service as Service & Partial<HealthVars>;
	s.healthChecks ??= new Map();
	s.healthChecks.set(name, check);
}

function withTimeout(check: HealthCheck): Promise<void> {
	return Promise.race([check(), new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS))]);
}

/**
 * A `health` action that runs the checks the service's mixins registered (its
 * database, Kafka, a gRPC peer) and reports each as "up" or the reason it is down.
 * The gateway's /ready asks every service for it.
 */
export function HealthMixin(): MixinSchema {
	const schema: ServiceSchema<ServiceSettingSchema, Record<string, never>, HealthVars> = {
		name: "health",
		actions: {
			health: {
				visibility: "public",
				async handler(this: Service & HealthVars) {
					const checks: Record<string, string> = {};
					await Promise.all(
						[...(this.healthChecks ?? new Map<string, HealthCheck>())].map(async ([name, check]) => {
							try {
								await withTimeout(check);
								checks[name] = "up";
							} catch (err) {
								checks[name] = `down: ${(err as Error).message}`;
							}
						})
					);
					return { service: this.name, nodeID: this.broker.nodeID, up: Object.values(checks).every(c => c === "up"), checks };
				}
			}
		}
	};
	return schema;
}
