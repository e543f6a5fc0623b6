import { Errors, ServiceBroker } from "moleculer";
import { Client, Pool } from "pg";
import { DatabaseUnavailableMiddleware, isDataRefusal, isDatabaseUnavailable, violatedExclusionConstraint, violatedUniqueConstraint } from "../../lib/infra/db-errors";
import { DatabaseUnavailableError, NotFoundError } from "../../lib/infra/errors";
import { freePort } from "../helpers/node-process";
import { tcpServer } from "../helpers/postgres-server";

/** The error pg gives when connecting to `port` fails. */
async function pgConnectError(port: number): Promise<unknown> {
	const client = new Client({ host: "127.0.0.1", port, user: "x", database: "x", connectionTimeoutMillis: 300 });
	return client.connect().then(
		() => client.end().then(() => undefined),
		(err: unknown) => err
	);
}

/** The error a pool's query gives when its connection to `port` fails, or when no connection frees up in time. */
async function poolError(port: number, { holdTheOnlyConnection = false } = {}): Promise<unknown> {
	const pool = new Pool({ host: "127.0.0.1", port, user: "x", database: "x", max: 1, connectionTimeoutMillis: 300 });
	pool.on("error", () => {});
	try {
		if (holdTheOnlyConnection) pool.connect().catch(() => {});
		return await pool.query("SELECT 1").then(() => undefined, (err: unknown) => err);
	} finally {
		await pool.end().catch(() => {});
	}
}

const withCode = (message: string, code: string, extra: object = {}) => Object.assign(new Error(message), { code, ...extra });

describe("a database out of reach, as each driver reports it", () => {
	test("a refused connection, from a client and through a pool", async () => {
		const closed = await freePort();
		const pgError = await pgConnectError(closed);
		expect(pgError).toMatchObject({ code: "ECONNREFUSED" });
		expect(isDatabaseUnavailable(pgError)).toBe(true);
		const pooled = await poolError(closed);
		expect(pooled).toMatchObject({ code: "ECONNREFUSED" });
		expect(isDatabaseUnavailable(pooled)).toBe(true);
	});

	test("a server that never answers (pg's connect timeout), and one that hangs up at once", async () => {
		const silent = await tcpServer(0, () => {});
		const hangsUp = await tcpServer(0, socket => socket.destroy());
		try {
			const timedOut = await pgConnectError(silent.port);
			expect(timedOut).toMatchObject({ message: "timeout expired" });
			expect(isDatabaseUnavailable(timedOut)).toBe(true);
			const poolTimedOut = await poolError(silent.port);
			expect(poolTimedOut).toMatchObject({ message: expect.stringMatching(/timeout/) });
			expect(isDatabaseUnavailable(poolTimedOut)).toBe(true);
			// The only connection stuck connecting: the next statement's wait for one runs out too.
			const noneFree = await poolError(silent.port, { holdTheOnlyConnection: true });
			expect(noneFree).toMatchObject({ message: "timeout exceeded when trying to connect" });
			expect(isDatabaseUnavailable(noneFree)).toBe(true);
			const terminated = await pgConnectError(hangsUp.port);
			expect(terminated).toMatchObject({ message: "Connection terminated unexpectedly" });
			expect(isDatabaseUnavailable(terminated)).toBe(true);
		} finally {
			silent.close();
			hangsUp.close();
		}
	});

	test("a server shutting down, crashed, starting, or full; a connection exception of class 08", () => {
		for (const code of ["57P01", "57P02", "57P03", "53300", "08006", "08001", "08P01"]) {
			const err = withCode("server says no", code);
			expect(isDatabaseUnavailable(err)).toBe(true);
			expect(isDatabaseUnavailable(new Error("a statement failed", { cause: err }))).toBe(true);
		}
		expect(isDatabaseUnavailable(new Error("wrapped", { cause: new Error("Client was closed and is not queryable") }))).toBe(true);
	});

	test("anything else is not an outage: bad data, a wrong password, a client's mistake, a bug", () => {
		const unique = withCode("duplicate key value violates unique constraint", "23505", { constraint: "patients_email_key" });
		const denied = withCode("password authentication failed", "28P01");
		for (const err of [unique, withCode("invalid input syntax for type uuid", "22P02"), denied, new NotFoundError("Patient", "x"), new TypeError("x is undefined"), undefined, null, "text"]) {
			expect(isDatabaseUnavailable(err)).toBe(false);
		}
	});
});

describe("other PostgreSQL errors", () => {
	test("a unique or exclusion violation names its constraint", () => {
		const unique = withCode("duplicate key", "23505", { constraint: "patients_email_key" });
		expect(violatedUniqueConstraint(unique)).toBe("patients_email_key");
		expect(violatedUniqueConstraint(withCode("x", "23P01"))).toBeUndefined();
		const overlap = withCode("conflicting key value violates exclusion constraint", "23P01", { constraint: "appointments_patient_no_overlap" });
		expect(violatedExclusionConstraint(overlap)).toBe("appointments_patient_no_overlap");
		expect(violatedExclusionConstraint(unique)).toBeUndefined();
	});

	test("data refusals are SQLSTATE classes 22 and 23 only", () => {
		expect(["22P02", "22021", "23505", "23P01"].map(isDataRefusal)).toEqual([true, true, true, true]);
		expect(["57P01", "08006", "42P01", 23505, undefined].map(isDataRefusal)).toEqual([false, false, false, false, false]);
	});
});

describe("DatabaseUnavailableMiddleware", () => {
	const warnings: unknown[][] = [];
	let broker: ServiceBroker;

	beforeAll(async () => {
		broker = new ServiceBroker({ logger: false, middlewares: [DatabaseUnavailableMiddleware()] });
		broker.createService({
			name: "store",
			actions: {
				refused: () => Promise.reject(withCode("connect ECONNREFUSED 127.0.0.1:5432", "ECONNREFUSED")),
				shutDown: () => Promise.reject(new Error("terminating", { cause: withCode("terminating", "57P01") })),
				missing: () => Promise.reject(new NotFoundError("Patient", "x")),
				broken: () => Promise.reject(new TypeError("x is undefined"))
			},
			created() {
				this.logger.warn = (...args: unknown[]) => warnings.push(args);
			}
		});
		await broker.start();
	});

	afterAll(() => broker.stop());

	test("an action that cannot reach its database fails with a retryable 503, the driver's error as its cause", async () => {
		for (const action of ["store.refused", "store.shutDown"]) {
			const err = await broker.call(action).catch((e: unknown) => e);
			expect(err).toBeInstanceOf(DatabaseUnavailableError);
			expect(err).toMatchObject({ code: 503, type: "DATABASE_UNAVAILABLE", retryable: true });
			expect((err as Error).cause).toBeInstanceOf(Error);
		}
		// Both within the warning window: one line, naming the action and the cause.
		expect(warnings).toHaveLength(1);
		expect(warnings[0]).toEqual([
			expect.objectContaining({ action: "store.refused", error: expect.objectContaining({ code: "ECONNREFUSED" }) }),
			"The database is unreachable; answering 503"
		]);
	});

	test("every other error passes through as it was", async () => {
		await expect(broker.call("store.missing")).rejects.toBeInstanceOf(NotFoundError);
		const broken = await broker.call("store.broken").catch((e: unknown) => e);
		expect(broken).toBeInstanceOf(TypeError);
		expect(broken).not.toBeInstanceOf(Errors.MoleculerError);
	});
});
