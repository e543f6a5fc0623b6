import crypto, { X509Certificate } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { type ChannelCredentials, type Client as GrpcClient, type ServiceError, credentials, loadPackageDefinition, status } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import type { ServiceSchema } from "moleculer";
import { Client } from "pg";
import BillingService from "../../services/billing.service";
import PatientsService from "../../services/patients.service";
import { config } from "../../lib/infra/config";
import { databaseName, withDatabase } from "../../lib/infra/postgres";
import { type GrpcClientSecurity, billingClientSecurity, billingServerSecurity, channelCredentials } from "../../lib/infra/grpc-security";
import { unaryCall } from "../../mixins/grpc-client.mixin";
import { BillingServiceClient } from "../../proto/generated/billing_service";
import { type TestCluster, type TestUser, adminLogin, bearer, createUser, request, startCluster } from "../helpers/cluster";
import { failure } from "../helpers/expect";
import { createPatient } from "../helpers/fixtures";
import { getAccountOnce } from "../helpers/grpc";
import { eventually } from "../helpers/node-process";

let cluster: TestCluster;
let adminToken: string;
let receptionist: TestUser;
let doctor: TestUser;
let grpc: BillingServiceClient;
/** What the patients service connects with: the development CA and service token, generated under DATA_DIR. */
let security: GrpcClientSecurity & { plaintext?: false };

const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
	request(cluster.baseUrl, method, path, body, { ...bearer(adminToken), ...headers });

const rpc = <Req, Res>(method: (req: Req, ...rest: any[]) => any, req: Req) => unaryCall<Req, Res>(grpc, method as any, req, 2000);

beforeAll(async () => {
	cluster = await startCluster([PatientsService as ServiceSchema, BillingService as ServiceSchema]);
	adminToken = await adminLogin(cluster.baseUrl);
	receptionist = await createUser(cluster.baseUrl, adminToken, "RECEPTIONIST");
	doctor = await createUser(cluster.baseUrl, adminToken, "DOCTOR");
	security = (await billingClientSecurity()) as typeof security;
	grpc = new BillingServiceClient(config.billingGrpcUrl, channelCredentials(security));
});

afterAll(async () => {
	grpc?.close();
	await cluster?.stop();
});

describe("BillingService over gRPC on a real port", () => {
	test("CreateBillingAccount opens an account, and a second call returns the same one", async () => {
		const patientId = crypto.randomUUID();
		const first = await rpc(grpc.createBillingAccount, { patientId, name: "Ada", email: "ada@example.org" });
		expect(first).toEqual({ accountId: expect.any(String), status: "ACTIVE" });
		const second = await rpc(grpc.createBillingAccount, { patientId, name: "Ada", email: "ada@example.org" });
		expect(second).toEqual(first);
	});

	test("GetBillingAccount returns every field, with currency and balance", async () => {
		const patientId = crypto.randomUUID();
		const { accountId } = await rpc<any, any>(grpc.createBillingAccount, { patientId, name: "Grace", email: "grace@example.org" });
		const account = await rpc(grpc.getBillingAccount, { accountId });
		expect(account).toEqual({ accountId, patientId, name: "Grace", email: "grace@example.org", status: "ACTIVE", currency: config.billingCurrency, balance: "0" });
	});

	test("UpdateBillingAccount changes name, email and status; empty fields stay as they were", async () => {
		const { accountId } = await rpc<any, any>(grpc.createBillingAccount, { patientId: crypto.randomUUID(), name: "Old", email: "old@example.org" });
		expect(await rpc(grpc.updateBillingAccount, { accountId, name: "New", email: "", status: "SUSPENDED" })).toEqual({ accountId, status: "SUSPENDED" });
		expect(await rpc(grpc.getBillingAccount, { accountId })).toMatchObject({ name: "New", email: "old@example.org", status: "SUSPENDED" });
	});

	test("DeleteBillingAccount closes the account (INACTIVE) and keeps it", async () => {
		const { accountId } = await rpc<any, any>(grpc.createBillingAccount, { patientId: crypto.randomUUID(), name: "Gone", email: "gone@example.org" });
		expect(await rpc(grpc.deleteBillingAccount, { accountId })).toEqual({ accountId, status: "INACTIVE" });
		expect(await rpc(grpc.getBillingAccount, { accountId })).toMatchObject({ status: "INACTIVE" });
	});

	test("errors are proper statuses: NOT_FOUND, INVALID_ARGUMENT, UNAVAILABLE; never UNKNOWN", async () => {
		const missing = crypto.randomUUID();
		for (const attempt of [
			rpc(grpc.getBillingAccount, { accountId: missing }),
			rpc(grpc.getBillingAccount, { accountId: "not-a-uuid" }),
			rpc(grpc.updateBillingAccount, { accountId: missing, name: "X", email: "", status: "" }),
			rpc(grpc.deleteBillingAccount, { accountId: missing })
		]) {
			expect((await failure<ServiceError>(attempt)).code).toBe(status.NOT_FOUND);
		}
		const invalid = await failure<ServiceError>(rpc(grpc.createBillingAccount, { patientId: "nope", name: "", email: "x" }));
		expect(invalid.code).toBe(status.INVALID_ARGUMENT);
		expect(invalid.details).toMatch(/patientId/);
		const badStatus = await failure<ServiceError>(rpc(grpc.updateBillingAccount, { accountId: missing, name: "", email: "", status: "CLOSED" }));
		expect(badStatus.code).toBe(status.INVALID_ARGUMENT);

		const nowhere = new BillingServiceClient("127.0.0.1:1", credentials.createInsecure());
		const down = await failure<ServiceError>(unaryCall(nowhere, nowhere.getBillingAccount, { accountId: missing }, 500));
		expect(down.code).toBe(status.UNAVAILABLE);
		nowhere.close();
	});

	test("a client loaded dynamically from the .proto file, not the generated code, works too", async () => {
		const definition = loadSync(path.resolve(__dirname, "../../proto/billing_service.proto"), { keepCase: true, longs: String });
		const { BillingService: DynamicClient } = loadPackageDefinition(definition) as any;
		const client: GrpcClient & Record<string, any> = new DynamicClient(config.billingGrpcUrl, channelCredentials(security));
		const invoke = (method: string, req: object) =>
			new Promise<any>((resolve, reject) => client[method](req, (err: Error | null, res: unknown) => (err ? reject(err) : resolve(res))));
		const patientId = crypto.randomUUID();
		const created = await invoke("CreateBillingAccount", { patientId, name: "Dyn", email: "dyn@example.org" });
		expect(created.status).toBe("ACTIVE");
		expect(await invoke("GetBillingAccount", { accountId: created.accountId })).toMatchObject({ accountId: created.accountId, patientId, name: "Dyn" });
		client.close();
	});
});

