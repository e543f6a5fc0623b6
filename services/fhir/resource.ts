import type { Context } from "moleculer";
import type { Resource } from "@medplum/fhirtypes";
import type { AuditedResource, Role } from "../../lib/domain/roles";
import type { RequestMeta } from "../../lib/infra/http";
import type { SearchPage } from "./bundle";
import type { Handling, SearchDefinition, SearchRequest } from "./search";

/**
 * What a resource module declares: its type, and for each interaction it
 * supports, who may use it and the work. The service makes one action of each
 * interaction, and the CapabilityStatement lists exactly these.
 */

/** What the gateway's /fhir route adds to a request's meta (services/api.service.ts). */
export interface FhirRequestInfo {
	/** The server's base, `http://host/fhir`: fullUrls, links and Location start with it. */
	base: string;
	/** From `Prefer: handling=…`: what a search does with a parameter it does not know. */
	handling: Handling;
	/** A conditional create's search (If-None-Exist). */
	ifNoneExist?: string;
}

export interface FhirMeta extends RequestMeta {
	fhir?: FhirRequestInfo;
	/** The answer's Content-Type, for moleculer-web. */
	$responseType?: string;
}

/** The route passes the request unmerged: the body as sent, the query, the path's id. */
export interface FhirParams {
	body?: unknown;
	query?: Record<string, unknown>;
	params?: { id?: string; vid?: string };
	/** The patient the request names, set by the gateway for its audit record. */
	patientId?: string;
}

export type FhirContext = Context<FhirParams, FhirMeta>;

interface Allowed {
	roles: readonly Role[];
}

export interface ResourceDefinition<R extends Resource = Resource> {
	type: R["resourceType"];
	/** The audit trail's resource when an interaction touches patient data. */
	audit?: AuditedResource;
	/** What the CapabilityStatement says about this resource's mapping. */
	documentation: string;
	/**
	 * The domain service keeps a version of each record: `meta.versionId` and the
	 * ETag carry it, and a change honours If-Match (`W/"n"`). Without it, an
	 * If-Match is refused rather than ignored.
	 */
	versioning?: "versioned-update";
	/** The domain services' field names → FHIRPaths, so their validation errors name the resource's elements. */
	paths?: Record<string, string>;
	read?: Allowed & { run(ctx: FhirContext, id: string): Promise<R> };
	/** A version of the resource, by its versionId (needs `versioning`). */
	vread?: Allowed & { run(ctx: FhirContext, id: string, versionId: number): Promise<R> };
	/** The resource's versions, newest first, a page at a time. */
	history?: Allowed & { run(ctx: FhirContext, id: string, page: { page: number; count: number }): Promise<{ entries: HistoryEntry<R>[]; total: number }> };
	search?: Allowed & SearchDefinition & { run(ctx: FhirContext, request: SearchRequest): Promise<SearchPage<R>> };
	create?: Allowed & { conditional?: boolean; run(ctx: FhirContext, resource: R): Promise<R> };
	update?: Allowed & { run(ctx: FhirContext, id: string, resource: R): Promise<R> };
	patch?: Allowed & { run(ctx: FhirContext, id: string, operations: unknown[]): Promise<R> };
	delete?: Allowed & { run(ctx: FhirContext, id: string): Promise<void> };
}

/** One version in a history: the resource as it was (none for a deletion), and the change that made it. */
export interface HistoryEntry<R extends Resource = Resource> {
	versionId: number;
	method: "POST" | "PUT" | "DELETE";
	at: string;
	resource?: R;
}

export type InteractionName = "read" | "vread" | "history" | "search" | "create" | "update" | "patch" | "delete";

/** FHIR's name of each interaction, as the CapabilityStatement lists it. */
export const INTERACTION_CODES = {
	read: "read",
	vread: "vread",
	history: "history-instance",
	search: "search-type",
	create: "create",
	update: "update",
	patch: "patch",
	delete: "delete"
} as const;
