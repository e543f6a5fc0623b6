import { availabilityProblem, freeSlots, withinAvailability } from "../../lib/domain/scheduling";
import { datesBetween, dayCount, formatZoned, offsetMinutes, zonedInstant } from "../../lib/domain/zoned-time";

const iso = (ms: number, tz: string) => formatZoned(ms, tz);

describe("wall-clock time in a timezone", () => {
	test("reads and writes offsets, DST included", () => {
		expect(iso(Date.parse("2026-01-15T08:00:00Z"), "Europe/Berlin")).toBe("2026-01-15T09:00:00+01:00");
		expect(iso(Date.parse("2026-07-15T07:00:00Z"), "Europe/Berlin")).toBe("2026-07-15T09:00:00+02:00");
		expect(iso(Date.parse("2026-07-15T13:00:00Z"), "America/New_York")).toBe("2026-07-15T09:00:00-04:00");
		expect(offsetMinutes(Date.parse("2026-07-15T00:00:00Z"), "Asia/Kolkata")).toBe(330);
	});

	test("a skipped local time reads with the earlier offset; a repeated one is its first occurrence", () => {
		// Berlin springs forward at 02:00 on 2026-03-29 and falls back at 03:00 on 2026-10-25.
		expect(iso(zonedInstant("2026-03-29", "02:30", "Europe/Berlin"), "Europe/Berlin")).toBe("2026-03-29T03:30:00+02:00");
		expect(iso(zonedInstant("2026-10-25", "02:30", "Europe/Berlin"), "Europe/Berlin")).toBe("2026-10-25T02:30:00+02:00");
	});
});

describe("availability", () => {
	test("windows must start before they end and must not overlap", () => {
		expect(availabilityProblem([{ day: "monday", start: "09:00", end: "17:00" }])).toBeNull();
		expect(availabilityProblem([{ day: "monday", start: "17:00", end: "09:00" }])).toMatch(/before it ends/);
		expect(
			availabilityProblem([
				{ day: "monday", start: "09:00", end: "12:00" },
				{ day: "monday", start: "11:00", end: "13:00" }
			])
		).toMatch(/overlaps/);
		expect(
			availabilityProblem([
				{ day: "monday", start: "09:00", end: "12:00" },
				{ day: "monday", start: "12:00", end: "13:00" },
				{ day: "tuesday", start: "11:00", end: "13:00" }
			])
		).toBeNull();
	});
});

describe("free slots", () => {
	const base = { slotMinutes: 30, busy: [], now: 0 };

	test("the first and the last slot of a window; none crosses its end", () => {
		const slots = freeSlots({ ...base, availability: [{ day: "monday", start: "09:00", end: "10:45" }], timeZone: "UTC", from: "2026-12-07", to: "2026-12-07" });
		expect(slots.map(s => iso(s.start, "UTC").slice(11, 16))).toEqual(["09:00", "09:30", "10:00"]);
		expect(iso(slots.at(-1)!.end, "UTC").slice(11, 16)).toBe("10:30");
	});

	test("busy time and the past are not offered", () => {
		const busy = [{ start: Date.parse("2026-12-07T09:15:00Z"), end: Date.parse("2026-12-07T09:45:00Z") }];
		const slots = freeSlots({
			...base,
			busy,
			now: Date.parse("2026-12-07T09:01:00Z"),
			availability: [{ day: "monday", start: "09:00", end: "11:00" }],
			timeZone: "UTC",
			from: "2026-12-07",
			to: "2026-12-07"
		});
		expect(slots.map(s => iso(s.start, "UTC").slice(11, 16))).toEqual(["10:00", "10:30"]);
	});

	test("on DST days the doctor's wall clock decides: 09:00 Berlin is 08:00Z in winter and 07:00Z in summer", () => {
		const availability = [{ day: "sunday" as const, start: "09:00", end: "10:00" }, { day: "monday" as const, start: "09:00", end: "10:00" }];
		const slots = freeSlots({ ...base, slotMinutes: 60, availability, timeZone: "Europe/Berlin", from: "2026-03-29", to: "2026-03-30" });
		expect(slots.map(s => iso(s.start, "Europe/Berlin"))).toEqual(["2026-03-29T09:00:00+02:00", "2026-03-30T09:00:00+02:00"]);
		const winter = freeSlots({ ...base, slotMinutes: 60, availability, timeZone: "Europe/Berlin", from: "2026-03-22", to: "2026-03-22" });
		expect(new Date(winter[0].start).toISOString()).toBe("2026-03-22T08:00:00.000Z");
		expect(new Date(slots[0].start).toISOString()).toBe("2026-03-29T07:00:00.000Z");
	});

	test("a window across the spring-forward hour has one hour less of slots", () => {
		const availability = [{ day: "sunday" as const, start: "01:00", end: "04:00" }];
		const slots = freeSlots({ ...base, slotMinutes: 60, availability, timeZone: "Europe/Berlin", from: "2026-03-29", to: "2026-03-29" });
		expect(slots.map(s => iso(s.start, "Europe/Berlin").slice(11, 19))).toEqual(["01:00:00", "03:00:00"]);
	});

	test("an appointment must lie inside one window, in the doctor's zone", () => {
		const availability = [{ day: "monday" as const, start: "09:00", end: "17:00" }];
		const at = (utc: string, minutes: number) => ({ start: Date.parse(utc), end: Date.parse(utc) + minutes * 60_000 });
		expect(withinAvailability(at("2026-12-07T08:00:00Z", 60), availability, "Europe/Berlin")).toBe(true);
		expect(withinAvailability(at("2026-12-07T15:30:00Z", 60), availability, "Europe/Berlin")).toBe(false);
		expect(withinAvailability(at("2026-12-07T07:30:00Z", 30), availability, "Europe/Berlin")).toBe(false);
	});
});

describe("calendar ranges", () => {
	test("dayCount counts both ends, agrees with the listed dates, and is below 1 for a backwards range", () => {
		for (const [from, to] of [["2024-01-01", "2024-01-01"], ["2024-02-27", "2024-03-02"], ["2024-01-01", "2024-12-31"], ["2026-03-28", "2026-03-30"]]) {
			expect(dayCount(from, to)).toBe(datesBetween(from, to).length);
		}
		expect(dayCount("2024-01-01", "2024-12-31")).toBe(366);
		expect(dayCount("2024-01-02", "2024-01-01")).toBe(0);
		expect(dayCount("2024-01-05", "2024-01-01")).toBeLessThan(1);
	});
});
