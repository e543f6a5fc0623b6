import { isRealDate, todayIn } from "../../lib/dates";

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
});
