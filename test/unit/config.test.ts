import path from "node:path";
import { loadConfig } from "../../lib/config";

describe("configuration", () => {
	test("defaults run everything in one process on port 4005 with an embedded database", () => {
		const config = loadConfig({});
		expect(config).toMatchObject({
			port: 4005,
			transporter: undefined,
			databaseUrl: undefined,
			databasePrefix: "medsync",
			dataDir: path.resolve(".data"),
			bodyLimit: "100kb",
			corsOrigins: ["*"],
			clinicTimezone: "UTC",
			logLevel: "info"
		});
	});

	test("reads every variable", () => {
		const config = loadConfig({
			PORT: "8080",
			TRANSPORTER: "nats://127.0.0.1:4222",
			NAMESPACE: "clinic",
			DATABASE_URL: "postgres://u@db:5432/postgres",
			DATABASE_PREFIX: "clinic_a",
			DATABASE_POOL_MAX: "4",
			CORS_ORIGINS: "https://a.example, https://b.example",
			CLINIC_TIMEZONE: "Europe/Berlin",
			LOG_LEVEL: "debug"
		});
		expect(config).toMatchObject({
			port: 8080,
			transporter: "nats://127.0.0.1:4222",
			namespace: "clinic",
			databaseUrl: "postgres://u@db:5432/postgres",
			databasePrefix: "clinic_a",
			databasePoolMax: 4,
			corsOrigins: ["https://a.example", "https://b.example"],
			clinicTimezone: "Europe/Berlin",
			logLevel: "debug"
		});
	});

	test("operations: log format, metrics port, tracing exporter", () => {
		expect(loadConfig({})).toMatchObject({ logFormat: "json", metricsPort: 3030, tracingExporter: undefined, seedUrl: "http://127.0.0.1:4005" });
		expect(loadConfig({ PORT: "4100" }).seedUrl).toBe("http://127.0.0.1:4100");
		expect(loadConfig({ SEED_URL: "http://gateway:4005" }).seedUrl).toBe("http://gateway:4005");
		expect(loadConfig({ LOG_FORMAT: "pretty", METRICS_PORT: "off", TRACING_EXPORTER: "Zipkin", TRACING_ENDPOINT: "http://zipkin:9411" })).toMatchObject({
			logFormat: "pretty",
			metricsPort: undefined,
			tracingExporter: "Zipkin",
			tracingEndpoint: "http://zipkin:9411"
		});
		expect(() => loadConfig({ TRACING_EXPORTER: "Carrier-Pigeon" })).toThrow(/TRACING_EXPORTER/);
	});

	test("refuses values that would fail later in stranger ways", () => {
		expect(() => loadConfig({ PORT: "http" })).toThrow(/PORT/);
		expect(() => loadConfig({ DATABASE_PREFIX: "drop;table" })).toThrow(/DATABASE_PREFIX/);
		expect(() => loadConfig({ CLINIC_TIMEZONE: "Mars/Olympus" })).toThrow(/CLINIC_TIMEZONE/);
		expect(() => loadConfig({ LOG_LEVEL: "loud" })).toThrow(/LOG_LEVEL/);
	});

	test("the audit journal's age limit for /ready: 60 s unless set, and at least 1", () => {
		expect(loadConfig({}).auditJournalMaxAgeSeconds).toBe(60);
		expect(loadConfig({ AUDIT_JOURNAL_MAX_AGE_SECONDS: "300" }).auditJournalMaxAgeSeconds).toBe(300);
		expect(() => loadConfig({ AUDIT_JOURNAL_MAX_AGE_SECONDS: "0" })).toThrow(/AUDIT_JOURNAL_MAX_AGE_SECONDS must be at least 1/);
		expect(() => loadConfig({ AUDIT_JOURNAL_MAX_AGE_SECONDS: "1m" })).toThrow(/AUDIT_JOURNAL_MAX_AGE_SECONDS/);
	});
});
