import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";

const LOCAL_SERVER = "postgres://postgres@127.0.0.1:5432/postgres";

async function reachable(url: string): Promise<boolean> {
	const client = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
	try {
		await client.connect();
		await client.end();
		return true;
	} catch {
		return false;
	}
}

/**
 * Picks the PostgreSQL server for the run (DATABASE_URL, the machine's server on
 * 5432, or an embedded one) and a database prefix no other run uses, so every
 * run works in throwaway databases.
 */
export default async function globalSetup(): Promise<void> {
	process.env.DATABASE_PREFIX = `medsync_test_${crypto.randomBytes(4).toString("hex")}`;
	if (process.env.DATABASE_URL) return;
	if (await reachable(LOCAL_SERVER)) {
		process.env.DATABASE_URL = LOCAL_SERVER;
		return;
	}
	process.env.DATA_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-test-"));
	process.env.EMBEDDED_POSTGRES_PORT ??= "54339";
	// Required only now: lib/config reads DATA_DIR and EMBEDDED_POSTGRES_PORT when first loaded.
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const { postgresServerUrl } = require("../../lib/postgres") as typeof import("../../lib/postgres");
	process.env.DATABASE_URL = await postgresServerUrl(message => console.log(message));
}
