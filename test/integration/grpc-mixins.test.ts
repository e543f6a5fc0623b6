import crypto from "node:crypto";
import { type ChannelCredentials, Metadata, type ServiceError, credentials, status } from "@grpc/grpc-js";
import { Errors, ServiceBroker, type Service, type ServiceSchema } from "moleculer";
import type { TlsIdentity } from "../../lib/infra/config";
import { developmentCa, developmentCertificate } from "../../lib/infra/dev-certificates";
import { ConflictError, NotFoundError } from "../../lib/infra/errors";
import { type GrpcClientSecurity, type GrpcServerSecurity, channelCredentials } from "../../lib/infra/grpc-security";
import { type GrpcClientVars, GrpcClientMixin, unaryCall } from "../../mixins/grpc-client.mixin";
import { GrpcServerMixin, type UnaryHandlers } from "../../mixins/grpc-server.mixin";
import {
	type BillingAccountRequest,
	type BillingRequest,
	type BillingResponse,
	BillingServiceClient,
	type BillingServiceServer,
	BillingServiceService,
	type UpdateBillingRequest
} from "../../proto/generated/billing_service";
import { failure } from "../helpers/expect";
import { getAccountOnce } from "../helpers/grpc";

/**
 * The gRPC mixins on their own, over real ports: a stand-in BillingService whose
 * handlers fail on demand (by the account id they are asked for), served by one
 * Moleculer service and called by another through the client mixin; and the
 * same service behind mutual TLS, and in plaintext, for the security checks.
 * Certificates come from the development PKI (lib/infra/dev-certificates.ts).
 */
const FAILURES: Record<string, () => Error> = {
	"not-found": () => new NotFoundError("Billing account", "x"),
	invalid: () => new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", [{ field: "accountId", message: "The 'accountId' field is bad." }]),
	conflict: () => new ConflictError("Already there"),
	"no-database": () => Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" }),
	"peer-missing": () => new Errors.ServiceNotAvailableError({ action: "x.y" }),
	bug: () => new TypeError("Cannot read properties of undefined (reading 'secret')")
};

const TOKEN = crypto.randomBytes(24).toString("hex");
const PKI = "grpc-mixins-test";

let broker: ServiceBroker;
let client: Service & GrpcClientVars;
let serverService: Service & { grpcPort: number };
let mtlsService: Service & { grpcPort: number };
let plaintextService: Service & { grpcPort: number };
let ca: TlsIdentity;
let clientIdentity: TlsIdentity;
/** Calls that reached a handler: a refused call must never get there. */
let handled = 0;
const plaintextWarnings: string[] = [];

const get = (accountId: string, deadlineMs = 2000) => {
	const billing = client.grpcClients.stub as BillingServiceClient;
	return unaryCall<BillingAccountRequest, unknown>(billing, billing.getBillingAccount, { accountId }, deadlineMs);
};

/** Counts the call, then fails as `id` asks (FAILURES), takes its time for a `slow…` id, or lets the handler answer. */
async function stubCall(id: string): Promise<void> {
	handled++;
	if (id.startsWith("slow")) await new Promise(r => setTimeout(r, 500));
	const fail = FAILURES[id];
	if (fail) throw fail();
}

/** The stand-in's handlers: every RPC of BillingService, as the typed option requires. */
const stubHandlers: UnaryHandlers<BillingServiceServer, Service> = {
	async createBillingAccount(request) {
		await stubCall(request.patientId);
		return { accountId: `account-of-${request.patientId}`, status: "ACTIVE" };
	},
	async getBillingAccount(request) {
		await stubCall(request.accountId);
		return { accountId: request.accountId, patientId: "p", name: "n", email: "e", status: "ACTIVE", currency: "USD", balance: "0" };
	},
	async updateBillingAccount(request) {
		await stubCall(request.accountId);
		return { accountId: request.accountId, status: request.status };
	},
	async deleteBillingAccount(request) {
		await stubCall(request.accountId);
		return { accountId: request.accountId, status: "INACTIVE" };
	}
};

function stubServer(name: string, security: () => Promise<GrpcServerSecurity>) {
	return broker.createService({
		name,
		mixins: [
			GrpcServerMixin<BillingServiceServer>({
				definition: BillingServiceService,
				host: () => "127.0.0.1",
				port: () => 0,
				settings: "the test's port",
				drainMs: 3000,
				security,
				handlers: stubHandlers
			})
		]
	} as ServiceSchema) as Service & { grpcPort: number };
}

