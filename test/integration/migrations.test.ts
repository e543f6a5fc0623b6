import crypto from "node:crypto";
import { Client } from "pg";
import { ensureDatabase, withDatabase } from "../../lib/infra/postgres";
import { type Migration, migrate } from "../../lib/infra/migrations";
import { appointmentMigrations } from "../../migrations/appointments";
import { billingMigrations } from "../../migrations/billing";
import { patientMigrations } from "../../migrations/patients";
import { pendingOutboxEvents } from "../../services/patients/queries";

const server = process.env.DATABASE_URL!;
let url: string;
let db: Client;

const v1: Migration = { version: 1, name: "create notes", sql: "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)" };
const v2: Migration = { version: 2, name: "add author", sql: "ALTER TABLE notes ADD COLUMN author text" };

beforeEach(async () => {
	const name = `${process.env.DATABASE_PREFIX}_migrations_${crypto.randomBytes(3).toString("hex")}`;
	await ensureDatabase(server, name);
	url = withDatabase(server, name);
	db = new Client({ connectionString: url });
	await db.connect();
});

afterEach(async () => {
	await db.end();
});

describe("versioned migrations", () => {
	test("apply in order once, and an upgrade keeps the data", async () => {
		expect(await migrate(url, [v1])).toEqual([1]);
		await db.query("INSERT INTO notes (body) VALUES ('kept')");
		expect(await migrate(url, [v2, v1])).toEqual([2]);
		expect(await migrate(url, [v1, v2])).toEqual([]);
		const { rows } = await db.query("SELECT body, author FROM notes");
		expect(rows).toEqual([{ body: "kept", author: null }]);
		const applied = await db.query("SELECT version, name FROM schema_migrations ORDER BY version");
		expect(applied.rows).toEqual([
			{ version: 1, name: "create notes" },
			{ version: 2, name: "add author" }
		]);
	});

	test("nodes starting together apply each migration once", async () => {
		const results = await Promise.all([migrate(url, [v1, v2]), migrate(url, [v1, v2]), migrate(url, [v1, v2])]);
		expect(results.flat().sort()).toEqual([1, 2]);
	});

	test("a failing migration rolls back the whole batch", async () => {
		const broken: Migration = { version: 2, name: "broken", sql: "ALTER TABLE nowhere ADD COLUMN x int" };
		await expect(migrate(url, [v1, broken])).rejects.toThrow(/nowhere/);
		const { rows } = await db.query("SELECT to_regclass('notes') AS t, to_regclass('schema_migrations') AS m");
		expect(rows[0]).toEqual({ t: null, m: null });
	});

	test("an applied migration that was edited is refused", async () => {
		await migrate(url, [v1]);
		await expect(migrate(url, [{ ...v1, sql: v1.sql + " -- edited" }])).rejects.toThrow(/changed after it was applied/);
	});

	test("ensureDatabase is idempotent under concurrency", async () => {
		const name = `${process.env.DATABASE_PREFIX}_race`;
		await Promise.all([ensureDatabase(server, name), ensureDatabase(server, name), ensureDatabase(server, name)]);
		const { rows } = await db.query("SELECT count(*)::int AS n FROM pg_database WHERE datname = $1", [name]);
		expect(rows[0].n).toBe(1);
	});

	test("appointments v5: appointments booked before the history began get their booking and present status in it", async () => {
		await migrate(url, appointmentMigrations.filter(m => m.version < 5));
		const insert = `INSERT INTO appointments (id, patient_id, doctor_id, start_at, end_at, duration_minutes, timezone, consultation_fee, status, cancellation_reason, version)
			VALUES ($1, gen_random_uuid(), gen_random_uuid(), now(), now() + interval '30 minutes', 30, 'UTC', 0, $2, $3, $4)`;
		const [booked, cancelled] = [crypto.randomUUID(), crypto.randomUUID()];
		await db.query(insert, [booked, "booked", null, 1]);
		await db.query(insert, [cancelled, "cancelled", "Doctor ill", 3]);
		expect(await migrate(url, appointmentMigrations.filter(m => m.version <= 5))).toEqual([5]);
		const { rows } = await db.query("SELECT appointment_id, version, status, cause, reason, changed_by FROM appointment_status_history ORDER BY appointment_id = $1 DESC, version", [booked]);
		const entry = { cause: "before-history", changed_by: null };
		expect(rows).toEqual([
			{ ...entry, appointment_id: booked, version: 1, status: "booked", reason: null },
			{ ...entry, appointment_id: cancelled, version: 1, status: "booked", reason: null },
			{ ...entry, appointment_id: cancelled, version: 3, status: "cancelled", reason: "Doctor ill" }
		]);
		await expect(db.query("DELETE FROM appointment_status_history")).rejects.toThrow(/append-only/);
	});
});

