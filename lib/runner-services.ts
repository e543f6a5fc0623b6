import { existsSync } from "node:fs";
import path from "node:path";

/**
 * SERVICES as moleculer-runner should read it. The runner takes a bare name
 * (`SERVICES=appointments`) for the folder of that name when there is one,
 * and loads only the `*.service.js` files inside it; but that folder holds the
 * service's own modules (services/appointments/), its schema sitting beside it
 * (services/appointments.service.ts). So each bare name whose service file
 * exists is given as that file, and SERVICES keeps meaning the services it names.
 */
export function runnerServices(services: string, serviceDir: string): string {
	return services
		.split(",")
		.map(entry => {
			const name = entry.trim();
			return /^[\w-]+$/.test(name) && existsSync(path.resolve(serviceDir, `${name}.service.js`)) ? `${name}.service.js` : entry;
		})
		.join(",");
}
