import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { eventually } from "../helpers/node-process";

/**
 * The pieces `npm run dev` and the build scripts stand on. A build that is up
 * to date is skipped (tsc -b with dist/.tsbuildinfo, and scripts/proto.sh),
 * and moleculer-runner's `--hot`, as scripts/dev.ts runs it, reloads a service
 * whose module in its services/<name>/ folder changed. Running the whole of
 * `npm run dev` and waiting for a full watch compile of the project would
 * test tsc's watch mode rather than ours, and slowly on a busy machine.
 */
const ROOT = path.resolve(__dirname, "../..");
const RUNNER = path.join(ROOT, "node_modules/moleculer/bin/moleculer-runner.js");

const mtimes = (files: string[]) => files.map(file => fs.statSync(file).mtimeMs);

describe("an up-to-date build is skipped", () => {
	// npm test has just built (pretest), so nothing is newer than the build.
	test("tsc -b finds the project up to date and writes nothing", () => {
		const outputs = [path.join(ROOT, "dist/.tsbuildinfo"), path.join(ROOT, "dist/services/patients.service.js"), path.join(ROOT, "dist/moleculer.config.js")];
		const before = mtimes(outputs);
		const build = spawnSync(process.execPath, [path.join(ROOT, "node_modules/typescript/bin/tsc"), "-b", "tsconfig.build.json", "--verbose"], { cwd: ROOT, encoding: "utf8" });
		expect(build.status).toBe(0);
		expect(build.stdout).toMatch(/Project 'tsconfig.build.json' is up to date/);
		expect(mtimes(outputs)).toEqual(before);
	});

	test("the proto step generates only when missing or older than a .proto file", () => {
		// In a copy: generating in place would rewrite the code other suites are importing.
		const copy = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-proto-"));
		try {
			for (const item of ["proto/patient_event.proto", "proto/billing_service.proto", "buf.gen.yaml", "buf.yaml", "scripts/proto.sh"]) {
				fs.mkdirSync(path.dirname(path.join(copy, item)), { recursive: true });
				fs.copyFileSync(path.join(ROOT, item), path.join(copy, item));
			}
			fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(copy, "node_modules"));
			const proto = () => spawnSync(path.join(copy, "scripts/proto.sh"), { cwd: copy, encoding: "utf8", env: { ...process.env, PATH: `${path.join(ROOT, "node_modules/.bin")}:${process.env.PATH}` } });
			// Touched after each generation (buf leaves a file whose code is the same as it was).
			const stamp = path.join(copy, "proto/generated/.stamp");
			// A fresh clone: nothing generated yet.
			expect(proto()).toMatchObject({ status: 0 });
			expect(fs.existsSync(path.join(copy, "proto/generated/patient_event.ts"))).toBe(true);
			const first = mtimes([stamp]);
			expect(proto()).toMatchObject({ status: 0 });
			expect(mtimes([stamp])).toEqual(first);
			// A .proto file changed since: generated again.
			fs.utimesSync(path.join(copy, "proto/patient_event.proto"), new Date(), new Date(Date.now() + 2000));
			expect(proto()).toMatchObject({ status: 0 });
			expect(mtimes([stamp])[0]).toBeGreaterThan(first[0]);
		} finally {
			fs.rmSync(copy, { recursive: true, force: true });
		}
	});
});

describe("moleculer-runner --hot, as npm run dev runs it", () => {
	let dir: string;
	let runner: ChildProcess | undefined;

	beforeEach(() => {
		dir = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-hot-"));
	});

	afterEach(async () => {
		if (runner && runner.exitCode === null) {
			const exited = new Promise(resolve => runner!.once("exit", resolve));
			runner.kill("SIGTERM");
			await exited;
		}
		fs.rmSync(dir, { recursive: true, force: true });
	});

	test("a change to a module in a service's folder reloads that service, and its answer changes", async () => {
		// A service laid out as MedSync's are: services/<name>.service.js and its modules in services/<name>/.
		fs.mkdirSync(path.join(dir, "services/greeter"), { recursive: true });
		const module = path.join(dir, "services/greeter/words.js");
		fs.writeFileSync(module, 'module.exports = { word: "first" };\n');
		fs.writeFileSync(
			path.join(dir, "services/greeter.service.js"),
			'const { word } = require("./greeter/words");\nmodule.exports = { name: "greeter", actions: { word: () => word } };\n'
		);
		fs.writeFileSync(path.join(dir, "moleculer.config.js"), 'module.exports = { logger: { type: "Console", options: { level: "info" } } };\n');
		let out = "";
		runner = spawn(process.execPath, [RUNNER, "--config", "moleculer.config.js", "--repl", "--hot", "services"], { cwd: dir, stdio: ["pipe", "pipe", "pipe"] });
		runner.stdout!.on("data", chunk => (out += chunk));
		runner.stderr!.on("data", chunk => (out += chunk));
		const ask = async (expected: string) =>
			eventually(
				async () => {
					runner!.stdin!.write("call greeter.word\n");
					await new Promise(resolve => setTimeout(resolve, 300));
					return out.includes(`'${expected}'`) ? true : undefined;
				},
				30_000,
				`the greeter to answer ${expected}`
			);
		await ask("first");
		fs.writeFileSync(module, 'module.exports = { word: "second" };\n');
		await ask("second");
		expect(out).toContain("Hot reload 'greeter' service");
		runner.stdin!.end("quit\n");
	}, 60_000);
});
