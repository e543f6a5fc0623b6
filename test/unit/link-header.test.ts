import { isPage, pageLinks } from "../../lib/infra/link-header";

describe("Link headers for paged lists (RFC 8288)", () => {
	test("a middle page links to first, prev, next and last, keeping the other query params", () => {
		expect(pageLinks("/patients?search=ada&page=2&sort=-name", { page: 2, pageSize: 20, totalPages: 5 })).toBe(
			[
				'</patients?search=ada&page=1&sort=-name&pageSize=20>; rel="first"',
				'</patients?search=ada&page=1&sort=-name&pageSize=20>; rel="prev"',
				'</patients?search=ada&page=3&sort=-name&pageSize=20>; rel="next"',
				'</patients?search=ada&page=5&sort=-name&pageSize=20>; rel="last"'
			].join(", ")
		);
	});

	test("the first page has no prev, the last no next; a request without a query gets one", () => {
		expect(pageLinks("/doctors", { page: 1, pageSize: 10, totalPages: 2 })).toBe(
			'</doctors?page=1&pageSize=10>; rel="first", </doctors?page=2&pageSize=10>; rel="next", </doctors?page=2&pageSize=10>; rel="last"'
		);
		expect(pageLinks("/doctors?page=2&pageSize=10", { page: 2, pageSize: 10, totalPages: 2 })).toBe(
			'</doctors?page=1&pageSize=10>; rel="first", </doctors?page=1&pageSize=10>; rel="prev", </doctors?page=2&pageSize=10>; rel="last"'
		);
	});

	test("an empty list is one page; a page past the end points back to the last one", () => {
		expect(pageLinks("/audit?patientId=x", { page: 1, pageSize: 20, totalPages: 0 })).toBe(
			'</audit?patientId=x&page=1&pageSize=20>; rel="first", </audit?patientId=x&page=1&pageSize=20>; rel="last"'
		);
		expect(pageLinks("/audit?page=9", { page: 9, pageSize: 20, totalPages: 3 })).toBe(
			'</audit?page=1&pageSize=20>; rel="first", </audit?page=3&pageSize=20>; rel="prev", </audit?page=3&pageSize=20>; rel="last"'
		);
	});

	test("query values stay encoded, and a repeated page param becomes one", () => {
		expect(pageLinks("/patients?search=a%26b%20c&page=1&page=2", { page: 2, pageSize: 5, totalPages: 2 })).toBe(
			'</patients?search=a%26b+c&page=1&pageSize=5>; rel="first", </patients?search=a%26b+c&page=1&pageSize=5>; rel="prev", </patients?search=a%26b+c&page=2&pageSize=5>; rel="last"'
		);
	});

	test("only a page-shaped answer is a page", () => {
		expect(isPage({ rows: [], total: 0, page: 1, pageSize: 20, totalPages: 0 })).toBe(true);
		expect(isPage({ rows: [], page: 1 })).toBe(false);
		expect(isPage([1, 2])).toBe(false);
		expect(isPage(null)).toBe(false);
	});
});
