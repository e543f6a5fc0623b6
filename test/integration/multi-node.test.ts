import crypto from "node:crypto";
import { ServiceBroker } from "moleculer";
import { type NodeProcess, eventually, freePort, startNode } from "../helpers/node-process";
import { adminLogin, bearer, request } from "../helpers/cluster";
import { patientBody } from "../helpers/fixtures";
import { natsUrl } from "../helpers/servers";

const PATIENT_NODE = ["patients", "auth", "audit"];

/**
 * The gateway, the patient registry (with auth and audit) and billing as
 * separate processes, each its own Moleculer node, finding each other over the
 * real NATS server; patients reach billing over gRPC on a real port.
 */
describe("services on separate nodes over NATS", () => {
	const namespace = `test-${crypto.randomBytes(4).toString("hex")}`;
	let env: Record<string, string>;
	let gateway: NodeProcess;
	let patients: NodeProcess;
	let billing: NodeProcess;
	let observer: ServiceBroker;
	let baseUrl: string;
	let token: string;
	const api = (method: string, path: string, body?: unknown) => request(baseUrl, method, path, body, bearer(token));

	const availableServices = async () =>
		(observer.registry.getServiceList({ onlyAvailable: true, skipInternal: true }) as { name: string }[]).map(s => s.name);

	beforeAll(async () => {
		const nats = await natsUrl();
		const port = await freePort();
		const grpcPort = await freePort();
		baseUrl = `http://127.0.0.1:${port}`;
		env = {
			TRANSPORTER: nats,
			NAMESPACE: namespace,
			PORT: String(port),
			BILLING_GRPC_PORT: String(grpcPort),
			BILLING_GRPC_URL: `127.0.0.1:${grpcPort}`
		};
		observer = new ServiceBroker({ namespace, transporter: nats as "NATS", logger: false, nodeID: `observer-${namespace}` });
		await observer.start();
		gateway = startNode(["api"], { ...env, LOG_LEVEL: "info" });
		// The patient node logs at info, so its request-scoped lines can be checked.
		patients = startNode(PATIENT_NODE, { ...env, LOG_LEVEL: "info" });
		billing = startNode(["billing"], env);
		await observer.waitForServices(["api", "billing", ...PATIENT_NODE], 30_000);
		// The gateway builds its routes shortly after it discovers the other node's services.
		token = await eventually(() => adminLogin(baseUrl), 20_000, "login through the gateway");
		await eventually(async () => ((await api("GET", "/patients")).status === 200 ? true : undefined), 20_000, "routes");
	});

	afterAll(async () => {
		await Promise.all([gateway?.stop(), patients?.stop(), billing?.stop()]);
		await observer?.stop();
	});

	test("the gateway on one node serves patients from another", async () => {
		const gatewayNode = observer.registry.getServiceList({ onlyAvailable: true }).find((s: any) => s.name === "api")?.nodeID;
		const patientsNode = observer.registry.getServiceList({ onlyAvailable: true }).find((s: any) => s.name === "patients")?.nodeID;
		expect(gatewayNode).toBeDefined();
		expect(patientsNode).toBeDefined();
		expect(gatewayNode).not.toBe(patientsNode);

		const created = await api("POST", "/patients", patientBody());
		expect(created.status).toBe(201);
		// Opened by the billing process, called over gRPC.
		expect(created.body.billingAccountId).toEqual(expect.any(String));
		const account = await api("GET", `/billing/accounts/${created.body.billingAccountId}`);
		expect(account.body).toMatchObject({ patientId: created.body.id, status: "ACTIVE" });
		const fetched = await api("GET", `/patients/${created.body.id}`);
		expect(fetched.status).toBe(200);
		expect(fetched.body).toEqual(created.body);
	});

	test("the gateway's /openapi.json describes the answers of actions on other nodes", async () => {
		// The schemas travel in the action definitions the nodes announce: the gateway holds no copy of its own.
		const spec = (await request(baseUrl, "GET", "/openapi.json")).body;
		expect(spec.paths["/patients"].post.responses["201"].content["application/json"].schema).toEqual({ $ref: "#/components/schemas/Patient" });
		expect(spec.paths["/billing/accounts/{id}"].get.responses["200"].headers).toHaveProperty("ETag");
		expect(spec.components.schemas.Patient.properties.gender.enum).toContain(null);
	});

	test("the gateway's request id reaches the other node and is on its log lines", async () => {
		const requestId = `trace-${namespace}`;
		const created = await request(baseUrl, "POST", "/patients", patientBody(), { ...bearer(token), "x-request-id": requestId });
		expect(created.status).toBe(201);
		expect(created.headers.get("x-request-id")).toBe(requestId);
		const line = await eventually(async () => {
			const lines = patients.output().split("\n").filter(l => l.includes(requestId));
			return lines.find(l => l.includes(`Registered patient ${created.body.id}`));
		}, 5_000, "the log line");
		expect(JSON.parse(line)).toMatchObject({ requestId, msg: expect.stringContaining(created.body.id), svc: "patients" });
		// The gateway's access line: plain JSON, no terminal colours in it.
		const access = await eventually(async () => gateway.output().split("\n").find(l => l.includes(requestId) && l.includes("POST /patients")), 5_000, "the access line");
		expect(JSON.parse(access)).toMatchObject({ requestId, svc: "api", method: "POST", route: "/patients", status: 201, msg: expect.stringMatching(/^POST \/patients 201 [\d.]+ ms$/) });
		expect(access).not.toContain("\u001b");
	});

	test("errors keep their status and shape across the transporter", async () => {
		const invalid = await api("POST", "/patients", { name: "", email: "x" });
		expect(invalid.status).toBe(422);
		expect(invalid.body.data.map((e: any) => e.field)).toEqual(expect.arrayContaining(["name", "email", "address", "dateOfBirth"]));
		const missing = await api("GET", "/patients/00000000-0000-4000-8000-000000000000");
		expect(missing.status).toBe(404);
		expect(missing.body).toMatchObject({ name: "NotFoundError", type: "NOT_FOUND" });
	});

	test("a logout on the auth node reaches the gateway node: the session's token is refused", async () => {
		const session = await adminLogin(baseUrl);
		expect((await request(baseUrl, "GET", "/patients", undefined, bearer(session))).status).toBe(200);
		expect((await request(baseUrl, "POST", "/auth/logout", undefined, bearer(session))).status).toBe(204);
		await eventually(async () => ((await request(baseUrl, "GET", "/patients", undefined, bearer(session))).status === 401 ? true : undefined), 5_000, "revocation");
	});

	test("stopping a node removes its services from discovery; restarting brings them back", async () => {
		const created = await api("POST", "/patients", patientBody());
		expect(created.status).toBe(201);

		await patients.stop();
		await eventually(async () => (!(await availableServices()).includes("patients") ? true : undefined), 10_000, "patients to leave");
		expect(await availableServices()).toContain("api");

		const down = await api("GET", `/patients/${created.body.id}`);
		// 503 while the gateway still routes to the departed service; 404 once it has dropped the routes.
		expect([404, 503]).toContain(down.status);
		expect(down.body).toMatchObject({ code: down.status, type: down.status === 503 ? "SERVICE_UNAVAILABLE" : "NOT_FOUND" });

		patients = startNode(PATIENT_NODE, { ...env, LOG_LEVEL: "info" });
		await observer.waitForServices(PATIENT_NODE, 30_000);
		const back = await eventually(async () => {
			const res = await api("GET", `/patients/${created.body.id}`);
			return res.status === 200 ? res : undefined;
		}, 20_000, "patients to come back");
		expect(back.body).toEqual(created.body);
	});
});
