import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

// Shared with the bench and the stack script; tests import them from here as before.
export { eventually, freePort } from "../../lib/tooling/network";

const ROOT = path.resolve(__dirname, "../..");
const RUNNER = path.join(ROOT, "node_modules/moleculer/bin/moleculer-runner.js");

export interface NodeProcess {
	child: ChildProcess;
	output(): string;
	/** SIGTERM, then wait for the process to exit. */
	stop(): Promise<void>;
}

/**
 * Starts a MedSync node the way production does: moleculer-runner on the built
 * code in dist/, running the services named in `services`.
 */
export function startNode(services: string[], env: Record<string, string>): NodeProcess {
	if (!fs.existsSync(path.join(ROOT, "dist/moleculer.config.js"))) {
		throw new Error("dist/ is missing: run `npm run build` (npm test does it first)");
	}
	const child = spawn(process.execPath, [RUNNER, "--config", "dist/moleculer.config.js"], {
		cwd: ROOT,
		env: { LOG_LEVEL: "warn", ...process.env, ...env, SERVICEDIR: "dist/services", SERVICES: services.join(",") },
		stdio: ["ignore", "pipe", "pipe"]
	});
	let output = "";
	child.stdout?.on("data", chunk => (output += chunk));
	child.stderr?.on("data", chunk => (output += chunk));
	const exited = new Promise<void>(resolve => child.once("exit", () => resolve()));
	return {
		child,
		output: () => output,
		async stop() {
			if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
			await exited;
		}
	};
}