/** One GetBillingAccount to `service` on a channel of its own with `creds`. */
const getWith = (service: { grpcPort: number }, creds: ChannelCredentials) => getAccountOnce(`127.0.0.1:${service.grpcPort}`, creds, "acc-auth");

beforeAll(async () => {
	ca = await developmentCa(PKI);
	const serverIdentity = await developmentCertificate(PKI, "server", { server: ["localhost", "127.0.0.1"] });
	clientIdentity = await developmentCertificate(PKI, "client", { client: "test-client" });
	broker = new ServiceBroker({ logger: false });
	serverService = stubServer("stub-billing", async () => ({ token: TOKEN, tls: serverIdentity }));
	mtlsService = stubServer("stub-billing-mtls", async () => ({ token: TOKEN, tls: { ...serverIdentity, clientCa: ca.cert } }));
	plaintextService = stubServer("stub-billing-plaintext", async () => ({ plaintext: true, optIn: "TEST_PLAINTEXT=true" }));
	jest.spyOn(plaintextService.logger, "warn").mockImplementation((...args: unknown[]) => void plaintextWarnings.push(args.join(" ")));
	await broker.start();
	const security: GrpcClientSecurity = { token: TOKEN, tls: { ca: ca.cert } };
	client = broker.createService({
		name: "stub-client",
		mixins: [GrpcClientMixin({ name: "stub", client: BillingServiceClient, address: () => `127.0.0.1:${serverService.grpcPort}`, security: async () => security })]
	} as ServiceSchema) as Service & GrpcClientVars;
	await broker.waitForServices(["stub-client"]);
});

afterAll(() => broker.stop());

describe("the gRPC server's authentication", () => {
	const tlsOnly = () => credentials.createSsl(Buffer.from(ca.cert));
	const withToken = (token: string, identity?: TlsIdentity) => channelCredentials({ token, tls: { ca: ca.cert, ...identity } });

	async function refused(promise: Promise<unknown>): Promise<ServiceError> {
		const before = handled;
		const err = await failure<ServiceError>(promise);
		expect(handled).toBe(before);
		return err;
	}

	test("the right token over TLS: the call goes through", async () => {
		expect(await getWith(serverService, withToken(TOKEN))).toMatchObject({ accountId: "acc-auth" });
	});

	test("TLS without a token: UNAUTHENTICATED, and no handler runs", async () => {
		const err = await refused(getWith(serverService, tlsOnly()));
		expect(err.code).toBe(status.UNAUTHENTICATED);
	});

	test("a wrong token, or the right one without its Bearer scheme: UNAUTHENTICATED", async () => {
		for (const wrong of [crypto.randomBytes(24).toString("hex"), TOKEN.slice(0, -1), `${TOKEN}x`]) {
			expect((await refused(getWith(serverService, withToken(wrong)))).code).toBe(status.UNAUTHENTICATED);
		}
		const bare = credentials.combineChannelCredentials(
			tlsOnly(),
			credentials.createFromMetadataGenerator((_call, callback) => {
				const metadata = new Metadata();
				metadata.set("authorization", TOKEN);
				callback(null, metadata);
			})
		);
		expect((await refused(getWith(serverService, bare))).code).toBe(status.UNAUTHENTICATED);
	});

	test("plaintext is refused when TLS is required: the connection never carries a call", async () => {
		const err = await refused(getWith(serverService, credentials.createInsecure()));
		expect(err.code).toBe(status.UNAVAILABLE);
	});

	test("a server certificate from another CA is not trusted by the client", async () => {
		const otherCa = await developmentCa(`${PKI}-other`);
		const err = await refused(getWith(serverService, channelCredentials({ token: TOKEN, tls: { ca: otherCa.cert } })));
		expect(err.code).toBe(status.UNAVAILABLE);
	});

	test("mutual TLS: a client certificate from the CA and the token go through; without the certificate, no call", async () => {
		expect(await getWith(mtlsService, withToken(TOKEN, clientIdentity))).toMatchObject({ accountId: "acc-auth" });
		expect((await refused(getWith(mtlsService, withToken(TOKEN)))).code).toBe(status.UNAVAILABLE);
		// The certificate does not replace the token.
		const certificateOnly = credentials.createSsl(Buffer.from(ca.cert), Buffer.from(clientIdentity.key), Buffer.from(clientIdentity.cert));
		expect((await refused(getWith(mtlsService, certificateOnly))).code).toBe(status.UNAUTHENTICATED);
	});

	test("the plaintext opt-in serves a client with no credential, and says so at start", async () => {
		expect(await getWith(plaintextService, credentials.createInsecure())).toMatchObject({ accountId: "acc-auth" });
		expect(plaintextWarnings).toEqual([expect.stringMatching(/plaintext calls with no credential \(TEST_PLAINTEXT=true\)/)]);
	});
});

