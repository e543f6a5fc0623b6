import fs from "node:fs";
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
