import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { databaseName, withDatabase } from "../../lib/infra/postgres";
import { request } from "../helpers/cluster";
import { eventually, freePort } from "../helpers/node-process";

/**
 * `npm run dev` and the pieces it and the build scripts stand on. A build that
 * is up to date is skipped (tsc -b with dist/.tsbuildinfo, and
 * scripts/proto.sh); moleculer-runner's `--hot`, as scripts/dev.ts runs it,
 * reloads a service whose module in its services/<name>/ folder changed (on a
 * service of its own in a temporary folder: editing MedSync's sources would
 * disturb the suites running beside this one, and wait on a watch compile of
 * the whole project); and `npm run dev` itself runs MedSync with the REPL's
 * commands and audits a read made there.
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

describe("npm run dev", () => {
	test("runs MedSync in one process with the REPL's own commands, and audits a patient read there under the operator", async () => {
		const [port, grpcPort] = [await freePort(), await freePort()];
		const dev = spawn(process.execPath, [path.join(ROOT, "dist/scripts/dev.js")], {
			cwd: ROOT,
			env: { ...process.env, PORT: String(port), BILLING_GRPC_PORT: String(grpcPort), BILLING_GRPC_URL: `127.0.0.1:${grpcPort}`, METRICS_PORT: "off", LOG_LEVEL: "warn" },
			stdio: ["pipe", "pipe", "pipe"]
		});
		let out = "";
		dev.stdout.on("data", chunk => (out += chunk));
		dev.stderr.on("data", chunk => (out += chunk));
		const exited = new Promise<number | null>(resolve => dev.once("exit", code => resolve(code)));
		try {
			await eventually(async () => ((await request(`http://127.0.0.1:${port}`, "GET", "/ready")).status === 200 ? true : undefined), 90_000, "npm run dev to be ready");
			const patientId = crypto.randomUUID();
			dev.stdin.write("help\n");
			dev.stdin.write(`call patients.get --id ${patientId}\n`);
			await eventually(async () => (/outbox \[options\] \[replay\]/.test(out) && /audit-backlog/.test(out) && /kafka-lag/.test(out) && /seed \[options\]/.test(out) ? true : undefined), 20_000, "the REPL's help");
			const audit = new Client({ connectionString: withDatabase(process.env.DATABASE_URL!, databaseName("audit")) });
			await audit.connect();
			try {
				const row = await eventually(async () => (await audit.query("SELECT action, outcome, status, operator FROM audit_events WHERE patient_id = $1", [patientId])).rows[0], 20_000, "the REPL's read in the audit trail");
				// No such patient: the attempt is recorded all the same.
				expect(row).toEqual({ action: "patients.get", outcome: "error", status: 404, operator: `${os.userInfo().username}@${os.hostname()}` });
			} finally {
				await audit.end();
			}
			dev.stdin.end("quit\n");
			expect(await exited).toBe(0);
		} finally {
			if (dev.exitCode === null) dev.kill("SIGTERM");
			await exited;
		}
		expect(out).not.toMatch(/error TS/);
	}, 150_000);
});