describe("the gRPC mixins", () => {
	test("a call round-trips", async () => {
		expect(await get("acc-1")).toMatchObject({ accountId: "acc-1", status: "ACTIVE" });
	});

	test("every RPC of the definition reaches its own handler", async () => {
		const billing = client.grpcClients.stub as BillingServiceClient;
		expect(await unaryCall<BillingRequest, BillingResponse>(billing, billing.createBillingAccount, { patientId: "pat-1", name: "n", email: "e" }, 2000)).toEqual({
			accountId: "account-of-pat-1",
			status: "ACTIVE"
		});
		expect(
			await unaryCall<UpdateBillingRequest, BillingResponse>(billing, billing.updateBillingAccount, { accountId: "acc-3", name: "", email: "", status: "SUSPENDED" }, 2000)
		).toEqual({ accountId: "acc-3", status: "SUSPENDED" });
		expect(await unaryCall<BillingAccountRequest, BillingResponse>(billing, billing.deleteBillingAccount, { accountId: "acc-4" }, 2000)).toEqual({
			accountId: "acc-4",
			status: "INACTIVE"
		});
	});

	test("the handlers option is typed by the generated server interface (checked by the compiler: each @ts-expect-error must stay an error)", () => {
		const serve = (handlers: UnaryHandlers<BillingServiceServer, Service>) =>
			GrpcServerMixin<BillingServiceServer>({ definition: BillingServiceService, host: () => "127.0.0.1", port: () => 0, settings: "the test's port", security: async () => ({ plaintext: true, optIn: "test" }), handlers });
		const { deleteBillingAccount: _deleted, ...missing } = stubHandlers;
		// @ts-expect-error: an RPC without its handler
		serve(missing);
		// @ts-expect-error: a misspelt RPC
		serve({ ...stubHandlers, getBilingAccount: stubHandlers.getBillingAccount });
		// @ts-expect-error: a handler that answers the wrong response type
		serve({ ...stubHandlers, getBillingAccount: stubHandlers.deleteBillingAccount });
		// @ts-expect-error: a handler that takes the wrong request type
		serve({ ...stubHandlers, updateBillingAccount: async (request: BillingRequest) => ({ accountId: request.patientId, status: "ACTIVE" }) });
		// @ts-expect-error: a definition of another service than the handlers' interface
		GrpcServerMixin<BillingServiceServer>({ definition: {}, host: () => "", port: () => 0, settings: "the test's port", security: async () => ({ plaintext: true, optIn: "test" }), handlers: stubHandlers });
		expect(serve(stubHandlers).started).toEqual(expect.any(Function));
	});

	test.each([
		["not-found", status.NOT_FOUND],
		["invalid", status.INVALID_ARGUMENT],
		["conflict", status.ALREADY_EXISTS],
		["no-database", status.UNAVAILABLE],
		["peer-missing", status.UNAVAILABLE],
		["bug", status.INTERNAL]
	])("a handler's %s error arrives as status %i, never UNKNOWN", async (accountId, code) => {
		const err = await failure<ServiceError>(get(accountId));
		expect(err.code).toBe(code);
		expect(err.code).not.toBe(status.UNKNOWN);
		expect(err.details).not.toMatch(/secret/);
	});

	test("the client retries UNAVAILABLE within its deadline, then gives up with UNAVAILABLE", async () => {
		const started = Date.now();
		const err = await failure<ServiceError>(get("no-database", 600));
		expect(err.code).toBe(status.UNAVAILABLE);
		// It kept trying (backoff) until the deadline rather than failing on the first answer.
		expect(Date.now() - started).toBeGreaterThanOrEqual(300);
	});

	test("stopping the service drains a call in flight before the server goes", async () => {
		const inFlight = get("slow-1", 3000);
		await new Promise(r => setTimeout(r, 100));
		await broker.destroyService(serverService);
		await expect(inFlight).resolves.toMatchObject({ accountId: "slow-1" });
		expect((await failure<ServiceError>(get("acc-2"))).code).toBe(status.UNAVAILABLE);
	});
});
