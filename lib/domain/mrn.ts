/**
 * Medical record numbers: a 7-digit serial and a Luhn check digit, e.g. 10000009.
 * Short enough to read over the phone; the check digit catches a mistyped or
 * swapped digit before it finds the wrong patient.
 */
export const MRN_PATTERN = /^\d{8}$/;

export function luhnCheckDigit(digits: string): number {
	let sum = 0;
	for (let i = 0; i < digits.length; i++) {
		let digit = Number(digits[digits.length - 1 - i]);
		if (i % 2 === 0) {
			digit *= 2;
			if (digit > 9) digit -= 9;
		}
		sum += digit;
	}
	return (10 - (sum % 10)) % 10;
}

export function formatMrn(serial: number | bigint): string {
	const digits = String(serial);
	if (!/^[1-9]\d{6}$/.test(digits)) throw new RangeError(`MRN serial out of range: ${digits}`);
	return digits + luhnCheckDigit(digits);
}

export function isValidMrn(value: string): boolean {
	return MRN_PATTERN.test(value) && luhnCheckDigit(value.slice(0, -1)) === Number(value.slice(-1));
}
