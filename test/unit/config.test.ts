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

	test("listener addresses: gRPC and metrics stay on loopback in one process, open to the network with a transporter", () => {
		expect(loadConfig({})).toMatchObject({ host: "0.0.0.0", billingGrpcHost: "127.0.0.1", metricsHost: "127.0.0.1" });
		expect(loadConfig({ TRANSPORTER: "nats://nats:4222" })).toMatchObject({ host: "0.0.0.0", billingGrpcHost: "0.0.0.0", metricsHost: "0.0.0.0" });
		expect(loadConfig({ TRANSPORTER: "nats://nats:4222", HOST: "10.0.0.5", BILLING_GRPC_HOST: "billing.internal", METRICS_HOST: "::1" })).toMatchObject({
			host: "10.0.0.5",
			billingGrpcHost: "billing.internal",
			metricsHost: "::1"
		});
		expect(() => loadConfig({ HOST: "http://0.0.0.0" })).toThrow(/HOST must be an IP address or a host name/);
		expect(() => loadConfig({ METRICS_HOST: "127.0.0.1:3030" })).toThrow(/METRICS_HOST/);
	});

	test("refuses values that would fail later in stranger ways", () => {
		expect(() => loadConfig({ PORT: "http" })).toThrow(/PORT/);
		expect(() => loadConfig({ DATABASE_PREFIX: "drop;table" })).toThrow(/DATABASE_PREFIX/);
		expect(() => loadConfig({ CLINIC_TIMEZONE: "Mars/Olympus" })).toThrow(/CLINIC_TIMEZONE/);
		expect(() => loadConfig({ LOG_LEVEL: "loud" })).toThrow(/LOG_LEVEL/);
	});
});
