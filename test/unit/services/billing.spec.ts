import crypto from "node:crypto";
import type { ServiceSchema } from "moleculer";
import { config } from "../../../lib/infra/config";
import BillingService from "../../../services/billing.service";
import {
	type AccountRow,
	type TransactionRow,
	accountById,
	accountOfPatient,
	balances,
	insertAccount,
	insertTransaction,
	transactionByKey,
	updateAccount
} from "../../../services/billing/queries";
import { accountRow } from "../../helpers/fixtures";
import { failure } from "../../helpers/expect";
import { createWithDatabase, declared, expectDeclared, refusedFields, unitBroker } from "../../helpers/service-broker";
import { StubDatabase } from "../../helpers/stub-database";

/**
 * The billing service on a broker: its database a stub that keeps a ledger the
 * way the table's unique (account, idempotency key) index does, and a patients
 * stub for the account a charge may open. The integration suite
 * (billing.test.ts) runs the same rules on PostgreSQL and over gRPC.
 */

const active = accountRow();
const suspended = accountRow({ status: "SUSPENDED" });
/** A merged patient's account: its balance went to `active`. */
const closed = accountRow({ status: "CLOSED", mergedIntoAccountId: active.id, version: 4 });
const accounts = new Map<string, AccountRow>([active, suspended, closed].map(a => [a.id, a]));
/** The ledger, by account and idempotency key (a posting without a key is only counted). */
const ledger = new Map<string, TransactionRow>();
let postings = 0;

const INSERT = insertTransaction({ id: "", accountId: "", type: "PAYMENT", amount: 0, fingerprint: "" }, "ACTIVE");
const byId = ([id]: unknown[]) => (accounts.has(id as string) ? [accounts.get(id as string)] : []);
const db = new StubDatabase()
	.answer(accountById("", "FOR SHARE"), byId)
	.answer(accountById(""), byId)
	.answer(accountOfPatient(""), ([patientId]) => [...accounts.values()].filter(a => a.patientId === patientId))
	.answer(insertAccount({ id: "", patientId: "", name: "", email: "", currency: "" }), ([id, patientId, name, email, currency]) => {
		const account = accountRow({ id: id as string, patientId: patientId as string, name: name as string, email: email as string, currency: currency as string });
		accounts.set(account.id, account);
		return [account];
	})
	.answer(INSERT, values => {
		const [id, accountId, type, amount, description, reference, key, fingerprint, status] = values as string[];
		if (status === "CLOSED" || (type === "CHARGE" && status !== "ACTIVE")) return [];
		if (key && ledger.has(`${accountId}/${key}`)) return [];
		const row = { id, accountId, type, amount: String(amount), description, reference, fingerprint, createdAt: new Date() } as TransactionRow;
		if (key) ledger.set(`${accountId}/${key}`, row);
		postings += 1;
		return [row];
	})
	.answer(transactionByKey("", ""), ([accountId, key]) => {
		const row = ledger.get(`${accountId}/${key}`);
		return row ? [row] : [];
	})
	.answer(balances([]), () => []);

const patient = { id: crypto.randomUUID(), name: "Ada Lovelace", email: "ada@example.org" };

const broker = unitBroker();
createWithDatabase(broker, BillingService as ServiceSchema, db);
broker.createService({ name: "patients", actions: { get: () => patient } });

beforeAll(() => {
	// Its gRPC server starts with it: on any free port here.
	config.billingGrpcPort = 0;
	return broker.start();
});
afterAll(() => broker.stop());

const as = (role: string) => ({ id: crypto.randomUUID(), email: "staff@test.medsync.local", role, sessionId: "s" });

/** Posts to the account as `role` (undefined: another service calling), with an Idempotency-Key if given. */
function post(accountId: string, posting: Record<string, unknown>, role?: string, idempotencyKey?: string) {
	const meta: Record<string, unknown> = { user: role && as(role), idempotencyKey };
	return broker.call<{ id: string; amount: number }, object>("billing.postTransaction", { id: accountId, ...posting }, { meta });
}

