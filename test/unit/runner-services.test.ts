import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { runnerServices } from "../../lib/runner-services";

describe("SERVICES for moleculer-runner", () => {
	let dir: string;
	beforeAll(() => {
		dir = mkdtempSync(path.join(os.tmpdir(), "services-"));
		// A service with a folder of modules beside it, and one without.
		writeFileSync(path.join(dir, "appointments.service.js"), "");
		mkdirSync(path.join(dir, "appointments"));
		writeFileSync(path.join(dir, "api.service.js"), "");
	});
	afterAll(() => rmSync(dir, { recursive: true }));

	test("a bare name whose service file exists is given as that file, not as the folder of the same name", () => {
		expect(runnerServices("appointments", dir)).toBe("appointments.service.js");
		expect(runnerServices("api, appointments", dir)).toBe("api.service.js,appointments.service.js");
	});

	test("anything else reaches the runner as it was: unknown names, exclusions, npm modules, paths and globs", () => {
		for (const services of ["billing", "!appointments", "npm:moleculer-x", "extra/other.service.js", "*.service.js"]) {
			expect(runnerServices(services, dir)).toBe(services);
		}
	});
});
