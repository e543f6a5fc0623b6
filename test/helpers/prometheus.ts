/**
 * A strict reader of Prometheus' text exposition format (0.0.4), for tests
 * that scrape /metrics. The one npm parser (parse-prometheus-text-format, last
 * released in 2020) merges a histogram's labelled series into one and drops
 * its labels, so it cannot check what these tests check. This one refuses
 * what Prometheus would refuse or misread: a malformed line, a sample of no
 * declared family or with a suffix its type does not have, a family declared
 * twice, a histogram whose buckets are not cumulative or lack `+Inf`, `_sum`
 * or `_count`.
 */

export interface Sample {
	name: string;
	labels: Record<string, string>;
	value: number;
}

export interface Family {
	name: string;
	type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
	help: string;
	samples: Sample[];
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: -?\\d+)?$`);
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;
const SUFFIXES: Record<Family["type"], string[]> = {
	counter: [""],
	gauge: [""],
	untyped: [""],
	histogram: ["_bucket", "_sum", "_count"],
	summary: ["", "_sum", "_count"]
};

function parseLabels(text: string | undefined, line: string): Record<string, string> {
	const labels: Record<string, string> = {};
	if (!text) return labels;
	LABEL.lastIndex = 0;
	while (LABEL.lastIndex < text.length) {
		const match = LABEL.exec(text);
		if (!match) throw new Error(`Malformed labels in: ${line}`);
		if (match[1] in labels) throw new Error(`Label ${match[1]} repeated in: ${line}`);
		labels[match[1]] = match[2].replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
		if (match[3] === "") break;
	}
	return labels;
}

function parseValue(text: string, line: string): number {
	if (text === "+Inf") return Infinity;
	if (text === "-Inf") return -Infinity;
	if (text === "NaN") return NaN;
	const value = Number(text);
	if (text.trim() === "" || Number.isNaN(value)) throw new Error(`Malformed value in: ${line}`);
	return value;
}

function checkHistogram(family: Family): void {
	const series = new Map<string, Sample[]>();
	for (const sample of family.samples) {
		const { le: _le, ...rest } = sample.labels;
		const key = JSON.stringify(Object.entries(rest).sort());
		series.set(key, [...(series.get(key) ?? []), sample]);
	}
	for (const [key, samples] of series) {
		const buckets = samples.filter(s => s.name.endsWith("_bucket")).sort((a, b) => parseValue(a.labels.le, key) - parseValue(b.labels.le, key));
		const count = samples.find(s => s.name === `${family.name}_count`);
		if (!samples.some(s => s.name === `${family.name}_sum`) || !count) throw new Error(`${family.name}${key} lacks _sum or _count`);
		if (buckets.at(-1)?.labels.le !== "+Inf" || buckets.at(-1)!.value !== count.value) throw new Error(`${family.name}${key}: the +Inf bucket is not the count`);
		buckets.forEach((bucket, i) => {
			if (i > 0 && bucket.value < buckets[i - 1].value) throw new Error(`${family.name}${key}: buckets are not cumulative`);
		});
	}
}

/** The families of a scrape, by name; throws on anything malformed. */
export function parsePrometheus(text: string): Map<string, Family> {
	const families = new Map<string, Family>();
	const declare = (name: string, line: string) => {
		let family = families.get(name);
		if (!family) families.set(name, (family = { name, type: "untyped", help: "", samples: [] }));
		else if (family.samples.length) throw new Error(`${name} declared after its samples: ${line}`);
		return family;
	};
	for (const line of text.split("\n")) {
		if (line.trim() === "") continue;
		const meta = line.match(new RegExp(`^# (HELP|TYPE) (${NAME}) ?(.*)$`));
		if (meta) {
			const family = declare(meta[2], line);
			if (meta[1] === "HELP") family.help = meta[3];
			else if (meta[3] in SUFFIXES) family.type = meta[3] as Family["type"];
			else throw new Error(`Unknown type in: ${line}`);
			continue;
		}
		if (line.startsWith("#")) continue;
		const match = SAMPLE.exec(line);
		if (!match) throw new Error(`Malformed line: ${line}`);
		const [, name, labelText, valueText] = match;
		const family = [...families.values()].find(f => SUFFIXES[f.type].some(suffix => name === f.name + suffix));
		if (!family) throw new Error(`Sample of no declared family (or a suffix its type does not have): ${line}`);
		family.samples.push({ name, labels: parseLabels(labelText, line), value: parseValue(valueText, line) });
	}
	for (const family of families.values()) if (family.type === "histogram") checkHistogram(family);
	return families;
}

/** The one sample of `family` (with that exact name, e.g. `x_count`) whose labels include `labels`. */
export function sampleOf(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): Sample | undefined {
	const familyName = name.replace(/_(bucket|sum|count)$/, "");
	const family = families.get(name) ?? families.get(familyName);
	return family?.samples.find(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}
