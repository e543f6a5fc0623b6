import crypto from "node:crypto";
import fs from "node:fs";
import autocannon from "autocannon";

/**
 * One load run, in a process of its own so the load generator does not share a
 * core's event loop with what it measures. Prints autocannon's summary as JSON.
 *   node dist/bench/load.js <file of JSON options>
 * `body: "patient"` makes every request a new patient (a unique email);
 * `body: "appointment"` walks a list of distinct free slots.
 */
interface LoadOptions {
	url: string;
	method: "GET" | "POST";
	connections: number;
	duration: number;
	token?: string;
	body?: "patient" | "appointment" | "login" | "none";
	paths?: string[];
	slots?: { doctorId: string; patientId: string; start: string }[];
	login?: { email: string; password: string };
}

const options = JSON.parse(fs.readFileSync(process.argv[2], "utf8")) as LoadOptions;
let n = 0;
const run = crypto.randomBytes(3).toString("hex");

function nextBody(): string | undefined {
	n++;
	switch (options.body) {
		case "patient":
			return JSON.stringify({ name: `Bench Patient ${n}`, email: `bench.${run}.${n}@example.org`, address: "1 Load Street", dateOfBirth: "1980-01-01" });
		case "appointment":
			return JSON.stringify(options.slots![(n - 1) % options.slots!.length]);
		case "login":
			return JSON.stringify(options.login);
		default:
			return undefined;
	}
}

const instance = autocannon(
	{
		url: options.url,
		connections: options.connections,
		duration: options.duration,
		requests: [
			{
				method: options.method,
				setupRequest: req => ({
					...req,
					path: options.paths ? options.paths[n % options.paths.length] : req.path,
					headers: { "content-type": "application/json", ...(options.token && { authorization: `Bearer ${options.token}` }) },
					body: nextBody()
				})
			}
		]
	},
	(err, result) => {
		if (err) {
			console.error(err);
			process.exit(1);
		}
		const non2xx = result.non2xx + result.errors + result.timeouts;
		const cpu = process.cpuUsage();
		console.log(
			JSON.stringify({
				requests: result.requests.total,
				rps: result.requests.average,
				p50: result.latency.p50,
				p99: result.latency.p99,
				errors: non2xx,
				// This process's own CPU, start-up included: what generating the load cost the shared cores.
				loadCpuMs: (cpu.user + cpu.system) / 1000,
				statusCodes: result.statusCodeStats
			})
		);
	}
);
void instance;
