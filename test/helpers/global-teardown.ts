import { Client } from "pg";

import { type ChildProcess, spawnSync } from "node:child_process";

/** Drops the run's throwaway databases, then stops the servers setup started. */
export default async function globalTeardown(): Promise<void> {
	(globalThis as { natsServer?: ChildProcess }).natsServer?.kill();
	if (process.env.KAFKA_TEST_OWNED) {
		spawnSync("scripts/kafka.sh", ["stop"], { env: { ...process.env, DATA_DIR: process.env.KAFKA_TEST_DATA_DIR, KAFKA_PORT: "19092" } });
	}
	const prefix = process.env.DATABASE_PREFIX;
	const url = process.env.DATABASE_URL;
	if (prefix?.startsWith("medsync_test_") && url) {
		const client = new Client({ connectionString: url });
		await client.connect();
		const { rows } = await client.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE $1", [
			`${prefix}\\_%`
		]);
		for (const { datname } of rows) {
			await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(datname)} WITH (FORCE)`);
		}
		await client.end();
	}
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const { stopEmbeddedPostgres } = require("../../lib/infra/postgres") as typeof import("../../lib/infra/postgres");
	await stopEmbeddedPostgres();
}