describe("who may post what", () => {
	test("a clerk posts payments; charges, refunds and adjustments need an admin, and are refused before anything is written", async () => {
		expect(await post(active.id, { type: "PAYMENT", amount: 1_000 }, "RECEPTIONIST")).toMatchObject({ type: "PAYMENT", amount: 1_000 });
		const before = postings;
		const tried = db.sent(INSERT).length;
		for (const type of ["CHARGE", "REFUND", "ADJUSTMENT"]) {
			const err = await failure(post(active.id, { type, amount: 500 }, "RECEPTIONIST"));
			expect([type, err]).toEqual([type, expect.objectContaining({ code: 403, message: `The RECEPTIONIST role may not post a ${type}` })]);
		}
		expect(db.sent(INSERT)).toHaveLength(tried);
		for (const type of ["CHARGE", "REFUND", "ADJUSTMENT", "PAYMENT"]) expect(await post(active.id, { type, amount: 500 }, "ADMIN")).toMatchObject({ type });
		expect(postings).toBe(before + 4);
	});

	test("whole minor units, never zero, negative only for an adjustment; a known type; nothing else", async () => {
		const refused = (posting: Record<string, unknown>) => refusedFields(post(active.id, posting, "ADMIN"));
		expect(await refused({ type: "PAYMENT", amount: 0 })).toEqual(["amount"]);
		expect(await refused({ type: "PAYMENT", amount: -5 })).toEqual(["amount"]);
		expect(await refused({ type: "PAYMENT", amount: 12.5 })).toEqual(["amount"]);
		expect(await refused({ type: "GIFT", amount: 5 })).toEqual(["type"]);
		expect(await refused({ type: "PAYMENT", amount: 5, note: "x" })).toEqual(["note"]);
		expect(await refused({ type: "ADJUSTMENT", amount: -5 })).toEqual([]);
	});

	test("a charge to an account that is not active is 409 naming its status; a payment still goes in", async () => {
		expect(await failure(post(suspended.id, { type: "CHARGE", amount: 500 }, "ADMIN"))).toMatchObject({ code: 409, data: { status: "SUSPENDED" } });
		expect(db.transactions.at(-1)).toBe("rolled back");
		expect(await post(suspended.id, { type: "PAYMENT", amount: 500 }, "RECEPTIONIST")).toMatchObject({ type: "PAYMENT" });
	});

	test("a CLOSED account takes nothing, not even a payment: 409 naming the account that took over its balance", async () => {
		for (const type of ["CHARGE", "PAYMENT", "REFUND"]) {
			const err = await failure(post(closed.id, { type, amount: 500 }, "ADMIN"));
			expect([type, err]).toEqual([type, expect.objectContaining({ code: 409, data: { status: "CLOSED", mergedIntoAccountId: active.id } })]);
		}
	});

	test("an unknown account is 404", async () => {
		expect(await failure(post(crypto.randomUUID(), { type: "PAYMENT", amount: 1 }, "ADMIN"))).toMatchObject({ code: 404 });
	});
});

describe("Idempotency-Key", () => {
	test("the same request again gets the transaction the first one posted, and posts nothing", async () => {
		const key = crypto.randomUUID();
		const first = await post(active.id, { type: "PAYMENT", amount: 2_500, reference: "r-1" }, "RECEPTIONIST", key);
		const before = postings;
		const again = await post(active.id, { type: "PAYMENT", amount: 2_500, reference: "r-1" }, "RECEPTIONIST", key);
		expect(again).toEqual(first);
		expect(postings).toBe(before);
	});

	test("another request under a key already used is 422 naming the header, and rolled back", async () => {
		const key = crypto.randomUUID();
		await post(active.id, { type: "PAYMENT", amount: 2_500 }, "RECEPTIONIST", key);
		for (const changed of [{ type: "PAYMENT", amount: 2_501 }, { type: "PAYMENT", amount: 2_500, description: "other" }]) {
			const err = await failure(post(active.id, changed, "RECEPTIONIST", key));
			expect(err).toMatchObject({ code: 422, type: "IDEMPOTENCY_KEY_REUSED", data: { field: "Idempotency-Key" } });
			expect(db.transactions.at(-1)).toBe("rolled back");
		}
	});

	test("without a key, the same request twice is two transactions", async () => {
		const before = postings;
		const [a, b] = [await post(active.id, { type: "PAYMENT", amount: 700 }, "RECEPTIONIST"), await post(active.id, { type: "PAYMENT", amount: 700 }, "RECEPTIONIST")];
		expect(a.id).not.toBe(b.id);
		expect(postings).toBe(before + 2);
	});
});

