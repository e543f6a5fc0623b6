import fs from "node:fs";

/**
 * Where a `--cpu-prof` profile's time went: the share of samples per package
 * (or project file, or V8's idle / GC / program buckets) and the top functions
 * by self time, each with the project frame nearest below it on the stack.
 * Only the busiest `window` seconds count (default 3: a quick scenario), so
 * start-up and fixture loading stay out of the picture.
 *   node dist/bench/profile-summary.js <file.cpuprofile> [window seconds] [top]
 */
interface CallFrame {
	functionName: string;
	url: string;
	lineNumber: number;
}
interface ProfileNode {
	id: number;
	callFrame: CallFrame;
	children?: number[];
}
interface CpuProfile {
	nodes: ProfileNode[];
	samples: number[];
	timeDeltas: number[];
}

const [file, windowArg, topArg] = process.argv.slice(2);
const windowUs = Number(windowArg ?? 3) * 1e6;
const top = Number(topArg ?? 25);
const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;

const byId = new Map(profile.nodes.map(n => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

/** `node_modules/<pkg>` (scoped too), a project path, `node:<module>`, or V8's own bucket. */
function owner(frame: CallFrame): string {
	const { url, functionName } = frame;
	if (!url) return functionName.startsWith("(") ? functionName : "(native)";
	const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
	if (pkg) return pkg[1];
	if (url.startsWith("node:")) return url;
	const project = /\/dist\/(.+)$/.exec(url);
	return project ? project[1] : url;
}

/** The nearest project (or package) frame below a node, so a hot `JSON.stringify` says who called it. */
function caller(id: number): string {
	for (let p = parent.get(id); p !== undefined; p = parent.get(p)) {
		const frame = byId.get(p)!.callFrame;
		if (frame.url && !frame.url.startsWith("node:")) return `${owner(frame)} ${frame.functionName || "(anonymous)"}`;
	}
	return "";
}

/** The samples of the window with the least idle time. */
function busiestWindow(): [number, number] {
	const idle = new Set(profile.nodes.filter(n => n.callFrame.functionName === "(idle)").map(n => n.id));
	let best: [number, number] = [0, profile.samples.length];
	let bestBusy = -1;
	let busy = 0;
	let span = 0;
	for (let from = 0, to = 0; to < profile.samples.length; to++) {
		span += profile.timeDeltas[to];
		if (!idle.has(profile.samples[to])) busy += profile.timeDeltas[to];
		while (span - profile.timeDeltas[from] >= windowUs) {
			span -= profile.timeDeltas[from];
			if (!idle.has(profile.samples[from])) busy -= profile.timeDeltas[from];
			from++;
		}
		if (span >= windowUs && busy > bestBusy) [best, bestBusy] = [[from, to + 1], busy];
	}
	return best;
}

const selfTime = new Map<number, number>();
const [from, to] = busiestWindow();
for (let i = from; i < to; i++) selfTime.set(profile.samples[i], (selfTime.get(profile.samples[i]) ?? 0) + profile.timeDeltas[i]);
const total = [...selfTime.values()].reduce((a, b) => a + b, 0);

const byOwner = new Map<string, number>();
const byFunction = new Map<string, number>();
for (const [id, time] of selfTime) {
	const frame = byId.get(id)!.callFrame;
	const who = owner(frame);
	byOwner.set(who, (byOwner.get(who) ?? 0) + time);
	const key = `${who} ${frame.functionName || "(anonymous)"}:${frame.lineNumber + 1}  ← ${caller(id)}`;
	byFunction.set(key, (byFunction.get(key) ?? 0) + time);
}

const share = (t: number) => `${((100 * t) / total).toFixed(1).padStart(5)}%`;
const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
console.log(`${file}: the busiest ${(total / 1e6).toFixed(1)} s\n\nBy package or file (self time):`);
for (const [k, t] of sorted(byOwner)) console.log(`${share(t)}  ${k}`);
console.log("\nBy function (self time), with the nearest caller outside node's core:");
for (const [k, t] of sorted(byFunction)) console.log(`${share(t)}  ${k}`);