describe("the gRPC port's authentication", () => {
	const getWith = (creds: ChannelCredentials) => getAccountOnce(config.billingGrpcUrl, creds, crypto.randomUUID());

	test("billing serves TLS and requires the service token: none or a wrong one is UNAUTHENTICATED; plaintext gets no answer", async () => {
		const tlsOnly = credentials.createSsl(Buffer.from(security.tls.ca));
		expect((await failure<ServiceError>(getWith(tlsOnly))).code).toBe(status.UNAUTHENTICATED);
		const wrongToken = channelCredentials({ ...security, token: crypto.randomBytes(32).toString("base64url") });
		expect((await failure<ServiceError>(getWith(wrongToken))).code).toBe(status.UNAUTHENTICATED);
		expect((await failure<ServiceError>(getWith(credentials.createInsecure()))).code).toBe(status.UNAVAILABLE);
		// The right token over TLS reaches the handler: an unknown account is NOT_FOUND, not refused.
		expect((await failure<ServiceError>(getWith(channelCredentials(security)))).code).toBe(status.NOT_FOUND);
	});

	test("development: the token, CA and certificate are generated once under DATA_DIR (0600), the certificate for the configured host", async () => {
		const server = await billingServerSecurity();
		if (server.plaintext) throw new Error("expected TLS");
		expect(server.token).toBe(security.token);
		const cert = new X509Certificate(server.tls.cert);
		expect(cert.checkIssued(new X509Certificate(security.tls.ca))).toBe(true);
		expect(cert.checkIP(new URL(`grpc://${config.billingGrpcUrl}`).hostname)).toBe("127.0.0.1");
		expect(cert.checkHost("localhost")).toBe("localhost");
		for (const file of ["ca.pem", "server.pem", "token"]) {
			expect(fs.statSync(path.join(config.dataDir, "billing-grpc", file)).mode & 0o777).toBe(0o600);
		}
	});

	test("production: start-up fails naming the missing setting", async () => {
		const production = { ...config, production: true };
		await expect(billingServerSecurity(production)).rejects.toThrow(/^BILLING_GRPC_TOKEN must be set in production/);
		await expect(billingServerSecurity({ ...production, billingGrpcToken: security.token })).rejects.toThrow(
			/^BILLING_GRPC_TLS_CERT and BILLING_GRPC_TLS_KEY must be set in production/
		);
		await expect(billingClientSecurity({ ...production, billingGrpcToken: security.token })).rejects.toThrow(/^BILLING_GRPC_TLS_CA must be set in production/);
		const given = { ...production, billingGrpcToken: security.token, billingGrpcTlsCa: security.tls.ca, billingGrpcMtls: true };
		await expect(billingClientSecurity(given)).rejects.toThrow(/^BILLING_GRPC_TLS_CLIENT_CERT and BILLING_GRPC_TLS_CLIENT_KEY must be set/);
		await expect(billingServerSecurity({ ...given, billingGrpcTlsCa: undefined, billingGrpcTls: { cert: "c", key: "k" } })).rejects.toThrow(
			/^BILLING_GRPC_TLS_CA must be set in production/
		);
		expect(await billingServerSecurity({ ...production, billingGrpcInsecure: true })).toEqual({ plaintext: true, optIn: "BILLING_GRPC_INSECURE=true" });
	});
});

