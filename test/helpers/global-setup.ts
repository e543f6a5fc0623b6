import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { canConnect } from "../../lib/infra/postgres-probe";

const LOCAL_SERVER = "postgres://postgres@127.0.0.1:5432/postgres";

/**
 * Picks the PostgreSQL server for the run (DATABASE_URL, the machine's server on
 * 5432, or an embedded one), which nearly every suite uses, and a database prefix
 * no other run uses, so every run works in throwaway databases. NATS and Kafka
 * are left to the suites that use them (test/helpers/servers.ts), which agree
 * through TEST_RUN_DIR.
 */
export default async function globalSetup(): Promise<void> {
	process.env.TEST_RUN_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-test-run-"));
	process.env.DATABASE_PREFIX = `medsync_test_${crypto.randomBytes(4).toString("hex")}`;
	process.env.ADMIN_EMAIL = "admin@test.medsync.local";
	process.env.ADMIN_PASSWORD = crypto.randomBytes(18).toString("base64url");
	if (process.env.DATABASE_URL) return;
	if (await canConnect(LOCAL_SERVER)) {
		process.env.DATABASE_URL = LOCAL_SERVER;
		return;
	}
	process.env.DATA_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-test-"));
	// Run as root, PostgreSQL runs as the postgres user, who must be able to enter the directory.
	fs.chmodSync(process.env.DATA_DIR, 0o755);
	process.env.EMBEDDED_POSTGRES_PORT ??= "54339";
	// Required only now: lib/config reads DATA_DIR and EMBEDDED_POSTGRES_PORT when first loaded.
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	const { postgresServerUrl } = require("../../lib/infra/postgres") as typeof import("../../lib/infra/postgres");
	process.env.DATABASE_URL = await postgresServerUrl(console);
}
