import fs from "node:fs";
import path from "node:path";
import type { ActionSchema, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import type { Resource } from "@medplum/fhirtypes";
import { config } from "../lib/infra/config";
import { created, entityTag, noContent } from "../lib/infra/http";
import { NotFoundError } from "../lib/infra/errors";
import { PROJECT_ROOT } from "../lib/infra/paths";
import { historyBundle, searchBundle } from "./fhir/bundle";
import { capabilityStatement } from "./fhir/capability";
import { FHIR_JSON } from "./fhir/conventions";
import { resourceOf } from "./fhir/input";
import { badRequest, withFhirPaths } from "./fhir/outcome";
import type { FhirContext, FhirRequestInfo, InteractionName, ResourceDefinition } from "./fhir/resource";
import { parseSearch } from "./fhir/search";
import { appointmentResource } from "./fhir/appointment";
import { auditEventResource } from "./fhir/audit-event";
import { patientResource } from "./fhir/patient";
import { practitionerResource } from "./fhir/practitioner";
import { practitionerRoleResource } from "./fhir/practitioner-role";
import { scheduleResource } from "./fhir/schedule";
import { slotResource } from "./fhir/slot";

/** Every resource MedSync serves, in the CapabilityStatement's order. */
export const FHIR_RESOURCES = [
	patientResource,
	practitionerResource,
	practitionerRoleResource,
	scheduleResource,
	slotResource,
	appointmentResource,
	auditEventResource
] as ResourceDefinition[];

const VERSION = (JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8")) as { version: string }).version;

interface FhirVars {
	startedAt: string;
}

type FhirThis = Service<ServiceSettingSchema> & FhirVars;

function fhirOf(ctx: FhirContext): FhirRequestInfo {
	return ctx.meta.fhir ?? { base: `http://127.0.0.1:${config.port}/fhir`, handling: "lenient" };
}

/** The path's id: FHIR's id syntax, else no resource has it. */
function idOf(ctx: FhirContext): string {
	const id = ctx.params.params?.id ?? "";
	if (!/^[A-Za-z0-9\-.]{1,64}$/.test(id)) throw badRequest("The id in the path is not a FHIR id", "id");
	return id;
}

/**
 * The answer's status and headers, set last: the domain actions this one
 * called set theirs (a REST Location, their ETag) on the same meta.
 */
function answer<R extends Resource>(ctx: FhirContext, resource: R, status = 200): R {
	ctx.meta.$statusCode = status;
	ctx.meta.$responseType = FHIR_JSON;
	ctx.meta.$responseHeaders = resource.meta?.versionId ? { ETag: entityTag(Number(resource.meta.versionId)) } : {};
	if (resource.meta?.lastUpdated) ctx.meta.$responseHeaders["Last-Modified"] = new Date(resource.meta.lastUpdated).toUTCString();
	delete ctx.meta.$location;
	return resource;
}

/** A created or changed resource's answer: where it lives, as Location (no `_history/<vid>`: MedSync has no vread to resolve it). */
function located<R extends Resource>(ctx: FhirContext, resource: R, status: 200 | 201): R {
	answer(ctx, resource, status);
	const location = `${fhirOf(ctx).base}/${resource.resourceType}/${resource.id}`;
	if (status === 201) return created(ctx, location, resource);
	ctx.meta.$responseHeaders!.Location = location;
	return resource;
}

/** A change guarded by If-Match, on a resource MedSync keeps no versions of: refused, not applied unguarded. */
function refuseUnversionedIfMatch(ctx: FhirContext, definition: ResourceDefinition): void {
	if (ctx.meta.ifMatch && !definition.versioning) throw badRequest(`MedSync keeps no versions of ${definition.type} yet: a change of one cannot be guarded by If-Match`, "If-Match");
}

/** Runs an interaction's work; the domain's validation errors come out naming the resource's elements. */
async function mapped<T>(definition: ResourceDefinition, work: () => Promise<T>): Promise<T> {
	try {
		return await work();
	} catch (err) {
		throw withFhirPaths(err, definition.type, definition.paths ?? {});
	}
}

/** A conditional create's search, from If-None-Exist: strict, since ignoring a criterion would match patients it did not name. */
async function existingFor(ctx: FhirContext, definition: ResourceDefinition, criteria: string): Promise<Resource | undefined> {
	const query: Record<string, string[]> = {};
	for (const [name, value] of new URLSearchParams(criteria.replace(/^.*\?/, ""))) (query[name] ??= []).push(value);
	if (!Object.keys(query).length) throw badRequest("If-None-Exist names no search", "If-None-Exist");
	const request = parseSearch(query, definition.search!, "strict");
	request.count = 2;
	const { resources, total } = await definition.search!.run(ctx, request);
	if (total > 1) {
		const err = badRequest(`If-None-Exist matches ${total} ${definition.type} resources; it must name one at most`, "If-None-Exist");
		err.code = 412;
		err.type = "PRECONDITION_FAILED";
		throw err;
	}
	return resources[0];
}

/** The actions of one resource: one per interaction it declares, named e.g. `patientRead`, routed as FHIR's RESTful API. */
function actionsOf(definition: ResourceDefinition): Record<string, ActionSchema> {
	const { type } = definition;
	const audit = definition.audit;
	const actions: Partial<Record<InteractionName, ActionSchema>> = {};
	const { read, search, create, update, patch } = definition;
	if (read) {
		actions.read = {
			roles: read.roles,
			rest: `GET /${type}/:id`,
			handler: (ctx: FhirContext) => mapped(definition, async () => answer(ctx, await read.run(ctx, idOf(ctx))))
		};
	}
	if (definition.vread) {
		const vread = definition.vread;
		actions.vread = {
			roles: vread.roles,
			rest: `GET /${type}/:id/_history/:vid`,
			handler: (ctx: FhirContext) =>
				mapped(definition, async () => {
					const vid = ctx.params.params?.vid ?? "";
					if (!/^[1-9]\d{0,8}$/.test(vid)) throw new NotFoundError(`${type} version`, vid);
					return answer(ctx, await vread.run(ctx, idOf(ctx), Number(vid)));
				})
		};
	}
	if (definition.history) {
		const history = definition.history;
		actions.history = {
			roles: history.roles,
			rest: `GET /${type}/:id/_history`,
			handler: (ctx: FhirContext) =>
				mapped(definition, async () => {
					const id = idOf(ctx);
					const { count, page } = parseSearch(ctx.params.query ?? {}, { params: [] }, "strict");
					return answer(ctx, historyBundle(fhirOf(ctx).base, type, id, { page, count }, await history.run(ctx, id, { page, count })));
				})
		};
	}
	if (search) {
		actions.search = {
			roles: search.roles,
			rest: `GET /${type}`,
			handler: (ctx: FhirContext) =>
				mapped(definition, async () => {
					const fhir = fhirOf(ctx);
					const request = parseSearch(ctx.params.query ?? {}, search, fhir.handling);
					return answer(ctx, searchBundle(fhir.base, type, search, request, await search.run(ctx, request)));
				})
		};
	}
	if (create) {
		actions.create = {
			roles: create.roles,
			rest: `POST /${type}`,
			handler: (ctx: FhirContext) =>
				mapped(definition, async () => {
					const resource = resourceOf<Resource>(ctx.params.body, type);
					const criteria = fhirOf(ctx).ifNoneExist;
					if (criteria !== undefined) {
						if (!create.conditional || !definition.search) throw badRequest(`MedSync has no conditional create for ${type}`, "If-None-Exist");
						const existing = await existingFor(ctx, definition, criteria);
						if (existing) return located(ctx, existing, 200);
					}
					return located(ctx, await create.run(ctx, resource), 201);
				})
		};
	}
	if (update) {
		actions.update = {
			roles: update.roles,
			rest: `PUT /${type}/:id`,
			handler: (ctx: FhirContext) =>
				mapped(definition, async () => {
					refuseUnversionedIfMatch(ctx, definition);
					const id = idOf(ctx);
					const resource = resourceOf<Resource>(ctx.params.body, type);
					if (resource.id !== id) throw badRequest(`The body's id must be the path's (${id})`, `${type}.id`);
					return located(ctx, await update.run(ctx, id, resource), 200);
				})
		};
	}
	if (patch) {
		actions.patch = {
			roles: patch.roles,
			rest: `PATCH /${type}/:id`,
			handler: (ctx: FhirContext) =>
				mapped(definition, async () => {
					refuseUnversionedIfMatch(ctx, definition);
					const operations = ctx.params.body;
					if (!Array.isArray(operations)) throw badRequest("A patch is a JSON Patch: an array of operations, sent as application/json-patch+json");
					return located(ctx, await patch.run(ctx, idOf(ctx), operations), 200);
				})
		};
	}
	if (definition.delete) {
		const remove = definition.delete;
		actions.delete = {
			roles: remove.roles,
			rest: `DELETE /${type}/:id`,
			handler: (ctx: FhirContext) =>
				mapped(definition, async () => {
					refuseUnversionedIfMatch(ctx, definition);
					await remove.run(ctx, idOf(ctx));
					ctx.meta.$responseHeaders = {};
					delete ctx.meta.$location;
					noContent(ctx);
				})
		};
	}
	const prefix = type[0].toLowerCase() + type.slice(1);
	return Object.fromEntries(
		Object.entries(actions).map(([interaction, action]) => [`${prefix}${interaction[0].toUpperCase()}${interaction.slice(1)}`, { ...action, ...(audit && { audit }) }])
	);
}

/**
 * FHIR R4 at /fhir, over the domain services: each interaction calls their
 * actions through the broker, so the records stay theirs; the gateway applies
 * the same tokens, roles and audit trail as to the REST API.
 */
const FhirService: ServiceSchema<ServiceSettingSchema, Record<string, never>, FhirVars> = {
	name: "fhir",

	settings: {
		// Routed by the gateway's /fhir route: paths are FHIR's, e.g. /fhir/Patient/:id.
		rest: "/"
	},

	actions: {
		metadata: {
			public: true,
			rest: "GET /metadata",
			handler(this: FhirThis, ctx: FhirContext) {
				return answer(ctx, capabilityStatement(FHIR_RESOURCES, { version: VERSION, date: this.startedAt, base: fhirOf(ctx).base }));
			}
		},
		...Object.assign({}, ...FHIR_RESOURCES.map(actionsOf))
	},

	created(this: FhirThis) {
		this.startedAt = new Date().toISOString();
	}
};

export default FhirService;
