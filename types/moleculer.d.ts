import type { AuditedResource, Role } from "../lib/domain/roles";
import type { KafkaSchema } from "../mixins/kafka.mixin";

/** What MedSync adds to Moleculer's schemas: read by the gateway (roles, audit) and the Kafka mixin. */
declare module "moleculer" {
	interface ActionSchema {
		/** Roles that may call this action through the gateway. An action with neither `roles` nor `public` is refused. */
		roles?: readonly Role[];
		/** Reachable through the gateway without a token (signup, login, refresh, JWKS). */
		public?: boolean;
		/** Every call through the gateway, allowed or denied, is written to the audit trail. */
		audit?: AuditedResource;
	}

	interface ServiceSchema {
		/** Kafka topics this service consumes and produces (mixins/kafka.mixin.ts). */
		kafka?: KafkaSchema;
	}
}