test("billing v3 and v4: old accounts and entries stay as they were, at version 1; a TRANSFER may be negative; only a merge closes an account", async () => {
	await migrate(url, billingMigrations.filter(m => m.version < 3));
	const account = crypto.randomUUID();
	await db.query("INSERT INTO billing_accounts (id, patient_id, name, email, currency) VALUES ($1, $2, 'Old', 'old@example.org', 'EUR')", [account, crypto.randomUUID()]);
	await db.query("INSERT INTO billing_transactions (id, account_id, type, amount) VALUES ($1, $2, 'ADJUSTMENT', -5)", [crypto.randomUUID(), account]);
	expect(await migrate(url, billingMigrations)).toEqual([3, 4]);
	const { rows } = await db.query("SELECT status, version, merged_into_account_id FROM billing_accounts");
	expect(rows).toEqual([{ status: "ACTIVE", version: 1, merged_into_account_id: null }]);
	expect((await db.query("SELECT type, amount FROM billing_transactions")).rows).toEqual([{ type: "ADJUSTMENT", amount: "-5" }]);

	const entry = (type: string, amount: number) => db.query("INSERT INTO billing_transactions (id, account_id, type, amount) VALUES ($1, $2, $3, $4)", [crypto.randomUUID(), account, type, amount]);
	await entry("TRANSFER", -100);
	await expect(entry("CHARGE", -100)).rejects.toThrow(/billing_transactions_amount_check/);
	await expect(entry("TRANSFER", 0)).rejects.toThrow(/billing_transactions_amount_check/);
	await expect(entry("GIFT", 100)).rejects.toThrow(/billing_transactions_type_check/);
	await expect(db.query("UPDATE billing_accounts SET status = 'CLOSED'")).rejects.toThrow(/billing_accounts_closed_by_merge/);
	await expect(db.query("UPDATE billing_accounts SET status = 'GONE'")).rejects.toThrow(/billing_accounts_status_check/);
});

test("patients v4: older patients are version 1 and start their history with the record as it stood", async () => {
	await migrate(url, patientMigrations.filter(m => m.version < 4));
	const [live, deleted] = [crypto.randomUUID(), crypto.randomUUID()];
	await db.query(`INSERT INTO patients (id, mrn, name, email, address, date_of_birth, register_date, phone, deleted_at) VALUES
		($1, '10000008', 'Old Live', 'old.live@example.org', 'Old Street 1', '1950-05-05', '2001-01-01', NULL, NULL),
		($2, '10000016', 'Old Gone', 'old.gone@example.org', 'Old Street 2', '1960-06-06', '2002-02-02', '555-0100', now())`, [live, deleted]);
	await migrate(url, patientMigrations.filter(m => m.version <= 4));

	const { rows } = await db.query(`SELECT p.id, p.version, v.version AS "historyVersion", v.kind, v.changed_by AS "changedBy", v.changed_at = p.updated_at AS "changedWhenUpdated", v.record
		FROM patients p JOIN patient_versions v ON v.patient_id = p.id ORDER BY p.mrn`);
	expect(rows).toMatchObject([
		{ id: live, version: 1, historyVersion: 1, kind: "recorded", changedBy: null, changedWhenUpdated: true },
		{ id: deleted, version: 1, historyVersion: 1, kind: "recorded", changedBy: null, changedWhenUpdated: true }
	]);
	expect(rows[0].record).toMatchObject({ id: live, mrn: "10000008", name: "Old Live", dateOfBirth: "1950-05-05", registerDate: "2001-01-01", phone: null, version: 1, deletedAt: null });
	expect(rows[1].record).toMatchObject({ id: deleted, phone: "555-0100", deletedAt: expect.any(String) });
	await expect(db.query("UPDATE patient_versions SET kind = 'updated'")).rejects.toThrow(/history cannot be changed/);
});

test("patients v7: outbox events waiting from before keep no trace and are still read by the relay; new ones keep theirs", async () => {
	await migrate(url, patientMigrations.filter(m => m.version < 7));
	const waiting = crypto.randomUUID();
	await db.query("INSERT INTO outbox (event_id, topic, key, event_type, payload) VALUES ($1, 'patient', 'k', 'PATIENT_CREATED', '\\x01')", [waiting]);
	await migrate(url, patientMigrations);

	const traced = crypto.randomUUID();
	const traceContext = { traceparent: `00-${"a".repeat(32)}-${"b".repeat(16)}-01` };
	await db.query("INSERT INTO outbox (event_id, topic, key, event_type, payload, trace_context) VALUES ($1, 'patient', 'k', 'PATIENT_UPDATED', '\\x02', $2)", [traced, JSON.stringify(traceContext)]);
	const { rows } = await db.query(pendingOutboxEvents(10));
	expect(rows.map(r => [r.eventId, r.traceContext])).toEqual([
		[waiting, null],
		[traced, traceContext]
	]);
});
