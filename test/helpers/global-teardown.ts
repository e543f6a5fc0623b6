import { Client } from "pg";
import { stopRunServers } from "./servers";

/** Stops the servers the run's suites started, drops the run's throwaway databases, then stops the PostgreSQL setup started. */
export default async function globalTeardown(): Promise<void> {
	await stopRunServers();
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
