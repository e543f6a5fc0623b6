import type { Service, ServiceSchema } from "moleculer";
import DbService from "moleculer-db";
import SqlAdapter from "moleculer-db-adapter-sequelize";
import type { Model, ModelAttributes, ModelOptions, ModelStatic, Sequelize } from "sequelize";
import { config } from "../lib/config";
import { type Migration, migrate } from "../lib/migrations";
import { CONNECT_TIMEOUT_MS, databaseName, ensureDatabase, postgresServerUrl, withDatabase } from "../lib/postgres";
import { HealthMixin, registerHealthCheck } from "./health.mixin";
import { ACQUIRE_TIMEOUT_MS, Database } from "../lib/database";

export interface ModelDefinition {
	name: string;
	define: ModelAttributes;
	options?: ModelOptions;
}

/** What a service mixing in DbMixin can use on `this`. */
export interface DbVars {
	/** The service database's URL, known once connected (for connections of its own, e.g. LISTEN). */
	databaseUrl: string;
	adapter: {
		model: ModelStatic<Model>;
		db: Sequelize;
		opts: unknown[];
		connect(): Promise<void>;
	};
	/** The service's database: its one way to PostgreSQL (lib/database.ts), open once the service has started. */
	db: Database;
}


/** moleculer-db's generic CRUD actions, which each service replaces with its own validated ones. */
const GENERIC_ACTIONS = ["find", "count", "list", "create", "insert", "get", "update", "remove"] as const;

function sequelizeOptions(databaseUrl: string) {
	const url = new URL(databaseUrl);
	return {
		dialect: "postgres",
		host: url.hostname,
		port: Number(url.port || 5432),
		database: decodeURIComponent(url.pathname.slice(1)),
		username: decodeURIComponent(url.username),
		password: decodeURIComponent(url.password),
		logging: false,
		// The schema belongs to the versioned migrations; the adapter must never sync it.
		noSync: true,
		// A server that is gone refuses at once, or (a host cut off) never answers: pg gives up on connecting after this.
		// Keepalive lets TCP find a connection whose server vanished without a word, which nothing else would.
		dialectOptions: { connectionTimeoutMillis: CONNECT_TIMEOUT_MS, keepAlive: true, keepAliveInitialDelayMillis: 10_000 },
		// A new backend starts with cold caches and costs tens of ms; connections opened in a burst stay for the next one.
		pool: { max: config.databasePoolMax, min: 1, idle: 300_000, acquire: ACQUIRE_TIMEOUT_MS }
	};
}

/**
 * Gives a service its own PostgreSQL database (`<prefix>_<service>`): created on
 * start if missing, brought up to date by `migrations`, then reached through
 * moleculer-db's Sequelize adapter as `this.adapter.model` and `this.adapter.db`.
 */
export function DbMixin(service: string, model: ModelDefinition, migrations: readonly Migration[]): Partial<ServiceSchema> {
	return {
		mixins: [DbService, HealthMixin()],
		// Connection options are only known at start (the embedded server may not run yet); see connect().
		adapter: new SqlAdapter({}),
		model,
		actions: Object.fromEntries(GENERIC_ACTIONS.map(name => [name, false])),
		created(this: Service & DbVars) {
			registerHealthCheck(this, "database", async () => {
				if (!this.db) throw new Error("not connected yet");
				await this.db.query({ text: "SELECT 1", values: [] });
			});
		},
		methods: {
			/** Replaces moleculer-db's connect: database and schema first, then the adapter. */
			async connect(this: Service & DbVars) {
				const server = await postgresServerUrl(this.logger);
				const database = databaseName(service);
				await ensureDatabase(server, database);
				const url = withDatabase(server, database);
				const applied = await migrate(url, migrations);
				if (applied.length) this.logger.info(`Applied migrations ${applied.join(", ")} to ${database}`);
				this.databaseUrl = url;
				this.adapter.opts = [sequelizeOptions(url)];
				await this.adapter.connect();
				this.db = new Database(url);
			}
		},
		async stopped(this: Service & DbVars) {
			await this.db?.end();
		}
	} as unknown as Partial<ServiceSchema>;
}
