import { setTimeout as sleep } from "node:timers/promises";
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { Database } from "../lib/infra/database";
import { errorFields } from "../lib/infra/log-fields";
import { registerPoolGauges } from "../lib/infra/metrics";
import { type Migration, migrate } from "../lib/infra/migrations";
import { databaseName, ensureDatabase, postgresServerUrl, withDatabase } from "../lib/infra/postgres";
import type { MixinSchema } from "../types/mixin";
import { HealthMixin, registerHealthCheck } from "./health.mixin";

/** What DbMixin adds to a service's `this`. */
export interface DbVars {
	/** The service's database: its one way to PostgreSQL (lib/infra/database.ts), open once the service has started. */
	db: Database;
	/** The service database's URL, for a connection of its own where PostgreSQL needs one (LISTEN). */
	databaseUrl: string;
}

export type DbThis = Service & DbVars;

/** A database not there yet at start (a container starting beside it) is waited for, trying again this often. */
const CONNECT_RETRY_MS = 1000;

/**
 * Gives a service its own PostgreSQL database (`<prefix>_<service>`): created on
 * start if missing, brought up to date by `migrations` (the schema comes only
 * from them), then reached as `this.db`. A database not reachable at start is
 * waited for. List it last in a service's `mixins`: Moleculer starts the last
 * mixin first and stops it last, so the database is open before the other
 * mixins' work (Kafka consumers, a gRPC server) begins, and after it has ended.
 * A database set on `this.db` before start (a broker-level test's
 * stand-in, test/helpers/service-broker.ts) is used as it is: nothing is
 * created, migrated or connected.
 */
export function DbMixin(service: string, migrations: readonly Migration[]): MixinSchema {
	const schema: ServiceSchema<ServiceSettingSchema, Record<string, never>, Partial<DbVars> & { dbStopping?: AbortController; dbGaugesOff?: () => void }> = {
		name: "db",
		mixins: [HealthMixin()],

		created() {
			registerHealthCheck(this, "database", async () => {
				if (!this.db) throw new Error("not connected yet");
				await this.db.query({ text: "SELECT 1", values: [] });
			});
		},

		async started() {
			if (this.db) return;
			this.dbStopping = new AbortController();
			for (;;) {
				try {
					const server = await postgresServerUrl(this.logger);
					const database = databaseName(service);
					await ensureDatabase(server, database);
					this.databaseUrl = withDatabase(server, database);
					const applied = await migrate(this.databaseUrl, migrations);
					if (applied.length) this.logger.info(`Applied migrations ${applied.join(", ")} to ${database}`);
					break;
				} catch (err) {
					this.logger.warn(errorFields(err), `Cannot reach the ${service} database yet; trying again in ${CONNECT_RETRY_MS} ms`);
					await sleep(CONNECT_RETRY_MS, undefined, { signal: this.dbStopping.signal });
				}
			}
			this.db = new Database(this.databaseUrl);
			const db = this.db;
			this.dbGaugesOff = registerPoolGauges(this.broker.metrics, service, () => db.poolStats());
		},

		async stopped() {
			this.dbGaugesOff?.();
			this.dbStopping?.abort();
			await this.db?.end();
			// Started again, the service opens its database again.
			this.db = undefined;
		}
	};
	return schema;
}
