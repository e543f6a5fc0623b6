import { type ChildProcess, spawn } from "node:child_process";
import path from "node:path";
import { NODE_FLAGS } from "../lib/infra/node-flags";
import { PROJECT_ROOT } from "../lib/infra/paths";

/**
 * `npm run dev` (after an incremental build): every service in one process,
 * with the REPL, and a change to the source live in a couple of seconds.
 * `tsc -b --watch` recompiles only what changed into dist/, and
 * moleculer-runner's `--hot` reloads each service whose module tree (its
 * folder services/<name>/, lib/, mixins/) holds a changed file. A change to
 * moleculer.config.ts, a migration the running database lacks, or a .proto file
 * needs a restart (Ctrl-C, `npm run dev`).
 */

const RUNNER = path.join(PROJECT_ROOT, "node_modules/moleculer/bin/moleculer-runner.js");
const TSC = path.join(PROJECT_ROOT, "node_modules/typescript/bin/tsc");

/** The compiler's report of a recompilation: only its errors, so that the REPL's prompt is not drowned. */
function compilerErrors(chunk: Buffer): void {
	for (const line of chunk.toString().split("\n")) {
		if (/error TS\d+|Found [1-9]\d* errors?/.test(line)) console.error(`[tsc] ${line.trim()}`);
	}
}

function main(): void {
	const compiler = spawn(process.execPath, [TSC, "-b", "tsconfig.build.json", "--watch", "--preserveWatchOutput"], {
		cwd: PROJECT_ROOT,
		stdio: ["ignore", "pipe", "pipe"]
	});
	compiler.stdout.on("data", compilerErrors);
	compiler.stderr.on("data", compilerErrors);

	const runner: ChildProcess = spawn(process.execPath, [...NODE_FLAGS, RUNNER, "--config", "dist/moleculer.config.js", "--repl", "--hot"], {
		cwd: PROJECT_ROOT,
		env: { ...process.env, SERVICEDIR: "dist/services", LOG_FORMAT: process.env.LOG_FORMAT ?? "pretty" },
		stdio: "inherit"
	});
	// The REPL's `quit` (or Ctrl-D, or a crash) ends the node: the compiler goes with it.
	runner.once("exit", code => {
		compiler.kill("SIGTERM");
		process.exitCode = code ?? 1;
	});
	// Ctrl-C reaches the whole terminal's group; a SIGTERM only this process: pass it on.
	process.once("SIGTERM", () => runner.kill("SIGTERM"));
	process.on("SIGINT", () => {});
}

main();
