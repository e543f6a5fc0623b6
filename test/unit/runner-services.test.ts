import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { nodeIdFor, runnerServices, tracingServiceFor } from "../../lib/infra/runner-services";

describe("SERVICES for moleculer-runner", () => {
	let dir: string;

	beforeAll(() => {
		dir = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-services-"));
		// A service with a folder of modules beside its file, one without, and a folder of services.
		fs.mkdirSync(path.join(dir, "auth"));
		fs.writeFileSync(path.join(dir, "auth.service.js"), "");
		fs.writeFileSync(path.join(dir, "audit.service.js"), "");
		fs.mkdirSync(path.join(dir, "group"));
		fs.writeFileSync(path.join(dir, "group", "a.service.js"), "");
	});

	afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

	test("a name with a service file becomes that file, so a folder of the same name does not shadow it", () => {
		expect(runnerServices("auth,audit", dir)).toBe("auth.service.js,audit.service.js");
		expect(runnerServices(" auth , !audit", dir)).toBe("auth.service.js,!audit.service.js");
	});

	test("folders, globs and unknown names are left for the runner to read as before", () => {
		expect(runnerServices("group,**/a.service.js,nothing", dir)).toBe("group,**/a.service.js,nothing");
	});

	test("a relative SERVICEDIR is read from the working directory, as the runner reads it", () => {
		expect(runnerServices("auth", path.relative(process.cwd(), dir))).toBe("auth.service.js");
		expect(runnerServices("auth", "")).toBe("auth");
	});
});

describe("node IDs", () => {
	test("name the services a node runs, then its host and pid", () => {
		expect(nodeIdFor("patients", "vm", 42)).toBe("patients-vm-42");
		expect(nodeIdFor("auth.service.js, audit,!billing", "vm", 42)).toBe("auth+audit-vm-42");
		expect(nodeIdFor("dist/services/**/*.service.js", "vm", 42)).toBe("medsync-vm-42");
		expect(nodeIdFor(undefined, "vm", 42)).toBe("medsync-vm-42");
	});

	test("a node's spans go under medsync-<its services>, or medsync for all in one", () => {
		expect(tracingServiceFor("patients,auth,audit")).toBe("medsync-patients+auth+audit");
		expect(tracingServiceFor("auth.service.js, !billing")).toBe("medsync-auth");
		expect(tracingServiceFor(undefined)).toBe("medsync");
	});
});