describe("patients → billing", () => {
	test("POST /patients opens the account over gRPC and returns its id", async () => {
		const patient = await createPatient(call);
		expect(patient.billingAccountId).toEqual(expect.any(String));
		const account = await call("GET", `/billing/accounts/${patient.billingAccountId}`);
		expect(account.body).toMatchObject({ patientId: patient.id, name: patient.name, email: patient.email, status: "ACTIVE", balance: 0 });
		const byPatient = await call("GET", `/billing/accounts?patientId=${patient.id}`);
		expect(byPatient.body.rows.map((a: { id: string }) => a.id)).toEqual([patient.billingAccountId]);
	});

	test("the account list carries each account's balance, 0 for one with no transactions", async () => {
		const [owing, clear] = [await createPatient(call), await createPatient(call)];
		for (const entry of [{ type: "CHARGE", amount: 500 }, { type: "PAYMENT", amount: 200 }]) {
			expect((await call("POST", `/billing/accounts/${owing.billingAccountId}/transactions`, entry)).status).toBe(201);
		}
		const listed = await call("GET", "/billing/accounts?pageSize=100");
		expect(listed.status).toBe(200);
		const balances = new Map(listed.body.rows.map((a: { id: string; balance: number }) => [a.id, a.balance]));
		expect(balances.get(owing.billingAccountId)).toBe(300);
		expect(balances.get(clear.billingAccountId)).toBe(0);
	});

	test("the account id is written back from CreateBillingAccount's answer only: a patient missing it gets the open account's id from the reconciler", async () => {
		const patient = await createPatient(call);
		const db = new Client({ connectionString: withDatabase(process.env.DATABASE_URL!, databaseName("patients")) });
		await db.connect();
		try {
			// As if the registration's answer had been lost after billing opened the account.
			expect((await db.query("UPDATE patients SET billing_account_id = NULL WHERE id = $1", [patient.id])).rowCount).toBe(1);
		} finally {
			await db.end();
		}
		const restored = await eventually(async () => {
			const res = await call("GET", `/patients/${patient.id}`);
			return res.body.billingAccountId ?? undefined;
		}, 15_000, "the reconciler's write-back");
		expect(restored).toBe(patient.billingAccountId);
		expect((await call("GET", `/billing/accounts?patientId=${patient.id}`)).body.total).toBe(1);
	});

	test("billing stopped → patients still created → billing back → every one gets its account", async () => {
		const broker = cluster.broker;
		const billing = broker.getLocalService("billing")!;
		const schema = billing.originalSchema;
		await broker.destroyService(billing);

		const created = [await createPatient(call), await createPatient(call)];
		expect(created.map(p => p.billingAccountId)).toEqual([null, null]);

		broker.createService(schema);
		await broker.waitForServices(["billing"]);
		for (const patient of created) {
			const withAccount = await eventually(async () => {
				const res = await call("GET", `/patients/${patient.id}`);
				return res.body.billingAccountId ? res.body : undefined;
			}, 15_000, `an account for ${patient.id}`);
			const account = await call("GET", `/billing/accounts/${withAccount.billingAccountId}`);
			expect(account.body.patientId).toBe(patient.id);
		}
	});
});

