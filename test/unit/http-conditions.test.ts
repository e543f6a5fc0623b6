import { entityTag, requestConditions } from "../../lib/infra/http";
import { requestFingerprint } from "../../lib/infra/idempotency";

describe("a request's conditions", () => {
	test("If-Match: weak or strong tags of our versions, a list of them, or * (no condition)", () => {
		expect(requestConditions({ "if-match": 'W/"3"' })).toEqual({ meta: { ifMatch: [3] } });
		expect(requestConditions({ "if-match": '"3", W/"4"' })).toEqual({ meta: { ifMatch: [3, 4] } });
		expect(requestConditions({ "if-match": "*" })).toEqual({ meta: {} });
		expect(requestConditions({})).toEqual({ meta: {} });
		expect(entityTag(7)).toBe('W/"7"');
	});

	test("a tag that is no version of ours matches nothing; a header that is no tag at all is malformed", () => {
		expect(requestConditions({ "if-match": '"abc"' })).toEqual({ meta: { ifMatch: [] } });
		expect(requestConditions({ "if-match": "3" })).toEqual({ malformed: "If-Match" });
		expect(requestConditions({ "if-match": 'W/"3", nonsense' })).toEqual({ malformed: "If-Match" });
	});

	test("Idempotency-Key: 1 to 255 visible characters", () => {
		expect(requestConditions({ "idempotency-key": "retry-42" })).toEqual({ meta: { idempotencyKey: "retry-42" } });
		expect(requestConditions({ "idempotency-key": "" })).toEqual({ malformed: "Idempotency-Key" });
		expect(requestConditions({ "idempotency-key": "a b" })).toEqual({ malformed: "Idempotency-Key" });
		expect(requestConditions({ "idempotency-key": "k".repeat(256) })).toEqual({ malformed: "Idempotency-Key" });
	});

	test("a request's fingerprint does not depend on the order of its fields", () => {
		expect(requestFingerprint({ a: 1, b: { c: [1, 2], d: null } })).toBe(requestFingerprint({ b: { d: null, c: [1, 2] }, a: 1 }));
		expect(requestFingerprint({ a: 1 })).not.toBe(requestFingerprint({ a: 2 }));
	});
});
