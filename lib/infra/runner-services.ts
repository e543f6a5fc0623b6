import fs from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * SERVICES as moleculer-runner should read it. The runner takes an entry that
 * names a folder as "every *.service.js in that folder" before it tries
 * `<entry>.service.js`; services/<name>/ holds the modules of the service in
 * services/<name>.service.ts, so SERVICES=auth would load nothing (with only a
 * warning). An entry with a service file of its name is spelled out as that
 * file; any other entry (a folder, a glob, `!` to skip) is left as it is.
 * `serviceDir` is resolved as the runner resolves SERVICEDIR.
 */
export function runnerServices(services: string, serviceDir = ""): string {
	const dir = path.resolve(serviceDir);
	return services
		.split(",")
		.map(entry => {
			const skip = entry.trim().startsWith("!") ? "!" : "";
			const file = `${entry.trim().slice(skip.length)}.service.js`;
			return fs.existsSync(path.resolve(dir, file)) ? `${skip}${file}` : entry;
		})
		.join(",");
}

/**
 * A node's ID, naming the services it runs (as SERVICES names them), so that
 * an operator reading `nodes` in the REPL or a log line knows which process
 * it is: `patients-<host>-<pid>`, or `medsync-<host>-<pid>` for all in one.
 */
export function nodeIdFor(services: string | undefined, host = os.hostname(), pid = process.pid): string {
	return `${nodeName(services) ?? "medsync"}-${host}-${pid}`;
}

/** The name a node's spans go under (OpenTelemetry's `service.name`): `medsync-patients+auth`, or `medsync` for all in one. */
export function tracingServiceFor(services: string | undefined): string {
	const name = nodeName(services);
	return name ? `medsync-${name}` : "medsync";
}

function nodeName(services: string | undefined): string | undefined {
	const names = (services ?? "")
		.split(",")
		.map(entry => entry.trim())
		// Skipped services and globs name nothing the node runs for sure.
		.filter(entry => entry && !entry.startsWith("!") && !/[*?]/.test(entry))
		.map(entry => path.basename(entry).replace(/\.service\.[jt]s$/, "").replace(/[^\w-]+/g, "_"));
	return names.length ? names.join("+") : undefined;
}