describe("the ledger", () => {
	let account: { id: string };
	beforeEach(async () => {
		const patient = await createPatient(call);
		account = { id: patient.billingAccountId };
	});

	const post = (body: object, headers: Record<string, string> = {}) => call("POST", `/billing/accounts/${account.id}/transactions`, body, headers);

	test("the balance is charges − payments + refunds + adjustments, exactly", async () => {
		expect((await post({ type: "CHARGE", amount: 12_000, description: "Consultation" })).status).toBe(201);
		expect((await post({ type: "PAYMENT", amount: 3_050, reference: "card-1" })).status).toBe(201);
		expect((await post({ type: "REFUND", amount: 500 })).status).toBe(201);
		const last = await post({ type: "ADJUSTMENT", amount: -201, description: "Goodwill" });
		expect(last.body).toMatchObject({ type: "ADJUSTMENT", amount: -201, balance: 12_000 - 3_050 + 500 - 201 });
		expect((await call("GET", `/billing/accounts/${account.id}`)).body.balance).toBe(9_249);
		const page = await call("GET", `/billing/accounts/${account.id}/transactions?pageSize=2`);
		expect(page.body).toMatchObject({ total: 4, page: 1, pageSize: 2, totalPages: 2 });
		expect(page.body.rows.map((t: { type: string }) => t.type)).toEqual(["ADJUSTMENT", "REFUND"]);
	});

	test("amounts are whole minor units: fractions, zero, and negative non-adjustments are 422", async () => {
		for (const body of [
			{ type: "PAYMENT", amount: 10.5 },
			{ type: "CHARGE", amount: 0 },
			{ type: "CHARGE", amount: -100 },
			{ type: "PAYMENT", amount: "100" },
			{ type: "GIFT", amount: 100 }
		]) {
			const res = await post(body);
			expect(res.status).toBe(422);
		}
		const res = await post({ type: "PAYMENT", amount: 10.5 });
		expect(res.body.data[0].field).toBe("amount");
	});

	test("a suspended or inactive account refuses new charges with 409, but still takes payments", async () => {
		expect((await call("PATCH", `/billing/accounts/${account.id}`, { status: "SUSPENDED" })).body.status).toBe("SUSPENDED");
		expect((await post({ type: "CHARGE", amount: 100 })).status).toBe(409);
		expect((await post({ type: "PAYMENT", amount: 100 })).status).toBe(201);
		await call("PATCH", `/billing/accounts/${account.id}`, { status: "INACTIVE" });
		expect((await post({ type: "CHARGE", amount: 100 })).status).toBe(409);
		await call("PATCH", `/billing/accounts/${account.id}`, { status: "ACTIVE" });
		expect((await post({ type: "CHARGE", amount: 100 })).status).toBe(201);
		expect((await call("PATCH", `/billing/accounts/${account.id}`, { status: "CLOSED" })).status).toBe(422);
	});

	test("a status change moves updatedAt; one that repeats the status leaves it, and createdAt never moves", async () => {
		const opened = (await call("GET", `/billing/accounts/${account.id}`)).body;
		const repeated = await call("PATCH", `/billing/accounts/${account.id}`, { status: "ACTIVE" });
		expect(repeated.body).toEqual(opened);
		const changed = await call("PATCH", `/billing/accounts/${account.id}`, { status: "SUSPENDED" });
		expect(changed.body).toEqual({ ...opened, status: "SUSPENDED", version: opened.version + 1, updatedAt: expect.any(String) });
		expect(Date.parse(changed.body.updatedAt)).toBeGreaterThan(Date.parse(opened.updatedAt));
		expect((await call("GET", `/billing/accounts/${account.id}`)).body).toEqual(changed.body);
	});

	test("versions: GET and PATCH answer with an ETag; a PATCH with a stale If-Match is 412 and writes nothing; one that changes nothing keeps the version", async () => {
		const read = await call("GET", `/billing/accounts/${account.id}`);
		expect(read.body.version).toBe(1);
		expect(read.headers.get("etag")).toBe('W/"1"');
		// Two clerks read version 1; the first change wins.
		const first = await call("PATCH", `/billing/accounts/${account.id}`, { status: "SUSPENDED" }, { "if-match": 'W/"1"' });
		expect(first.status).toBe(200);
		expect(first.body).toMatchObject({ status: "SUSPENDED", version: 2 });
		expect(first.headers.get("etag")).toBe('W/"2"');
		const stale = await call("PATCH", `/billing/accounts/${account.id}`, { status: "INACTIVE" }, { "if-match": 'W/"1"' });
		expect(stale.status).toBe(412);
		expect(stale.body).toMatchObject({ type: "PRECONDITION_FAILED", data: { currentVersion: 2 } });
		expect((await call("GET", `/billing/accounts/${account.id}`)).body).toEqual(first.body);
		// A list of tags, or none at all, and a change to what it already is.
		const same = await call("PATCH", `/billing/accounts/${account.id}`, { status: "SUSPENDED" }, { "if-match": 'W/"7", W/"2"' });
		expect(same.status).toBe(200);
		expect(same.body.version).toBe(2);
		expect((await call("PATCH", `/billing/accounts/${account.id}`, { status: "ACTIVE" })).body.version).toBe(3);
		expect((await call("PATCH", `/billing/accounts/${account.id}`, { status: "INACTIVE" }, { "if-match": 'W/"x"' })).status).toBe(412);
		expect((await call("PATCH", `/billing/accounts/${crypto.randomUUID()}`, { status: "ACTIVE" }, { "if-match": 'W/"1"' })).status).toBe(404);
		// Changes made over gRPC raise it too.
		await rpc(grpc.updateBillingAccount, { accountId: account.id, name: "Renamed", email: "", status: "" });
		expect((await call("GET", `/billing/accounts/${account.id}`)).body).toMatchObject({ name: "Renamed", version: 4 });
	});

	test("50 concurrent payments give the exact balance", async () => {
		await post({ type: "CHARGE", amount: 100_000 });
		const results = await Promise.all(Array.from({ length: 50 }, (_, i) => post({ type: "PAYMENT", amount: 101 + i })));
		expect(results.every(r => r.status === 201)).toBe(true);
		const paid = Array.from({ length: 50 }, (_, i) => 101 + i).reduce((a, b) => a + b, 0);
		expect((await call("GET", `/billing/accounts/${account.id}`)).body.balance).toBe(100_000 - paid);
		expect((await call("GET", `/billing/accounts/${account.id}/transactions?pageSize=100`)).body.total).toBe(51);
	});

	test("the same Idempotency-Key 10 times in parallel posts one transaction, and every retry gets the same answer", async () => {
		const key = crypto.randomUUID();
		const results = await Promise.all(Array.from({ length: 10 }, () => post({ type: "PAYMENT", amount: 2_500 }, { "idempotency-key": key })));
		expect(results.map(r => r.status)).toEqual(Array(10).fill(201));
		expect(new Set(results.map(r => r.body.id)).size).toBe(1);
		const ledger = await call("GET", `/billing/accounts/${account.id}/transactions`);
		expect(ledger.body.total).toBe(1);
		const reused = await post({ type: "PAYMENT", amount: 9_999 }, { "idempotency-key": key });
		expect(reused.status).toBe(422);
		expect(reused.body.type).toBe("IDEMPOTENCY_KEY_REUSED");
	});

	test("the ledger is append-only in the database too", async () => {
		await post({ type: "CHARGE", amount: 100 });
		const db = new Client({ connectionString: withDatabase(process.env.DATABASE_URL!, databaseName("billing")) });
		await db.connect();
		try {
			await expect(db.query("UPDATE billing_transactions SET amount = 1")).rejects.toThrow(/append-only/);
			await expect(db.query("DELETE FROM billing_transactions")).rejects.toThrow(/append-only/);
		} finally {
			await db.end();
		}
	});

	test("roles: receptionists read and post payments; charges, refunds, adjustments and status need an admin; doctors see nothing", async () => {
		expect((await call("GET", `/billing/accounts/${account.id}`, undefined, bearer(receptionist.token))).status).toBe(200);
		expect((await post({ type: "PAYMENT", amount: 100 }, bearer(receptionist.token))).status).toBe(201);
		for (const type of ["CHARGE", "REFUND", "ADJUSTMENT"]) {
			expect((await post({ type, amount: 100 }, bearer(receptionist.token))).status).toBe(403);
		}
		expect((await call("PATCH", `/billing/accounts/${account.id}`, { status: "SUSPENDED" }, bearer(receptionist.token))).status).toBe(403);
		expect((await call("GET", `/billing/accounts/${account.id}`, undefined, bearer(doctor.token))).status).toBe(403);
		expect((await call("GET", `/billing/accounts/${account.id}/transactions`, undefined, bearer(doctor.token))).status).toBe(403);
		expect((await request(cluster.baseUrl, "GET", `/billing/accounts/${account.id}`)).status).toBe(401);
	});

	test("an unknown or malformed account id is 404", async () => {
		expect((await call("GET", `/billing/accounts/${crypto.randomUUID()}`)).status).toBe(404);
		expect((await call("GET", "/billing/accounts/nope")).status).toBe(404);
		expect((await call("POST", `/billing/accounts/${crypto.randomUUID()}/transactions`, { type: "PAYMENT", amount: 1 })).status).toBe(404);
	});
});
