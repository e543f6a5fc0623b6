import { Errors } from "moleculer";
import { ForbiddenError } from "../../lib/infra/errors";
import type { FhirContext } from "./resource";

/**
 * Calls a domain service's action for a FHIR interaction, under that action's
 * own `roles`: the gateway checks only the FHIR action, and one interaction may
 * call several (a PUT of an Appointment cancels, or marks an arrival), each
 * allowed to other roles. So the caller may do through FHIR exactly what it
 * may do through REST. An action that does not answer is the broker's error.
 */
export async function callDomain<T>(ctx: FhirContext, action: string, params: object): Promise<T> {
	const endpoint = ctx.broker.findNextActionEndpoint(action) as { action?: { roles?: readonly string[] } } | Error;
	// No node serves it now: nothing to check the roles against, so no call (503), never an unchecked one.
	if (endpoint instanceof Error) throw new Errors.ServiceNotAvailableError({ action });
	const role = ctx.meta.user?.role;
	if (!role || !endpoint.action?.roles?.includes(role)) throw new ForbiddenError(`The ${role ?? "anonymous"} role may not ${action.replace(".", " ")}`);
	return ctx.call<T, object>(action, params);
}

/** A read that finds nothing is no match, not an error: for searches by id. */
export function noneIfNotFound<T>(err: { code?: number }): T[] {
	if (err.code === 404) return [];
	throw err;
}