describe("billing.chargeAppointment", () => {
	test("charges the fee once per appointment, opening the patient's account from the patient's record if need be", async () => {
		const appointmentId = crypto.randomUUID();
		const charge = { appointmentId, patientId: patient.id, consultationFee: 7_500 };
		await broker.call("billing.chargeAppointment", charge);
		await broker.call("billing.chargeAppointment", charge);
		const account = [...accounts.values()].find(a => a.patientId === patient.id)!;
		expect(account).toMatchObject({ name: patient.name, email: patient.email });
		expect([...accounts.values()].filter(a => a.patientId === patient.id)).toHaveLength(1);
		expect(ledger.get(`${account.id}/appointment-fulfilled:${appointmentId}`)).toMatchObject({ type: "CHARGE", amount: "7500", reference: `appointment:${appointmentId}` });
		expect([...ledger.values()].filter(t => t.accountId === account.id)).toHaveLength(1);
	});

	test("a merged patient's fee goes to the account that took over its balance", async () => {
		const appointmentId = crypto.randomUUID();
		await broker.call("billing.chargeAppointment", { appointmentId, patientId: closed.patientId, consultationFee: 5_000 });
		expect(ledger.get(`${active.id}/appointment-fulfilled:${appointmentId}`)).toMatchObject({ type: "CHARGE", amount: "5000" });
		expect(ledger.has(`${closed.id}/appointment-fulfilled:${appointmentId}`)).toBe(false);
	});

	test("a visit without a fee posts nothing", async () => {
		const before = postings;
		await broker.call("billing.chargeAppointment", { appointmentId: crypto.randomUUID(), patientId: patient.id, consultationFee: 0 });
		expect(postings).toBe(before);
	});
});

describe("PATCH /billing/accounts/:id", () => {
	const setStatus = (id: string, status: string, ifMatch?: number[]) =>
		broker.call("billing.setStatus", { id, status }, { meta: { user: as("ADMIN"), ifMatch } });

	test("an If-Match the account no longer matches is 412 with its version, and rolled back", async () => {
		// The guarded UPDATE matched no row (the stub's default): the account is at another version.
		expect(await failure(setStatus(suspended.id, "ACTIVE", [7]))).toMatchObject({ code: 412, type: "PRECONDITION_FAILED", data: { currentVersion: 1 } });
		expect(db.transactions.at(-1)).toBe("rolled back");
		expect(db.sent(updateAccount("", {})).at(-1)!.values).toEqual([suspended.id, null, null, "ACTIVE", [7]]);
	});

	test("a CLOSED account's status stays: 409, unless the If-Match is stale (412)", async () => {
		expect(await failure(setStatus(closed.id, "ACTIVE"))).toMatchObject({ code: 409, data: { status: "CLOSED", mergedIntoAccountId: active.id } });
		expect(await failure(setStatus(closed.id, "ACTIVE", [4]))).toMatchObject({ code: 409 });
		expect(await failure(setStatus(closed.id, "ACTIVE", [3]))).toMatchObject({ code: 412 });
	});

	test("CLOSED is no status to set: 422 naming the field", async () => {
		expect(await refusedFields(setStatus(active.id, "CLOSED"))).toEqual(["status"]);
	});
});

test("clerks read and post, admins change an account's status; every call is audited as billing; what services ask is not routed", () => {
	const clerks = ["ADMIN", "RECEPTIONIST"];
	expectDeclared(broker, "billing", "billing", { listAccounts: clerks, getAccount: clerks, listTransactions: clerks, postTransaction: clerks, setStatus: ["ADMIN"] });
	for (const action of ["openAccount", "chargeAppointment", "changeAccount"]) expect([action, declared(broker, `billing.${action}`)]).toEqual([action, {}]);
});
