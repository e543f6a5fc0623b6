import crypto from "node:crypto";
import { ServiceBroker } from "moleculer";
import { type NodeProcess, eventually, freePort, startNode } from "../helpers/node-process";
import { adminLogin, bearer, request } from "../helpers/cluster";
import { patientBody } from "../helpers/fixtures";
import { type OtlpReceiver, type ReceivedSpan, SPAN_KIND, startOtlpReceiver } from "../helpers/otlp-receiver";
import { SERVER_WAIT_MS, type TestKafka, natsUrl, useKafka } from "../helpers/servers";

const PATIENT_NODE = ["patients", "auth", "audit"];
const PATIENTS_SERVICE = `medsync-${PATIENT_NODE.join("+")}`;
const GRPC_CALL = "BillingService/CreateBillingAccount";

/**
 * One registration, one trace, across processes: the gateway, the patient
 * registry, billing and analytics as separate nodes over NATS, patients
 * calling billing over gRPC, and the patient event going through the outbox
 * and a real Kafka broker to billing's and analytics' consumers. Every node
 * exports its spans over OTLP/HTTP (JSON) to a receiver in this test.
 */
describe("tracing with OpenTelemetry across nodes, gRPC and Kafka", () => {
	const namespace = `test-${crypto.randomBytes(4).toString("hex")}`;
	let kafka: TestKafka;
	let receiver: OtlpReceiver;
	let nodes: NodeProcess[] = [];
	let observer: ServiceBroker;
	let baseUrl: string;
	let token: string;

	beforeAll(async () => {
		kafka = await useKafka();
		receiver = await startOtlpReceiver();
		const nats = await natsUrl();
		const port = await freePort();
		const grpcPort = await freePort();
		baseUrl = `http://127.0.0.1:${port}`;
		const env = {
			TRANSPORTER: nats,
			NAMESPACE: namespace,
			PORT: String(port),
			BILLING_GRPC_PORT: String(grpcPort),
			BILLING_GRPC_URL: `127.0.0.1:${grpcPort}`,
			KAFKA_BROKERS: kafka.brokers,
			TRACING_EXPORTER: "otlp",
			OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
			OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
			OTEL_BSP_SCHEDULE_DELAY: "100"
		};
		observer = new ServiceBroker({ namespace, transporter: nats as "NATS", logger: false, nodeID: `observer-${namespace}` });
		await observer.start();
		nodes = [startNode(["api"], env), startNode(PATIENT_NODE, env), startNode(["billing"], env), startNode(["analytics"], env)];
		await observer.waitForServices(["api", "billing", "analytics", ...PATIENT_NODE], 60_000).catch((err: Error) => {
			throw new Error(`${err.message}; what the nodes said:\n${nodes.map(node => node.output().slice(-3000)).join("\n")}`);
		});
		token = await eventually(() => adminLogin(baseUrl), 30_000, "login through the gateway");
		await eventually(async () => ((await request(baseUrl, "GET", "/patients", undefined, bearer(token))).status === 200 ? true : undefined), 30_000, "routes");
	}, SERVER_WAIT_MS);

	afterAll(async () => {
		await Promise.all(nodes.map(node => node.stop()));
		await observer?.stop();
		await receiver?.close();
		kafka?.release();
	});

	const one = (spans: ReceivedSpan[], service: string, kind: number, name: string) => spans.filter(s => s.service === service && s.kind === kind && s.name === name);

	test("a registration's spans, from the client's traceparent to both Kafka consumers, share one trace and chain parent to child", async () => {
		const traceId = crypto.randomBytes(16).toString("hex");
		const clientSpanId = crypto.randomBytes(8).toString("hex");
		const created = await request(baseUrl, "POST", "/patients", patientBody(), { ...bearer(token), traceparent: `00-${traceId}-${clientSpanId}-01` });
		expect(created.status).toBe(201);
		expect(created.body.billingAccountId).toEqual(expect.any(String));
		const topic = process.env.KAFKA_PATIENT_TOPIC!;

		const spans = await eventually(
			async () => {
				const mine = receiver.spans.filter(s => s.traceId === traceId);
				const consumers = mine.filter(s => s.kind === SPAN_KIND.CONSUMER && s.name === `process ${topic}`);
				const complete = one(mine, "medsync-api", SPAN_KIND.SERVER, "POST /patients").length && one(mine, "medsync-billing", SPAN_KIND.SERVER, GRPC_CALL).length;
				return complete && consumers.some(s => s.service === "medsync-billing") && consumers.some(s => s.service === "medsync-analytics") ? mine : undefined;
			},
			30_000,
			"the registration's spans"
		).catch((err: Error) => {
			const seen = receiver.spans.filter(s => s.traceId === traceId).map(s => `${s.service} ${s.kind} ${s.name}`);
			throw new Error(`${err.message}; the trace has: ${seen.join(", ")}`);
		});

		// HTTP in: the gateway continues the client's trace.
		const [http] = one(spans, "medsync-api", SPAN_KIND.SERVER, "POST /patients");
		expect(http.parentSpanId).toBe(clientSpanId);
		expect(http.attributes).toMatchObject({ "http.request.method": "POST", "http.route": "/patients", "http.response.status_code": 201 });

		// The Moleculer call from the gateway's node to the patients node: a client span there, the server span here its child.
		const [callOut] = one(spans, "medsync-api", SPAN_KIND.CLIENT, "patients.create");
		const [create] = one(spans, PATIENTS_SERVICE, SPAN_KIND.SERVER, "patients.create");
		expect(create.parentSpanId).toBe(callOut.spanId);
		expect(create.attributes).toMatchObject({ "rpc.system": "moleculer", "rpc.service": "patients", "rpc.method": "create", "medsync.request_id": created.headers.get("x-request-id") });

		// gRPC patients → billing: the context went in the call's metadata.
		const [grpcOut] = one(spans, PATIENTS_SERVICE, SPAN_KIND.CLIENT, GRPC_CALL);
		const [grpcIn] = one(spans, "medsync-billing", SPAN_KIND.SERVER, GRPC_CALL);
		expect(grpcOut.parentSpanId).toBe(create.spanId);
		expect(grpcIn.parentSpanId).toBe(grpcOut.spanId);
		expect(grpcIn.attributes).toMatchObject({ "rpc.system": "grpc", "rpc.service": "BillingService", "rpc.method": "CreateBillingAccount", "rpc.grpc.status_code": 0 });

		// The outbox: the row kept the registration's context; the relay's producer span continues it, and both
		// consumers' spans (on their own nodes, from the Kafka message's headers) are its children.
		const [send] = one(spans, PATIENTS_SERVICE, SPAN_KIND.PRODUCER, `send ${topic}`);
		expect(send.parentSpanId).toBe(create.spanId);
		for (const service of ["medsync-billing", "medsync-analytics"]) {
			const [consumed] = one(spans, service, SPAN_KIND.CONSUMER, `process ${topic}`);
			expect(consumed.parentSpanId).toBe(send.spanId);
			expect(consumed.attributes).toMatchObject({ "messaging.system": "kafka", "messaging.destination.name": topic });
		}
		// No patient data in any span: not the name, not the email.
		const exported = JSON.stringify(spans);
		expect(exported).not.toContain(created.body.name);
		expect(exported).not.toContain(created.body.email);
	});

	test("a request without a traceparent starts a trace of its own, which the patients node continues", async () => {
		const created = await request(baseUrl, "POST", "/patients", patientBody(), bearer(token));
		expect(created.status).toBe(201);
		const requestId = created.headers.get("x-request-id");
		const [create, http] = await eventually(
			async () => {
				const serverSpan = receiver.spans.find(s => s.service === PATIENTS_SERVICE && s.name === "patients.create" && s.attributes["medsync.request_id"] === requestId);
				const httpSpan = serverSpan && receiver.spans.find(s => s.traceId === serverSpan.traceId && s.service === "medsync-api" && s.kind === SPAN_KIND.SERVER);
				return httpSpan ? [serverSpan, httpSpan] : undefined;
			},
			30_000,
			"the request's spans"
		);
		expect(http.name).toBe("POST /patients");
		expect(http.parentSpanId ?? "").toBe("");
		expect(create.traceId).toMatch(/^[0-9a-f]{32}$/);
	});
});
