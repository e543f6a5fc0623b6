import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadConfig } from "../../lib/infra/config";
import { developmentCa } from "../../lib/infra/dev-certificates";

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

	test("billing's gRPC security: TLS and a token by default, certificates as PEM or files, plaintext only when asked for alone", async () => {
		expect(loadConfig({})).toMatchObject({
			billingGrpcInsecure: false,
			billingGrpcToken: undefined,
			billingGrpcTlsCa: undefined,
			billingGrpcTls: undefined,
			billingGrpcMtls: false,
			billingGrpcTlsClient: undefined
		});
		const { cert, key } = await developmentCa("config-test");
		const keyFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "medsync-config-")), "billing.key");
		fs.writeFileSync(keyFile, key);
		const escaped = (pem: string) => pem.trim().replace(/\n/g, "\\n");
		const token = "0123456789abcdef0123456789abcdef";
		expect(
			loadConfig({
				BILLING_GRPC_TOKEN: token,
				BILLING_GRPC_TLS_CA: cert,
				BILLING_GRPC_TLS_CERT: escaped(cert),
				BILLING_GRPC_TLS_KEY: keyFile,
				BILLING_GRPC_MTLS: "true",
				BILLING_GRPC_TLS_CLIENT_CERT: cert,
				BILLING_GRPC_TLS_CLIENT_KEY: key
			})
		).toMatchObject({
			billingGrpcToken: token,
			billingGrpcTlsCa: cert.trim(),
			billingGrpcTls: { cert: cert.trim(), key: key.trim() },
			billingGrpcMtls: true,
			billingGrpcTlsClient: { cert: cert.trim(), key: key.trim() }
		});
		expect(loadConfig({ BILLING_GRPC_INSECURE: "true" }).billingGrpcInsecure).toBe(true);

		expect(() => loadConfig({ BILLING_GRPC_INSECURE: "true", BILLING_GRPC_TOKEN: token })).toThrow(/BILLING_GRPC_INSECURE=true turns TLS and the credential off/);
		expect(() => loadConfig({ BILLING_GRPC_INSECURE: "yes" })).toThrow(/BILLING_GRPC_INSECURE must be one of true, false/);
		expect(() => loadConfig({ BILLING_GRPC_TOKEN: "short" })).toThrow(/BILLING_GRPC_TOKEN must be at least 16/);
		expect(() => loadConfig({ BILLING_GRPC_TLS_CERT: cert })).toThrow(/BILLING_GRPC_TLS_CERT and BILLING_GRPC_TLS_KEY go together/);
		expect(() => loadConfig({ BILLING_GRPC_TLS_CA: "/nonexistent/ca.pem" })).toThrow(/BILLING_GRPC_TLS_CA must be PEM or the path of a PEM file.*ENOENT/);
		expect(() => loadConfig({ BILLING_GRPC_TLS_CA: key })).toThrow(/BILLING_GRPC_TLS_CA does not hold a PEM certificate/);
		// A bad key is named, never quoted.
		const broken = key.replace(/\n[A-Za-z0-9+/]{8}/, "\n!!!!!!!!");
		const error = (() => {
			try {
				loadConfig({ BILLING_GRPC_TLS_CERT: cert, BILLING_GRPC_TLS_KEY: broken });
			} catch (err) {
				return (err as Error).message;
			}
		})();
		expect(error).toBe("BILLING_GRPC_TLS_KEY does not hold a PEM private key");
	});

	test("NATS credentials: a user and password, or a token, for a nats:// transporter", () => {
		expect(loadConfig({})).toMatchObject({ natsUser: undefined, natsPassword: undefined, natsToken: undefined, natsTlsCa: undefined, natsTls: undefined });
		expect(loadConfig({ TRANSPORTER: "nats://nats:4222", NATS_USER: "medsync", NATS_PASSWORD: "s3cret" })).toMatchObject({ natsUser: "medsync", natsPassword: "s3cret" });
		expect(loadConfig({ TRANSPORTER: "nats://nats:4222", NATS_TOKEN: "t0ken" }).natsToken).toBe("t0ken");
		expect(() => loadConfig({ NATS_USER: "medsync" })).toThrow(/NATS_USER and NATS_PASSWORD go together/);
		expect(() => loadConfig({ NATS_PASSWORD: "s3cret" })).toThrow(/NATS_USER and NATS_PASSWORD go together/);
		expect(() => loadConfig({ NATS_USER: "medsync", NATS_PASSWORD: "s3cret", NATS_TOKEN: "t0ken" })).toThrow(/NATS_TOKEN and NATS_USER/);
		expect(() => loadConfig({ TRANSPORTER: "redis://cache:6379", NATS_TOKEN: "t0ken" })).toThrow(/apply to a nats:\/\/ TRANSPORTER only/);
		expect(() => loadConfig({ NATS_TLS_KEY: "/nonexistent/key.pem" })).toThrow(/NATS_TLS_KEY must be PEM or the path of a PEM file/);
	});

	test("secrets from files (<NAME>_FILE, as Docker secrets give them): read whole, but for the trailing line break", async () => {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-secrets-"));
		const secret = (name: string, value: string) => {
			const file = path.join(dir, name);
			fs.writeFileSync(file, value, { mode: 0o600 });
			return file;
		};
		const { cert, key } = await developmentCa("config-secrets-test");
		const token = "0123456789abcdef0123456789abcdef";
		const config = loadConfig({
			TRANSPORTER: "nats://nats:4222",
			NATS_USER: "medsync",
			NATS_PASSWORD_FILE: secret("nats", "s3cret with spaces\n"),
			ADMIN_PASSWORD_FILE: secret("admin", "Admin-password-1\r\n"),
			AUTH_JWT_PRIVATE_KEY_FILE: secret("jwt", key),
			DATABASE_URL_FILE: secret("db", "postgres://medsync:p%40ss@postgres:5432/postgres\n"),
			BILLING_GRPC_TOKEN_FILE: secret("grpc-token", `${token}\n`),
			BILLING_GRPC_TLS_CERT: cert,
			BILLING_GRPC_TLS_KEY_FILE: secret("grpc-key", key)
		});
		expect(config).toMatchObject({
			natsPassword: "s3cret with spaces",
			adminPassword: "Admin-password-1",
			jwtPrivateKey: key.trim(),
			databaseUrl: "postgres://medsync:p%40ss@postgres:5432/postgres",
			billingGrpcToken: token,
			billingGrpcTls: { cert: cert.trim(), key: key.trim() }
		});
		// What the file gives goes through the setting's own rules.
		expect(() => loadConfig({ BILLING_GRPC_TOKEN_FILE: secret("short", "short\n") })).toThrow(/BILLING_GRPC_TOKEN must be at least 16/);
		expect(() => loadConfig({ NATS_TOKEN_FILE: secret("t", "t0ken"), TRANSPORTER: "nats://nats:4222", NATS_USER: "medsync", NATS_PASSWORD: "x" })).toThrow(/NATS_TOKEN and NATS_USER/);
		// Both ways at once, an unreadable file and an empty one stop the start, naming the setting and the path, never the value.
		expect(() => loadConfig({ ADMIN_PASSWORD: "Admin-password-1", ADMIN_PASSWORD_FILE: secret("admin2", "other") })).toThrow(
			"ADMIN_PASSWORD and ADMIN_PASSWORD_FILE are two ways to give one secret: set one"
		);
		expect(() => loadConfig({ NATS_PASSWORD_FILE: path.join(dir, "missing") })).toThrow(`NATS_PASSWORD_FILE names ${path.join(dir, "missing")}, which cannot be read (ENOENT)`);
		expect(() => loadConfig({ ADMIN_PASSWORD_FILE: secret("empty", "\n") })).toThrow(/ADMIN_PASSWORD_FILE names .*, which is empty/);
		// Only secrets have a file variant: other settings are not looked for as files.
		expect(loadConfig({ PORT_FILE: secret("port", "9999") }).port).toBe(4005);
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

	test("production opens nothing it was not told to: no CORS origin, sign-up closed", () => {
		expect(loadConfig({ NODE_ENV: "production" })).toMatchObject({ production: true, corsOrigins: [], authSignup: "closed" });
		expect(loadConfig({ NODE_ENV: "production", CORS_ORIGINS: "https://portal.clinic.example", AUTH_SIGNUP: "open" })).toMatchObject({
			corsOrigins: ["https://portal.clinic.example"],
			authSignup: "open"
		});
		expect(loadConfig({})).toMatchObject({ production: false, corsOrigins: ["*"], authSignup: "open" });
	});

	test("production refuses a NATS bus without credentials", () => {
		expect(() => loadConfig({ NODE_ENV: "production", TRANSPORTER: "nats://nats:4222" })).toThrow(/NATS_USER and NATS_PASSWORD, or NATS_TOKEN/);
		expect(loadConfig({ NODE_ENV: "production", TRANSPORTER: "nats://nats:4222", NATS_USER: "medsync", NATS_PASSWORD: "secret" }).natsUser).toBe("medsync");
		expect(loadConfig({ NODE_ENV: "production", TRANSPORTER: "nats://nats:4222", NATS_TOKEN: "a-long-token" }).natsToken).toBe("a-long-token");
		expect(() => loadConfig({ NODE_ENV: "production", TRANSPORTER: "nats://medsync:secret@nats:4222" })).not.toThrow();
		expect(() => loadConfig({ TRANSPORTER: "nats://nats:4222" })).not.toThrow();
	});
});
