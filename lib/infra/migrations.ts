import crypto from "node:crypto";
import { Client } from "pg";

/** One versioned schema change. Applied migrations are never edited: add a new version instead. */
export interface Migration {
	version: number;
	name: string;
	sql: string;
}

function checksum(migration: Migration): string {
	return crypto.createHash("sha256").update(migration.sql).digest("hex");
}

/**
 * Applies the pending migrations in version order, in one transaction, under an
 * advisory lock so that nodes starting together apply each migration once.
 * Returns the versions it applied.
 */
export async function migrate(databaseUrl: string, migrations: readonly Migration[]): Promise<number[]> {
	const ordered = [...migrations].sort((a, b) => a.version - b.version);
	const client = new Client({ connectionString: databaseUrl });
	await client.connect();
	try {
		await client.query("BEGIN");
		await client.query("SELECT pg_advisory_xact_lock(hashtext('medsync.schema_migrations'))");
		await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
			version integer PRIMARY KEY,
			name text NOT NULL,
			checksum text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`);
		const { rows } = await client.query<{ version: number; checksum: string }>(
			"SELECT version, checksum FROM schema_migrations"
		);
		const applied = new Map(rows.map(r => [r.version, r.checksum]));

		const done: number[] = [];
		for (const migration of ordered) {
			const known = applied.get(migration.version);
			if (known !== undefined) {
				if (known !== checksum(migration)) {
					throw new Error(
						`Migration ${migration.version} (${migration.name}) was changed after it was applied; add a new migration instead`
					);
				}
				continue;
			}
			await client.query(migration.sql);
			await client.query("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", [
				migration.version,
				migration.name,
				checksum(migration)
			]);
			done.push(migration.version);
		}
		await client.query("COMMIT");
		return done;
	} catch (err) {
		await client.query("ROLLBACK").catch(() => {});
		throw err;
	} finally {
		await client.end();
	}
}
