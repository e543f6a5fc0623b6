/**
 * RFC 8288 `Link` headers for a paged list: first, prev, next and last, each
 * the request's own path and query with only `page` changed (and `pageSize`
 * made explicit), so a client follows them without knowing the paging rules.
 */

/** What a paged answer says of itself (lib/domain/paging.ts). */
export interface PageSummary {
	page: number;
	pageSize: number;
	totalPages: number;
}

/** Whether an action's answer is a page: `{ rows, page, pageSize, totalPages, … }`. */
export function isPage(data: unknown): data is PageSummary & { rows: unknown[] } {
	if (typeof data !== "object" || data === null) return false;
	const page = data as Record<string, unknown>;
	return Array.isArray(page.rows) && Number.isInteger(page.page) && Number.isInteger(page.pageSize) && Number.isInteger(page.totalPages);
}

/**
 * The Link header for `page` of a list requested at `url` (an absolute path with
 * its query, as the client sent it). The links are absolute paths too, which a
 * client resolves against the URL it called. An empty list still has one page
 * to be first and last; a page past the end gets a `prev` to the last one.
 */
export function pageLinks(url: string, { page, pageSize, totalPages }: PageSummary): string {
	const query = url.indexOf("?");
	const path = query === -1 ? url : url.slice(0, query);
	const params = new URLSearchParams(query === -1 ? "" : url.slice(query + 1));
	const last = Math.max(totalPages, 1);
	const link = (target: number, rel: string) => {
		params.set("page", String(target));
		params.set("pageSize", String(pageSize));
		return `<${path}?${params}>; rel="${rel}"`;
	};
	return [
		link(1, "first"),
		...(page > 1 ? [link(Math.min(page - 1, last), "prev")] : []),
		...(page < last ? [link(page + 1, "next")] : []),
		link(last, "last")
	].join(", ");
}
