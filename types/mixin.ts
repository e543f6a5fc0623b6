import type { ServiceSchema } from "moleculer";

/**
 * What a mixin factory returns. Moleculer types a service's `mixins` as schemas
 * of an untyped `this`; a mixin is written against its own (its `…This` type,
 * which it exports for the services that use it) and widened here, once.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type MixinSchema = Partial<ServiceSchema<any, any, any, any>>;
