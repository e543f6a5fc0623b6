import { formatMrn, isValidMrn, luhnCheckDigit } from "../../lib/domain/mrn";

describe("medical record numbers", () => {
	test("the check digit is the Luhn digit", () => {
		// Reference values: 7992739871 → 3 is the textbook Luhn example.
		expect(luhnCheckDigit("7992739871")).toBe(3);
		expect(formatMrn(1000000)).toBe("10000008");
	});

	test("a valid MRN passes; a mistyped digit or a swap of neighbours fails", () => {
		const mrn = formatMrn(4567123);
		expect(isValidMrn(mrn)).toBe(true);
		const typo = mrn.slice(0, 2) + ((Number(mrn[2]) + 1) % 10) + mrn.slice(3);
		expect(isValidMrn(typo)).toBe(false);
		const swapped = mrn[1] + mrn[0] + mrn.slice(2);
		expect(isValidMrn(swapped)).toBe(false);
	});

	test("refuses serials outside seven digits and strings that are not eight digits", () => {
		expect(() => formatMrn(999999)).toThrow(RangeError);
		expect(() => formatMrn(10000000)).toThrow(RangeError);
		expect(isValidMrn("1000000")).toBe(false);
		expect(isValidMrn("1000000a")).toBe(false);
	});
});
