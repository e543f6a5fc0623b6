/**
 * Runs work for many keys at once while keeping each key's items in order, and
 * tells, per lane (a Kafka partition), the last item up to which everything is
 * done: the offset that is safe to commit.
 */
export class OrderedWork<T> {
	private readonly chains = new Map<string, Promise<void>>();
	private readonly lanes = new Map<number, { item: T; done: boolean }[]>();
	private readonly running = new Set<Promise<void>>();

	constructor(
		private readonly limit: number,
		/** Called with the newest item of a lane whose every earlier item is done. */
		private readonly onSettled: (lane: number, item: T) => void
	) {}

	/** Starts `work` after the key's earlier work, once fewer than `limit` run; resolves when it has started. */
	async add(lane: number, key: string, item: T, work: () => Promise<void>): Promise<void> {
		while (this.running.size >= this.limit) await Promise.race(this.running);
		const entry = { item, done: false };
		const queue = this.lanes.get(lane) ?? [];
		queue.push(entry);
		this.lanes.set(lane, queue);
		const task = (this.chains.get(key) ?? Promise.resolve()).then(work).then(() => {
			entry.done = true;
			this.settle(lane);
		});
		const tracked = task.catch(() => {}).finally(() => {
			this.running.delete(tracked);
			if (this.chains.get(key) === task) this.chains.delete(key);
		});
		this.chains.set(key, task);
		this.running.add(tracked);
	}

	/** Waits for everything started so far. */
	async drain(): Promise<void> {
		while (this.running.size) await Promise.race(this.running);
	}

	private settle(lane: number): void {
		const queue = this.lanes.get(lane)!;
		let last: T | undefined;
		while (queue.length && queue[0].done) last = queue.shift()!.item;
		if (last !== undefined) this.onSettled(lane, last);
	}
}
