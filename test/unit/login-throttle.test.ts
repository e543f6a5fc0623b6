import {
	EMAIL_BACKOFF_MAX_SECONDS,
	EMAIL_FREE_FAILURES,
	IP_LIMIT,
	type LoginCounts,
	LoginsInProgress,
	MAX_LOGINS_IN_PROGRESS_PER_CLIENT,
	PAIR_LIMIT,
	emailBackoffSeconds,
	loginClient,
	loginVerdict
} from "../../services/auth/login-throttle";

const quiet: LoginCounts = {
	pairAttempts: 0,
	pairFailures: 0,
	pairRetry: null,
	ipAttempts: 0,
	ipFailures: 0,
	ipRetry: null,
	emailAttempts: 0,
	emailIdleSeconds: null,
	knownClient: false
};

describe("login throttling rule", () => {
	test("the account's back-off: none below the free allowance, then 15, 30, 60 s, never more", () => {
		const schedule = Array.from({ length: 8 }, (_, i) => emailBackoffSeconds(EMAIL_FREE_FAILURES - 1 + i));
		expect(schedule).toEqual([0, 15, 30, 60, 60, 60, 60, 60]);
		expect(emailBackoffSeconds(10_000)).toBe(EMAIL_BACKOFF_MAX_SECONDS);
	});

	test("a quiet account and client are checked", () => {
		expect(loginVerdict(quiet)).toEqual({ kind: "check" });
		expect(loginVerdict({ ...quiet, pairAttempts: PAIR_LIMIT - 1, pairFailures: PAIR_LIMIT - 1, ipAttempts: IP_LIMIT - 1 })).toEqual({ kind: "check" });
	});

	test("the pair's or the client's failures at the limit refuse until the oldest leaves its window", () => {
		expect(loginVerdict({ ...quiet, pairAttempts: PAIR_LIMIT, pairFailures: PAIR_LIMIT, pairRetry: 412.2 })).toEqual({ kind: "refuse", retryAfter: 413 });
		expect(loginVerdict({ ...quiet, ipAttempts: IP_LIMIT, ipFailures: IP_LIMIT, ipRetry: 0.01 })).toEqual({ kind: "refuse", retryAfter: 1 });
		// A known client is not exempt from these.
		expect(loginVerdict({ ...quiet, knownClient: true, pairAttempts: PAIR_LIMIT, pairFailures: PAIR_LIMIT, pairRetry: 30 }).kind).toBe("refuse");
	});

	test("attempts still being checked make the next one wait, not fail", () => {
		expect(loginVerdict({ ...quiet, pairAttempts: PAIR_LIMIT, pairFailures: 2 })).toEqual({ kind: "wait" });
		expect(loginVerdict({ ...quiet, ipAttempts: IP_LIMIT, ipFailures: IP_LIMIT - 1 })).toEqual({ kind: "wait" });
	});

	test("several limits refusing at once: the longest wait is the answer", () => {
		const both = { ...quiet, pairAttempts: PAIR_LIMIT, pairFailures: PAIR_LIMIT, pairRetry: 20, emailAttempts: 40, emailIdleSeconds: 5 };
		expect(loginVerdict(both)).toEqual({ kind: "refuse", retryAfter: 55 });
	});

	test("past the free allowance an unknown client waits out the back-off since the account's latest attempt; a known client does not", () => {
		const attacked = { ...quiet, emailAttempts: EMAIL_FREE_FAILURES + 1, emailIdleSeconds: 10 };
		expect(loginVerdict(attacked)).toEqual({ kind: "refuse", retryAfter: 20 });
		expect(loginVerdict({ ...attacked, emailIdleSeconds: 30 })).toEqual({ kind: "check" });
		expect(loginVerdict({ ...attacked, knownClient: true })).toEqual({ kind: "check" });
		// Below the allowance the account's latest attempt does not matter, however recent.
		expect(loginVerdict({ ...quiet, emailAttempts: EMAIL_FREE_FAILURES - 1, emailIdleSeconds: -0.01 })).toEqual({ kind: "check" });
	});

	test("the client key: the address, '' over the broker, never longer than its column", () => {
		expect(loginClient("203.0.113.5")).toBe("203.0.113.5");
		expect(loginClient(undefined)).toBe("");
		expect(loginClient("x".repeat(500))).toHaveLength(64);
		// One IPv6 subscriber holds a /64: every address in it is one client.
		expect(loginClient("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:1:2::/64");
		expect(loginClient("2001:db8:1:2::9")).toBe("2001:db8:1:2::/64");
		expect(loginClient("::ffff:203.0.113.5")).toBe("203.0.113.5");
	});
});

describe("logins in progress on a node", () => {
	test("a client past its limit is refused; a login that ends makes room, for that client only", () => {
		const logins = new LoginsInProgress();
		for (let i = 0; i < MAX_LOGINS_IN_PROGRESS_PER_CLIENT; i++) expect(logins.enter("a")).toBe(true);
		expect(logins.enter("a")).toBe(false);
		expect(logins.enter("b")).toBe(true);
		logins.leave("a");
		expect(logins.enter("a")).toBe(true);
	});

	test("an attempt waiting on those in flight wakes when one of its client's logins ends, not another client's", async () => {
		const logins = new LoginsInProgress();
		logins.enter("a");
		logins.enter("b");
		let woken = false;
		const waiting = logins.nextEnd("a", 60_000).then(() => (woken = true));
		logins.leave("b");
		await new Promise(resolve => setImmediate(resolve));
		expect(woken).toBe(false);
		logins.leave("a");
		await waiting;
		expect(woken).toBe(true);
	});
});
