import { isRealDate, todayIn } from "../../lib/domain/dates";

describe("calendar dates", () => {
	test.each(["2024-02-29", "2000-02-29", "1999-12-31", "2023-01-01"])("%s is a real date", date => {
		expect(isRealDate(date)).toBe(true);
	});

	test.each(["2023-02-29", "1900-02-29", "2023-02-30", "2023-04-31", "2023-13-01", "2023-00-10", "2023-1-1", "20230101", "", "2023-01-01T00:00:00Z"])(
		"%s is not",
		date => {
			expect(isRealDate(date)).toBe(false);
		}
	);

	test("today depends on the clinic's timezone", () => {
		const instant = new Date("2026-03-01T02:30:00Z");
		expect(todayIn("UTC", instant)).toBe("2026-03-01");
		expect(todayIn("America/New_York", instant)).toBe("2026-02-28");
		expect(todayIn("Pacific/Kiritimati", new Date("2026-02-28T11:00:00Z"))).toBe("2026-03-01");
	});

	test("the date turns at local midnight, also when asked just before it (the answer is kept for the minute)", () => {
		// Kolkata is UTC+05:30: its midnight falls at half past the UTC hour.
		expect(todayIn("Asia/Kolkata", new Date("2026-06-30T18:29:00Z"))).toBe("2026-06-30");
		expect(todayIn("Asia/Kolkata", new Date("2026-06-30T18:29:59.999Z"))).toBe("2026-06-30");
		expect(todayIn("Asia/Kolkata", new Date("2026-06-30T18:30:00Z"))).toBe("2026-07-01");
		expect(todayIn("Asia/Kolkata", new Date("2026-06-30T18:29:30Z"))).toBe("2026-06-30");
	});
});
