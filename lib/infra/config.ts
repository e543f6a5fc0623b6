import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

/** A certificate (or chain) and its private key, PEM. */
export interface TlsIdentity {
	cert: string;
	key: string;
}

/**
 * The one place that reads the environment. Every setting MedSync has is here,
 * typed, with its default; the table in docs/configuration.md mirrors this file.
 */
export interface Config {
	/** HTTP port of the API gateway. */
	port: number;
	/** Address the gateway listens on. */
	host: string;
	/** The gateway `npm run seed` and the REPL's `seed` load the demo data through. */
	seedUrl: string;
	/** Moleculer transporter URL (e.g. nats://127.0.0.1:4222); unset runs every service in one process. */
	transporter: string | undefined;
	/** NATS credentials: a user and password, or a token. Anyone on the bus can call any action, so production sets one. */
	natsUser: string | undefined;
	natsPassword: string | undefined;
	natsToken: string | undefined;
	/** The CA of the NATS server's certificate, when it is a private one (TLS itself follows the server). */
	natsTlsCa: string | undefined;
	/** A client certificate and key, for a NATS server that verifies clients. */
	natsTls: TlsIdentity | undefined;
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
	/** Allowed CORS origins; "*" allows any; empty allows none (the production default). */
	corsOrigins: string[];
	/** IANA timezone of the clinic: what "today" means for register dates and birth dates. */
	clinicTimezone: string;
	/** In production, secrets must come from the environment; nothing is generated. */
	production: boolean;
	/** Whether anyone may sign up (as VIEWER), or only an admin creates accounts (the production default). */
	authSignup: "open" | "closed";
	/** PKCS#8 PEM of the Ed25519 key that signs access tokens; generated under dataDir in development. */
	jwtPrivateKey: string | undefined;
	/** The first admin account, created at first start when no admin exists. */
	adminEmail: string;
	adminPassword: string | undefined;
	/** How long a login session (its refresh token chain) lasts. */
	sessionDays: number;
	/** Take the client IP from X-Forwarded-For (only behind a proxy that sets it). */
	trustProxy: boolean;
	/** Port the billing service serves gRPC on. */
	billingGrpcPort: number;
	/** Address billing's gRPC server binds: 127.0.0.1 with every service in one process, else 0.0.0.0 (containers). */
	billingGrpcHost: string;
	/** Plaintext gRPC with no credential, for the original's clients: anyone who reaches the port can call every RPC. */
	billingGrpcInsecure: boolean;
	/** The service credential every gRPC call to billing carries (`authorization: Bearer <token>`); generated under dataDir in development. */
	billingGrpcToken: string | undefined;
	/** The CA that issued billing's certificate (clients trust it) and, with mutual TLS, the clients'; generated in development. */
	billingGrpcTlsCa: string | undefined;
	/** Billing's certificate and key; generated in development (for localhost and the configured hosts). */
	billingGrpcTls: TlsIdentity | undefined;
	/** Mutual TLS: billing also requires a client certificate issued by billingGrpcTlsCa. */
	billingGrpcMtls: boolean;
	/** The client's certificate and key for mutual TLS; generated in development. */
	billingGrpcTlsClient: TlsIdentity | undefined;
	/** Where clients reach billing's gRPC server, host:port. */
	billingGrpcUrl: string;
	/** Deadline of one call to billing, retries included. */
	billingGrpcDeadlineMs: number;
	/** How often patients retries opening the billing accounts a failed call left missing. */
	billingReconcileIntervalMs: number;
	/** ISO 4217 currency of new billing accounts. */
	billingCurrency: string;
	/** Kafka bootstrap brokers; unset delivers the outbox's events over the service broker instead. */
	kafkaBrokers: string[] | undefined;
	/** Topic of the patient events. */
	patientTopic: string;
	/** Partitions and replicas of topics MedSync creates. */
	kafkaPartitions: number;
	kafkaReplicationFactor: number;
	/** Attempts at handling one message before it goes to the dead-letter topic. */
	kafkaMaxAttempts: number;
	/** Messages a consumer handles at once (one key's messages are always handled in order). */
	kafkaConcurrency: number;
	/** Prepended to consumer group names (which are the service names). */
	kafkaGroupPrefix: string;
	/** The services /ready waits for, each with its own dependencies. */
	readyServices: string[];
	/** /ready is degraded while the gateway's oldest audit record not yet shipped to the audit service is older than this. */
	auditJournalMaxAgeSeconds: number;
	/** `json`: structured (pino) lines with the request id; `pretty`: Moleculer's console format, for a terminal. */
	logFormat: "json" | "pretty";
	/** Port of this node's Prometheus endpoint (/metrics); undefined turns metrics off. */
	metricsPort: number | undefined;
	/** Address of the Prometheus endpoint: 127.0.0.1 with every service in one process, else 0.0.0.0. */
	metricsHost: string;
	/** Where spans go: Console, Zipkin, Jaeger, Datadog or Event; undefined turns tracing off. */
	tracingExporter: "Console" | "Zipkin" | "Jaeger" | "Datadog" | "Event" | undefined;
	/** Collector URL for the Zipkin or Jaeger exporter. */
	tracingEndpoint: string | undefined;
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

function atLeastOne(env: Env, name: string, fallback: number): number {
	const value = integer(env, name, fallback);
	if (value < 1) throw new Error(`${name} must be at least 1, got "${env[name]}"`);
	return value;
}

function text(env: Env, name: string): string | undefined {
	const raw = env[name]?.trim();
	return raw ? raw : undefined;
}

/** A comma-separated list, each item trimmed, empty ones dropped. */
function list(env: Env, name: string): string[] | undefined {
	return text(env, name)?.split(",").map(item => item.trim()).filter(Boolean);
}

function oneOf<T extends string>(env: Env, name: string, values: readonly T[], fallback: T): T {
	const raw = text(env, name) ?? fallback;
	const value = values.find(v => v === raw);
	if (!value) throw new Error(`${name} must be one of ${values.join(", ")}, got "${raw}"`);
	return value;
}

/** An address to listen on: an IP address or a host name. */
function address(env: Env, name: string, fallback: string): string {
	const value = text(env, name) ?? fallback;
	if (net.isIP(value) === 0 && !/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i.test(value)) {
		throw new Error(`${name} must be an IP address or a host name, got "${value}"`);
	}
	return value;
}

/**
 * A PEM setting: the PEM itself (`\n` escapes allowed, as in a .env file) or the
 * path of a file holding it. Read and parsed now, so a bad one stops the start
 * naming the setting; the message never quotes the value (it may be a key).
 */
function pem(env: Env, name: string, kind: "certificate" | "private key"): string | undefined {
	const raw = text(env, name);
	if (!raw) return undefined;
	let value = raw.replace(/\\n/g, "\n");
	if (!value.startsWith("-----BEGIN ")) {
		try {
			value = fs.readFileSync(raw, "utf8");
		} catch (err) {
			throw new Error(`${name} must be PEM or the path of a PEM file, and no file can be read there (${(err as NodeJS.ErrnoException).code})`, { cause: err });
		}
	}
	try {
		if (kind === "certificate") new crypto.X509Certificate(value);
		else crypto.createPrivateKey(value);
	} catch (err) {
		throw new Error(`${name} does not hold a PEM ${kind}`, { cause: err });
	}
	return value.trim();
}

/** A certificate and its key, both set or neither. */
function tlsIdentity(env: Env, certName: string, keyName: string): TlsIdentity | undefined {
	const cert = pem(env, certName, "certificate");
	const key = pem(env, keyName, "private key");
	if (!cert !== !key) throw new Error(`${certName} and ${keyName} go together: set both or neither`);
	return cert && key ? { cert, key } : undefined;
}

/** A shared secret sent in a header: long enough not to be guessed, and printable ASCII without spaces. */
function token(env: Env, name: string): string | undefined {
	const value = text(env, name);
	if (value !== undefined && !/^[\x21-\x7e]{16,}$/.test(value)) {
		throw new Error(`${name} must be at least 16 printable ASCII characters without spaces (e.g. openssl rand -hex 32)`);
	}
	return value;
}

function billingGrpcSecurity(env: Env): Pick<Config, "billingGrpcInsecure" | "billingGrpcToken" | "billingGrpcTlsCa" | "billingGrpcTls" | "billingGrpcMtls" | "billingGrpcTlsClient"> {
	const settings = {
		billingGrpcInsecure: oneOf(env, "BILLING_GRPC_INSECURE", ["true", "false"], "false") === "true",
		billingGrpcToken: token(env, "BILLING_GRPC_TOKEN"),
		billingGrpcTlsCa: pem(env, "BILLING_GRPC_TLS_CA", "certificate"),
		billingGrpcTls: tlsIdentity(env, "BILLING_GRPC_TLS_CERT", "BILLING_GRPC_TLS_KEY"),
		billingGrpcMtls: oneOf(env, "BILLING_GRPC_MTLS", ["true", "false"], "false") === "true",
		billingGrpcTlsClient: tlsIdentity(env, "BILLING_GRPC_TLS_CLIENT_CERT", "BILLING_GRPC_TLS_CLIENT_KEY")
	};
	const { billingGrpcInsecure, ...secured } = settings;
	// Plaintext with a token or certificates set is a contradiction; refusing it beats guessing which was meant.
	if (billingGrpcInsecure && Object.values(secured).some(Boolean)) {
		throw new Error("BILLING_GRPC_INSECURE=true turns TLS and the credential off: unset BILLING_GRPC_TOKEN, BILLING_GRPC_MTLS and BILLING_GRPC_TLS_*");
	}
	return settings;
}

function natsSecurity(env: Env): Pick<Config, "natsUser" | "natsPassword" | "natsToken" | "natsTlsCa" | "natsTls"> {
	const settings = {
		natsUser: text(env, "NATS_USER"),
		natsPassword: text(env, "NATS_PASSWORD"),
		natsToken: text(env, "NATS_TOKEN"),
		natsTlsCa: pem(env, "NATS_TLS_CA", "certificate"),
		natsTls: tlsIdentity(env, "NATS_TLS_CERT", "NATS_TLS_KEY")
	};
	if (!settings.natsUser !== !settings.natsPassword) throw new Error("NATS_USER and NATS_PASSWORD go together: set both or neither");
	if (settings.natsToken && settings.natsUser) throw new Error("NATS_TOKEN and NATS_USER are two ways to authenticate: set one");
	const transporter = text(env, "TRANSPORTER");
	if (transporter && !/^nats:\/\//i.test(transporter) && Object.values(settings).some(Boolean)) {
		throw new Error("NATS_USER, NATS_PASSWORD, NATS_TOKEN and NATS_TLS_* apply to a nats:// TRANSPORTER only");
	}
	// Whoever reaches the bus can call any action: production does not run on one that anyone may join.
	const urlUser = transporter && /^nats:\/\/[^/@,]+@/i.test(transporter);
	if (env.NODE_ENV === "production" && transporter && /^nats:\/\//i.test(transporter) && !settings.natsUser && !settings.natsToken && !urlUser) {
		throw new Error("In production (NODE_ENV=production) a nats:// TRANSPORTER needs credentials: set NATS_USER and NATS_PASSWORD, or NATS_TOKEN");
	}
	return settings;
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

function currency(env: Env): string {
	const code = text(env, "BILLING_CURRENCY") ?? "USD";
	if (!/^[A-Z]{3}$/.test(code)) throw new Error(`BILLING_CURRENCY must be an ISO 4217 code such as EUR, got "${code}"`);
	return code;
}

/**
 * The settings that hold a secret, each of which may instead be given as a
 * file: `<NAME>_FILE` is the path of a file holding the value, as Docker and
 * Kubernetes secrets provide them, so the value is in no environment that
 * `docker inspect` or /proc/<pid>/environ shows. DATABASE_URL carries the
 * PostgreSQL password.
 */
export const SECRET_SETTINGS = [
	"ADMIN_PASSWORD",
	"AUTH_JWT_PRIVATE_KEY",
	"DATABASE_URL",
	"NATS_PASSWORD",
	"NATS_TOKEN",
	"NATS_TLS_KEY",
	"BILLING_GRPC_TOKEN",
	"BILLING_GRPC_TLS_KEY",
	"BILLING_GRPC_TLS_CLIENT_KEY"
] as const;

/**
 * `env` with each `<NAME>_FILE` of SECRET_SETTINGS read into `<NAME>`. The
 * file's trailing line break is not part of the value (`echo` and editors add
 * one). Both set, or a file that cannot be read, stop the start naming the
 * setting and the path, never the value.
 */
function withSecretFiles(env: Env): Env {
	const resolved = { ...env };
	for (const name of SECRET_SETTINGS) {
		const file = text(env, `${name}_FILE`);
		if (!file) continue;
		if (text(env, name)) throw new Error(`${name} and ${name}_FILE are two ways to give one secret: set one`);
		try {
			resolved[name] = fs.readFileSync(file, "utf8").replace(/\r?\n$/, "");
		} catch (err) {
			throw new Error(`${name}_FILE names ${file}, which cannot be read (${(err as NodeJS.ErrnoException).code})`, { cause: err });
		}
		if (!resolved[name]!.trim()) throw new Error(`${name}_FILE names ${file}, which is empty`);
	}
	return resolved;
}

export function loadConfig(given: Env = process.env): Config {
	const env = withSecretFiles(given);
	// In one process nothing outside it needs the internal listeners; containers reach each other over the network.
	const internalHost = text(env, "TRANSPORTER") ? "0.0.0.0" : "127.0.0.1";
	const production = env.NODE_ENV === "production";
	return {
		port: integer(env, "PORT", 4005),
		host: address(env, "HOST", "0.0.0.0"),
		seedUrl: text(env, "SEED_URL") ?? `http://127.0.0.1:${integer(env, "PORT", 4005)}`,
		transporter: text(env, "TRANSPORTER"),
		...natsSecurity(env),
		namespace: text(env, "NAMESPACE") ?? "medsync",
		logLevel: oneOf(env, "LOG_LEVEL", LOG_LEVELS, "info"),
		databaseUrl: text(env, "DATABASE_URL"),
		databasePrefix: databasePrefix(env),
		databasePoolMax: integer(env, "DATABASE_POOL_MAX", 10),
		dataDir: path.resolve(text(env, "DATA_DIR") ?? ".data"),
		embeddedPostgresPort: integer(env, "EMBEDDED_POSTGRES_PORT", 54329),
		bodyLimit: text(env, "BODY_LIMIT") ?? "100kb",
		// Production opens nothing it was not told to: no origin may call from a browser, nobody may sign up.
		corsOrigins: list(env, "CORS_ORIGINS") ?? (production ? [] : ["*"]),
		clinicTimezone: timezone(env),
		production,
		authSignup: oneOf(env, "AUTH_SIGNUP", ["open", "closed"], production ? "closed" : "open"),
		jwtPrivateKey: text(env, "AUTH_JWT_PRIVATE_KEY")?.replace(/\\n/g, "\n"),
		adminEmail: text(env, "ADMIN_EMAIL") ?? "admin@medsync.local",
		adminPassword: text(env, "ADMIN_PASSWORD"),
		sessionDays: integer(env, "AUTH_SESSION_DAYS", 7),
		trustProxy: oneOf(env, "TRUST_PROXY", ["true", "false"], "false") === "true",
		billingGrpcPort: integer(env, "BILLING_GRPC_PORT", 9001),
		billingGrpcHost: address(env, "BILLING_GRPC_HOST", internalHost),
		...billingGrpcSecurity(env),
		billingGrpcUrl: text(env, "BILLING_GRPC_URL") ?? "127.0.0.1:9001",
		billingGrpcDeadlineMs: integer(env, "BILLING_GRPC_DEADLINE_MS", 2000),
		billingReconcileIntervalMs: integer(env, "BILLING_RECONCILE_INTERVAL_MS", 30_000),
		billingCurrency: currency(env),
		kafkaBrokers: list(env, "KAFKA_BROKERS"),
		patientTopic: text(env, "KAFKA_PATIENT_TOPIC") ?? "patient",
		kafkaPartitions: integer(env, "KAFKA_PARTITIONS", 3),
		kafkaReplicationFactor: integer(env, "KAFKA_REPLICATION_FACTOR", 1),
		kafkaMaxAttempts: integer(env, "KAFKA_MAX_ATTEMPTS", 5),
		kafkaConcurrency: Math.max(1, integer(env, "KAFKA_CONCURRENCY", 16)),
		kafkaGroupPrefix: text(env, "KAFKA_GROUP_PREFIX") ?? "",
		logFormat: oneOf(env, "LOG_FORMAT", ["json", "pretty"], "json"),
		metricsPort: text(env, "METRICS_PORT") === "off" ? undefined : integer(env, "METRICS_PORT", 3030),
		metricsHost: address(env, "METRICS_HOST", internalHost),
		tracingExporter: (() => {
			const exporter = oneOf(env, "TRACING_EXPORTER", ["none", "Console", "Zipkin", "Jaeger", "Datadog", "Event"], "none");
			return exporter === "none" ? undefined : exporter;
		})(),
		tracingEndpoint: text(env, "TRACING_ENDPOINT"),
		readyServices: list(env, "READY_SERVICES") ?? ["auth", "audit", "patients", "billing", "analytics", "doctors", "appointments"],
		auditJournalMaxAgeSeconds: atLeastOne(env, "AUDIT_JOURNAL_MAX_AGE_SECONDS", 60)
	};
}

export const config: Config = loadConfig();
