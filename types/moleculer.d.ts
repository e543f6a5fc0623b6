import type { AuditedResource, Role } from "../lib/domain/roles";
import type { ActionResponses } from "../lib/infra/openapi";
import type { KafkaSchema } from "../mixins/kafka.mixin";

/** What MedSync adds to Moleculer's schemas: read by the gateway (roles, audit, responses) and the Kafka mixin. */
declare module "moleculer" {
	interface ActionSchema {
		/** Roles that may call this action through the gateway. An action with neither `roles` nor `public` is refused. */
		roles?: readonly Role[];
		/** Reachable through the gateway without a token (signup, login, refresh, JWKS). */
		public?: boolean;
		/** Every call through the gateway, allowed or denied, is written to the audit trail. */
		audit?: AuditedResource;
		/**
		 * What a routed action answers, for /openapi.json: each success with its body's schema (whose `Static`
		 * type the handler returns) and headers, and each error of its own (409, 412, 429…). The gateway's
		 * errors (400, 401, 403, 404, 413, 415, 422, 500, 503) are added where they apply.
		 */
		responses?: ActionResponses;
	}

	interface ServiceSchema {
		/** Kafka topics this service consumes and produces (mixins/kafka.mixin.ts). */
		kafka?: KafkaSchema;
	}
}
