import { EventEmitter } from "node:events";
import ipaddr from "ipaddr.js";

/**
 * The login throttling rule (OWASP ASVS 4.0.3 V2.2.1, 5.0 V6.3.1), as numbers and
 * one pure decision; login.ts counts the attempts and applies it atomically.
 *
 * Written here rather than taken from a rate-limiting package: those count fixed
 * windows per key and refuse at a limit, while this rule needs a back-off between
 * attempts, a known-client exemption and attempts reserved before the check.
 */

/**
 * Failures one client (IP) may have on one account within PAIR_WINDOW_SECONDS:
 * the strict limit, and the only one that refuses for long. Keyed by the pair, an
 * attacker exhausts it for their own client only, never for the account's owner.
 */
export const PAIR_LIMIT = 5;
export const PAIR_WINDOW_SECONDS = 15 * 60;

/**
 * Failures one client may have across all accounts within IP_WINDOW_SECONDS
 * (credential stuffing: one password tried against many emails). Room for a
 * clinic's staff behind one NAT address mistyping now and then.
 */
export const IP_LIMIT = 30;
export const IP_WINDOW_SECONDS = 15 * 60;

/**
 * An account's failures from all clients within EMAIL_WINDOW_SECONDS before the
 * back-off starts: twice the pair limit, so an owner's own typos on two devices
 * never reach it, while an attacker needs at least three addresses to.
 */
export const EMAIL_FREE_FAILURES = 10;
/**
 * Then each attempt must come this long after the account's previous one, doubling
 * with each further failure up to EMAIL_BACKOFF_MAX_SECONDS: a guesser spread over
 * any number of addresses gets about 70 tries an hour at most (ASVS: under 100), and
 * the owner on a new client waits a minute at most, never a lockout.
 */
export const EMAIL_BACKOFF_FIRST_SECONDS = 15;
export const EMAIL_BACKOFF_MAX_SECONDS = 60;
export const EMAIL_WINDOW_SECONDS = 60 * 60;

/**
 * A client that logged in to an account within this many days is exempt from the
 * account's back-off (OWASP's device cookie, by IP since the API has none): long
 * enough to cover a holiday, short enough that a reassigned address loses it.
 */
export const KNOWN_CLIENT_DAYS = 30;

/**
 * A pending attempt older than this never reported back (its node died while
 * checking); it is counted as a failure. A check takes well under a second.
 */
export const PENDING_STALE_SECONDS = 60;

/**
 * An attempt over the limit only because of attempts still being checked waits up
 * to this long for them to settle (parallel right passwords then all pass): it
 * checks again when one of its client's logins on this node ends, or after
 * ATTEMPT_RECHECK_MS (for attempts on other nodes). Half the broker's request
 * timeout, so the wait and the check itself fit in it.
 */
export const IN_FLIGHT_WAIT_MS = 5_000;
export const ATTEMPT_RECHECK_MS = 100;

/**
 * Logins one client may have in progress on one node; more are 429 at once,
 * before any database work. Each holds a pooled connection while it counts
 * under the locks: without a cap, one client's flood of parallel attempts
 * would hold the whole pool, and every user's login would wait or fail. Just
 * above IP_LIMIT, so that limit is still what a client's parallel failures meet.
 */
export const MAX_LOGINS_IN_PROGRESS_PER_CLIENT = IP_LIMIT + 2;

/** Rows older than every window count for nothing and are pruned this often. */
export const LOGIN_RECORDS_KEPT_SECONDS = Math.max(PAIR_WINDOW_SECONDS, IP_WINDOW_SECONDS, EMAIL_WINDOW_SECONDS);
export const LOGIN_PRUNE_INTERVAL_MS = 10 * 60 * 1000;

/**
 * The client key of a login: its address, or '' for calls over the broker (they
 * share one key). An IPv6 client is its /64, the block one subscriber gets, or
 * it would have more keys than any limit can count; an IPv4 address mapped into
 * IPv6 is that IPv4 address. What does not parse (behind TRUST_PROXY it comes
 * from a header) is cut to the column's 64 characters: throttled, not a
 * database error.
 */
