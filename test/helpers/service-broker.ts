import { type Context, Errors, type Service, ServiceBroker, type ServiceSchema } from "moleculer";
import brokerConfig from "../../moleculer.config";
import type { Database } from "../../lib/infra/database";
import type { DbVars } from "../../mixins/db.mixin";
import type { StubDatabase } from "./stub-database";

/**
 * Broker-level tests, in the Moleculer template's style: a ServiceBroker with
 * the service under test, its neighbours as tiny stub services, and its
 * database a StubDatabase, so an action's params, rules and answers run as in
 * production (MedSync's validator included) with no PostgreSQL, NATS or Kafka.
 * They never replace the integration suites, which run the real parts.
 */

/** A broker with MedSync's validator, and nothing else: no transporter, no logger. */
export function unitBroker(): ServiceBroker {
	return new ServiceBroker({ logger: false, validator: brokerConfig.validator });
}

/** Creates the service from `schema` on `broker`, `db` as its database (DbMixin uses one set before start as it is). */
export function createWithDatabase(broker: ServiceBroker, schema: ServiceSchema, db: StubDatabase): Service {
	const service = broker.createService(schema);
	(service as unknown as DbVars).db = db as unknown as Database;
	return service;
}

/** How the gateway sees an action: who may call it (`roles`, or `public`) and what its calls are audited as. */
export function declared(broker: ServiceBroker, action: string): { roles?: readonly string[]; public?: boolean; audit?: string } {
	const [serviceName, name] = action.split(".");
	const definition = broker.getLocalService(serviceName)?.schema.actions?.[name];
	if (!definition || typeof definition !== "object") throw new Error(`No action ${action}`);
	return { roles: definition.roles, public: definition.public, audit: definition.audit };
}

/** Expects each action of `service` to allow exactly the roles given for it, and its calls to be audited as `audit` (undefined: not audited). */
export function expectDeclared(broker: ServiceBroker, service: string, audit: string | undefined, roles: Record<string, readonly string[]>): void {
	for (const [action, allowed] of Object.entries(roles)) {
		expect([action, declared(broker, `${service}.${action}`)]).toEqual([action, { roles: allowed, audit }]);
	}
}

/** A service recording the events that match `pattern` (e.g. "patient.*"): its schema, to create, and what it heard, in order. */
export function eventRecorder(pattern: string): { schema: ServiceSchema; events: { name: string; payload: any }[] } {
	const events: { name: string; payload: any }[] = [];
	const schema: ServiceSchema = {
		name: `recorder-${pattern.replace(/[^a-z0-9]+/gi, "-")}`,
		events: {
			[pattern](ctx: Context) {
				events.push({ name: ctx.eventName!, payload: ctx.params });
			}
		}
	};
	return { schema, events };
}

/** The fields its params refused the call for, or [] if the call passed them. Any other error is thrown. */
export async function refusedFields(call: Promise<unknown>): Promise<string[]> {
	try {
		await call;
		return [];
	} catch (err) {
		if (!(err instanceof Errors.ValidationError)) throw err;
		return (err.data as { field: string; type: string; actual?: string }[]).map(e => (e.type === "objectStrict" ? `${e.actual}` : e.field));
	}
}
