import type { Bundle, BundleLink, Resource } from "@medplum/fhirtypes";
import type { HistoryEntry } from "./resource";
import type { SearchDefinition, SearchRequest } from "./search";

/** A search's answer: one page of matches, its total, and links that repeat it, page by page. */
export interface SearchPage<T extends Resource = Resource> {
	resources: T[];
	total: number;
}

/** The query of a search as MedSync understood it, in the table's order: what `self` says was searched. */
function canonicalQuery(definition: SearchDefinition, request: SearchRequest, page: number): string {
	const query = new URLSearchParams();
	for (const param of definition.params) for (const value of request.values.get(param.name) ?? []) query.append(param.name, value);
	if (request.sort) query.append("_sort", `${request.sort.descending ? "-" : ""}${request.sort.name}`);
	if (request.total !== "accurate") query.append("_total", request.total);
	query.append("_count", String(request.count));
	query.append("_page", String(page));
	return query.toString();
}

/** A `searchset` Bundle: `fullUrl`s that resolve (`<base>/<type>/<id>`), `self`, and `next` and `previous` where there are such pages. */
export function searchBundle(base: string, type: string, definition: SearchDefinition, request: SearchRequest, page: SearchPage): Bundle {
	const url = (n: number) => `${base}/${type}?${canonicalQuery(definition, request, n)}`;
	const link: BundleLink[] = [{ relation: "self", url: url(request.page) }];
	if (request.page * request.count < page.total) link.push({ relation: "next", url: url(request.page + 1) });
	if (request.page > 1) link.push({ relation: "previous", url: url(Math.min(request.page - 1, Math.max(1, Math.ceil(page.total / request.count)))) });
	return {
		resourceType: "Bundle",
		type: "searchset",
		...(request.total !== "none" && { total: page.total }),
		link,
		// FHIR JSON has no empty arrays: no matches, no entry.
		...(page.resources.length && {
			entry: page.resources.map(resource => ({
				fullUrl: `${base}/${resource.resourceType}/${resource.id}`,
				resource,
				search: { mode: "match" as const }
			}))
		})
	};
}

/** A `history` Bundle of one resource, newest first: each version with the change that made it; links page through it. */
export function historyBundle(base: string, type: string, id: string, paging: { page: number; count: number }, history: { entries: HistoryEntry[]; total: number }): Bundle {
	const url = (n: number) => `${base}/${type}/${id}/_history?_count=${paging.count}&_page=${n}`;
	const link: BundleLink[] = [{ relation: "self", url: url(paging.page) }];
	if (paging.page * paging.count < history.total) link.push({ relation: "next", url: url(paging.page + 1) });
	if (paging.page > 1) link.push({ relation: "previous", url: url(Math.min(paging.page - 1, Math.max(1, Math.ceil(history.total / paging.count)))) });
	return {
		resourceType: "Bundle",
		type: "history",
		total: history.total,
		link,
		...(history.entries.length && {
			entry: history.entries.map(entry => ({
				fullUrl: `${base}/${type}/${id}`,
				...(entry.resource && { resource: entry.resource }),
				request: { method: entry.method, url: entry.method === "POST" ? type : `${type}/${id}` },
				response: {
					status: entry.method === "POST" ? "201 Created" : entry.method === "DELETE" ? "204 No Content" : "200 OK",
					etag: `W/"${entry.versionId}"`,
					lastModified: entry.at
				}
			}))
		})
	};
}
