import { OrderedWork } from "../../lib/infra/ordered-work";

const sleep = (ms: number) => new Promise<void>(r => setTimeout(r, ms));

describe("ordered work", () => {
	test("keeps each key's items in order while other keys run alongside", async () => {
		const log: string[] = [];
		const work = new OrderedWork<number>(8, () => {});
		const item = (key: string, n: number, ms: number) => work.add(0, key, n, async () => {
			await sleep(ms);
			log.push(`${key}${n}`);
		});
		await item("a", 1, 40);
		await item("b", 2, 5);
		await item("a", 3, 1);
		await item("b", 4, 1);
		await work.drain();
		expect(log.indexOf("a1")).toBeLessThan(log.indexOf("a3"));
		expect(log.indexOf("b2")).toBeLessThan(log.indexOf("b4"));
		expect(log.indexOf("b2")).toBeLessThan(log.indexOf("a1")); // b did not wait for a
	});

	test("settles a lane only up to the first unfinished item", async () => {
		const settled: number[] = [];
		const work = new OrderedWork<number>(8, (_lane, n) => settled.push(n));
		await work.add(0, "slow", 1, () => sleep(40));
		await work.add(0, "fast", 2, () => sleep(1));
		await sleep(10);
		expect(settled).toEqual([]); // 2 is done, but 1 is not: nothing is safe to commit yet
		await work.drain();
		expect(settled).toEqual([2]);
	});

	test("never runs more than the limit at once", async () => {
		let now = 0;
		let peak = 0;
		const work = new OrderedWork<number>(3, () => {});
		for (let i = 0; i < 10; i++) {
			await work.add(0, `k${i}`, i, async () => {
				peak = Math.max(peak, ++now);
				await sleep(5);
				now--;
			});
		}
		await work.drain();
		expect(peak).toBe(3);
	});
});
