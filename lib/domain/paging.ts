/** Past this page an offset stops being a list and starts being an overflow (a bigint OFFSET, or 1e20 as text). */
const MAX_PAGE = 1_000_000;

/** Query params for a paginated list: `page` from 1 to MAX_PAGE, `pageSize` up to 100. */
export function pagingParams(defaultPageSize = 20) {
	return {
		page: { type: "number", integer: true, min: 1, max: MAX_PAGE, convert: true, default: 1 },
		pageSize: { type: "number", integer: true, min: 1, max: 100, convert: true, default: defaultPageSize }
	};
}

export interface PageRequest {
	page: number;
	pageSize: number;
}

export interface Page<T> extends PageRequest {
	rows: T[];
	total: number;
	totalPages: number;
}

/** The LIMIT/OFFSET of a page. */
export function limitOffset({ page, pageSize }: PageRequest): { limit: number; offset: number } {
	return { limit: pageSize, offset: (page - 1) * pageSize };
}

/** Every list answers `{ rows, total, page, pageSize, totalPages }`. */
export function toPage<T>(rows: T[], total: number, { page, pageSize }: PageRequest): Page<T> {
	return { rows, total, page, pageSize, totalPages: Math.ceil(total / pageSize) };
}
