import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { ServiceBroker, type ServiceSchema } from "moleculer";
import brokerConfig from "../../moleculer.config";
import ApiService from "../../services/api.service";

export interface TestCluster {
	broker: ServiceBroker;
	/** Base URL of the gateway, e.g. http://127.0.0.1:40123 */
	baseUrl: string;
	stop(): Promise<void>;
}

/** Starts the gateway and `services` in one in-process broker (no transporter), listening on a free port. */
export async function startCluster(services: ServiceSchema[]): Promise<TestCluster> {
	const broker = new ServiceBroker({ ...brokerConfig, transporter: null, nodeID: `test-${process.pid}` });
	const api = broker.createService(ApiService as ServiceSchema);
	for (const schema of services) broker.createService(schema);
	await broker.start();
	// The gateway builds REST aliases on a debounce after services register; build them now.
	const gateway = api as unknown as { server: Server; regenerateAllAutoAliases: { (): void; flush(): void } };
	gateway.regenerateAllAutoAliases();
	gateway.regenerateAllAutoAliases.flush();
	const address = gateway.server.address() as AddressInfo;
	return {
		broker,
		baseUrl: `http://127.0.0.1:${address.port}`,
		stop: () => broker.stop()
	};
}

export interface JsonResponse<T = any> {
	status: number;
	headers: Headers;
	body: T;
}

/** One HTTP request with a JSON (or raw string) body; the answer parsed as JSON when there is one. */
export async function request<T = any>(
	baseUrl: string,
	method: string,
	path: string,
	body?: unknown,
	headers: Record<string, string> = {}
): Promise<JsonResponse<T>> {
	const init: RequestInit = { method, headers: { ...headers } };
	if (body !== undefined) {
		init.body = typeof body === "string" ? body : JSON.stringify(body);
		(init.headers as Record<string, string>)["content-type"] ??= "application/json";
	}
	const res = await fetch(baseUrl + path, init);
	const text = await res.text();
	return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}
