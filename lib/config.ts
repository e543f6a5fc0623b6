import path from "node:path";

/**
 * The one place that reads the environment. Every setting MedSync has is here,
 * typed, with its default; the README's configuration table mirrors this file.
 */
export interface Config {
	/** HTTP port of the API gateway. */
	port: number;
	/** Moleculer transporter URL (e.g. nats://127.0.0.1:4222); unset runs every service in one process. */
	transporter: string | undefined;
	/** Moleculer namespace: nodes only see nodes of the same namespace on a shared transporter. */
	namespace: string;
	logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
	/** PostgreSQL server URL; each service gets its own database on it. Unset starts an embedded server. */
	databaseUrl: string | undefined;
	/** Service databases are named `<prefix>_<service>`. */
	databasePrefix: string;
	databasePoolMax: number;
	/** Where development state (embedded PostgreSQL, generated secrets) is kept. */
	dataDir: string;
	embeddedPostgresPort: number;
	/** Largest accepted JSON request body, in body-parser notation. */
	bodyLimit: string;
	/** Allowed CORS origins; "*" allows any. */
	corsOrigins: string[];
	/** IANA timezone of the clinic: what "today" means for register dates and birth dates. */
	clinicTimezone: string;
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace"] as const;

function integer(env: Env, name: string, fallback: number): number {
	const raw = env[name];
	if (raw === undefined || raw === "") return fallback;
	const value = Number(raw);
	if (!Number.isInteger(value) || value < 0) {
		throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
	}
	return value;
}

function text(env: Env, name: string): string | undefined {
	const raw = env[name]?.trim();
	return raw ? raw : undefined;
}

function logLevel(env: Env): Config["logLevel"] {
	const raw = text(env, "LOG_LEVEL") ?? "info";
	const level = LOG_LEVELS.find(l => l === raw);
	if (!level) throw new Error(`LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got "${raw}"`);
	return level;
}

function databasePrefix(env: Env): string {
	const prefix = text(env, "DATABASE_PREFIX") ?? "medsync";
	// The prefix becomes part of a database identifier, so keep it to what needs no quoting.
	if (!/^[a-z_][a-z0-9_]{0,40}$/.test(prefix)) {
		throw new Error(`DATABASE_PREFIX must match [a-z_][a-z0-9_]*, got "${prefix}"`);
	}
	return prefix;
}

function timezone(env: Env): string {
	const zone = text(env, "CLINIC_TIMEZONE") ?? "UTC";
	try {
		new Intl.DateTimeFormat("en", { timeZone: zone });
	} catch {
		throw new Error(`CLINIC_TIMEZONE must be an IANA timezone such as Europe/Berlin, got "${zone}"`);
	}
	return zone;
}

export function loadConfig(env: Env = process.env): Config {
	return {
		port: integer(env, "PORT", 4005),
		transporter: text(env, "TRANSPORTER"),
		namespace: text(env, "NAMESPACE") ?? "medsync",
		logLevel: logLevel(env),
		databaseUrl: text(env, "DATABASE_URL"),
		databasePrefix: databasePrefix(env),
		databasePoolMax: integer(env, "DATABASE_POOL_MAX", 10),
		dataDir: path.resolve(text(env, "DATA_DIR") ?? ".data"),
		embeddedPostgresPort: integer(env, "EMBEDDED_POSTGRES_PORT", 54329),
		bodyLimit: text(env, "BODY_LIMIT") ?? "100kb",
		corsOrigins: (text(env, "CORS_ORIGINS") ?? "*").split(",").map(o => o.trim()).filter(Boolean),
		clinicTimezone: timezone(env)
	};
}

export const config: Config = loadConfig();