export function loginClient(ip: string | undefined): string {
	const text = (ip ?? "").trim();
	if (!ipaddr.isValid(text)) return text.slice(0, 64);
	const address = ipaddr.process(text);
	if (address.kind() === "ipv4") return address.toString();
	return `${ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/64`).toString()}/64`;
}

/**
 * The logins in progress on this node, by client: a gate that refuses a client
 * past MAX_LOGINS_IN_PROGRESS_PER_CLIENT, and a signal for attempts waiting on
 * those in flight, so that they check again when one ends instead of polling.
 */
export class LoginsInProgress {
	private readonly counts = new Map<string, number>();
	private readonly ended = new EventEmitter().setMaxListeners(0);

	/** False when the client already has the most logins in progress it may. */
	enter(client: string): boolean {
		const count = this.counts.get(client) ?? 0;
		if (count >= MAX_LOGINS_IN_PROGRESS_PER_CLIENT) return false;
		this.counts.set(client, count + 1);
		return true;
	}

	leave(client: string): void {
		const count = (this.counts.get(client) ?? 1) - 1;
		if (count > 0) this.counts.set(client, count);
		else this.counts.delete(client);
		this.ended.emit(client);
	}

	/** Resolves when one of the client's logins ends, or after `ms`. */
	nextEnd(client: string, ms: number): Promise<void> {
		return new Promise(resolve => {
			const done = () => {
				clearTimeout(timer);
				this.ended.off(client, done);
				resolve();
			};
			const timer = setTimeout(done, ms);
			this.ended.once(client, done);
		});
	}
}

/** What the attempts table says about one login, each within its window. "Attempts" include pending ones. */
export interface LoginCounts {
	pairAttempts: number;
	pairFailures: number;
	/** Seconds until the pair's oldest attempt leaves its window. */
	pairRetry: number | null;
	ipAttempts: number;
	ipFailures: number;
	ipRetry: number | null;
	emailAttempts: number;
	/** Seconds since the account's latest attempt, from any client. */
	emailIdleSeconds: number | null;
	knownClient: boolean;
}

export type LoginVerdict = { kind: "check" } | { kind: "wait" } | { kind: "refuse"; retryAfter: number };

/** Seconds an account's attempts must be apart once it has `failures` failures; 0 below the free allowance. */
export function emailBackoffSeconds(failures: number): number {
	if (failures < EMAIL_FREE_FAILURES) return 0;
	return Math.min(EMAIL_BACKOFF_FIRST_SECONDS * 2 ** (failures - EMAIL_FREE_FAILURES), EMAIL_BACKOFF_MAX_SECONDS);
}

/**
 * check: reserve the attempt and check the password. refuse: 429, with the
 * seconds until every limit that refused has passed. wait: only attempts still
 * being checked stand in the way; ask again once they settle.
 */
export function loginVerdict(counts: LoginCounts): LoginVerdict {
	const waits: number[] = [];
	if (counts.pairFailures >= PAIR_LIMIT) waits.push(counts.pairRetry ?? PAIR_WINDOW_SECONDS);
	if (counts.ipFailures >= IP_LIMIT) waits.push(counts.ipRetry ?? IP_WINDOW_SECONDS);
	const backoff = emailBackoffSeconds(counts.emailAttempts);
	if (!counts.knownClient && backoff > 0 && counts.emailIdleSeconds !== null) {
		const left = backoff - counts.emailIdleSeconds;
		if (left > 0) waits.push(left);
	}
	if (waits.length) return { kind: "refuse", retryAfter: Math.max(1, Math.ceil(Math.max(...waits))) };
	if (counts.pairAttempts >= PAIR_LIMIT || counts.ipAttempts >= IP_LIMIT) return { kind: "wait" };
	return { kind: "check" };
}
