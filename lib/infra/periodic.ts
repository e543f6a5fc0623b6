/** A job run now and then every `intervalMs`, never two runs at once; stop() waits for a run in progress. */
export interface PeriodicJob {
	stop(): Promise<void>;
}

export function runPeriodically(job: () => Promise<void>, intervalMs: number, onError: (err: unknown) => void, { now = false } = {}): PeriodicJob {
	let running: Promise<void> | undefined;
	const tick = () => {
		running ??= job()
			.catch(onError)
			.finally(() => (running = undefined));
	};
	if (now) tick();
	const timer = setInterval(tick, intervalMs);
	return {
		async stop() {
			clearInterval(timer);
			await running;
		}
	};
}
