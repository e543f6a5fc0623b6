import { type ServiceError, status } from "@grpc/grpc-js";
import { Errors, ServiceBroker, type Service, type ServiceSchema } from "moleculer";
import { ConflictError, NotFoundError } from "../../lib/errors";
import { type GrpcClientVars, GrpcClientMixin, unaryCall } from "../../mixins/grpc-client.mixin";
import { GrpcServerMixin } from "../../mixins/grpc-server.mixin";
import { type BillingAccountRequest, BillingServiceClient, BillingServiceService } from "../../proto/generated/billing_service";

/**
 * The gRPC mixins on their own, over a real port: a stand-in BillingService whose
 * handlers fail on demand (by the account id they are asked for), served by one
 * Moleculer service and called by another through the client mixin.
 */
const FAILURES: Record<string, () => Error> = {
	"not-found": () => new NotFoundError("Billing account", "x"),
	invalid: () => new Errors.ValidationError("Parameters validation error!", "VALIDATION_ERROR", [{ field: "accountId", message: "The 'accountId' field is bad." }]),
	conflict: () => new ConflictError("Already there"),
	"no-database": () => Object.assign(new Error("connect ECONNREFUSED"), { name: "SequelizeConnectionRefusedError" }),
	"peer-missing": () => new Errors.ServiceNotAvailableError({ action: "x.y" }),
	bug: () => new TypeError("Cannot read properties of undefined (reading 'secret')")
};

let broker: ServiceBroker;
let client: Service & GrpcClientVars;
let serverService: Service & { grpcPort: number };

const get = (accountId: string, deadlineMs = 2000) => {
	const billing = client.grpcClients.stub as BillingServiceClient;
	return unaryCall<BillingAccountRequest, unknown>(billing, billing.getBillingAccount, { accountId }, deadlineMs);
};

async function failure(promise: Promise<unknown>): Promise<ServiceError> {
	try {
		await promise;
	} catch (err) {
		return err as ServiceError;
	}
	throw new Error("expected a failure");
}

beforeAll(async () => {
	broker = new ServiceBroker({ logger: false });
	serverService = broker.createService({
		name: "stub-billing",
		mixins: [
			GrpcServerMixin({
				definition: BillingServiceService,
				host: () => "127.0.0.1",
				port: () => 0,
				drainMs: 3000,
				handlers: {
					async getBillingAccount(request: BillingAccountRequest) {
						if (request.accountId.startsWith("slow")) await new Promise(r => setTimeout(r, 500));
						const fail = FAILURES[request.accountId];
						if (fail) throw fail();
						return { accountId: request.accountId, patientId: "p", name: "n", email: "e", status: "ACTIVE", currency: "USD", balance: "0" };
					}
				}
			})
		]
	} as ServiceSchema) as Service & { grpcPort: number };
	await broker.start();
	client = broker.createService({
		name: "stub-client",
		mixins: [GrpcClientMixin({ name: "stub", client: BillingServiceClient, address: () => `127.0.0.1:${serverService.grpcPort}` })]
	} as ServiceSchema) as Service & GrpcClientVars;
	await broker.waitForServices(["stub-client"]);
});

afterAll(() => broker.stop());

describe("the gRPC mixins", () => {
	test("a call round-trips", async () => {
		expect(await get("acc-1")).toMatchObject({ accountId: "acc-1", status: "ACTIVE" });
	});

	test.each([
		["not-found", status.NOT_FOUND],
		["invalid", status.INVALID_ARGUMENT],
		["conflict", status.ALREADY_EXISTS],
		["no-database", status.UNAVAILABLE],
		["peer-missing", status.UNAVAILABLE],
		["bug", status.INTERNAL]
	])("a handler's %s error arrives as status %i, never UNKNOWN", async (accountId, code) => {
		const err = await failure(get(accountId, 300));
		expect(err.code).toBe(code);
		expect(err.code).not.toBe(status.UNKNOWN);
		expect(err.details).not.toMatch(/secret/);
	});

	test("the client retries UNAVAILABLE within its deadline, then gives up with UNAVAILABLE", async () => {
		const started = Date.now();
		const err = await failure(get("no-database", 600));
		expect(err.code).toBe(status.UNAVAILABLE);
		// It kept trying (backoff) until the deadline rather than failing on the first answer.
		expect(Date.now() - started).toBeGreaterThanOrEqual(300);
	});

	test("stopping the service drains a call in flight before the server goes", async () => {
		const inFlight = get("slow-1", 3000);
		await new Promise(r => setTimeout(r, 100));
		await broker.destroyService(serverService);
		await expect(inFlight).resolves.toMatchObject({ accountId: "slow-1" });
		expect((await failure(get("acc-2", 300))).code).toBe(status.UNAVAILABLE);
	});
});
