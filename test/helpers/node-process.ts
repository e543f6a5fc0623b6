import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

const ROOT = path.resolve(__dirname, "../..");
const RUNNER = path.join(ROOT, "node_modules/moleculer/bin/moleculer-runner.js");

export interface NodeProcess {
	child: ChildProcess;
	output(): string;
	/** SIGTERM, then wait for the process to exit. */
	stop(): Promise<void>;
}

/** A free TCP port on the loopback interface. */
export async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const server = net.createServer();
		server.listen(0, "127.0.0.1", () => {
			const { port } = server.address() as net.AddressInfo;
			server.close(() => resolve(port));
		});
		server.on("error", reject);
	});
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

/** Retries `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 20_000, what = "condition"): Promise<T> {
	const deadline = Date.now() + timeoutMs;
	let lastError: unknown;
	while (Date.now() < deadline) {
		try {
			const value = await check();
			if (value !== undefined) return value;
		} catch (err) {
			lastError = err;
		}
		await new Promise(resolve => setTimeout(resolve, 200));
	}
	throw new Error(`Timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ""}`);
}
