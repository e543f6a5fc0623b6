import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

// Runs before each test file's imports, so lib/config sees the test settings.
process.env.PORT = "0";
process.env.LOG_LEVEL ??= "warn";
// Each test file gets its own databases (the integration tier's setup names the run's prefix) and its own development secrets (JWT key, audit journal).
if (process.env.DATABASE_PREFIX) process.env.DATABASE_PREFIX = `${process.env.DATABASE_PREFIX}_${crypto.randomBytes(3).toString("hex")}`;
process.env.DATA_DIR = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-test-data-"));
// A Kafka broker named in the shell is for the suites that ask for one (useKafka in test/helpers/servers.ts), not for every file.
if (process.env.KAFKA_BROKERS) process.env.KAFKA_TEST_BROKERS ??= process.env.KAFKA_BROKERS;
delete process.env.KAFKA_BROKERS;
// Topics and consumer groups of their own, should a file use Kafka.
const run = crypto.randomBytes(3).toString("hex");
process.env.KAFKA_PATIENT_TOPIC = `patient.test-${run}`;
process.env.KAFKA_GROUP_PREFIX = `test-${run}-`;
// Tests play clients at several addresses through X-Forwarded-For (login throttling counts per IP).
process.env.TRUST_PROXY = "true";
// One billing gRPC port per jest worker process, so files running side by side, in this run or another, never collide.
process.env.BILLING_GRPC_PORT = String(20000 + (process.pid % 20000));
process.env.BILLING_GRPC_URL = `127.0.0.1:${process.env.BILLING_GRPC_PORT}`;
process.env.BILLING_RECONCILE_INTERVAL_MS = "300";
process.env.METRICS_PORT = "0";
