import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { type BrokerOptions, ServiceBroker, type ServiceSchema } from "moleculer";
import brokerConfig from "../../moleculer.config";
import ApiService from "../../services/api.service";
import AuditService from "../../services/audit.service";
import AuthService from "../../services/auth.service";
import type { Role } from "../../lib/domain/roles";
import { staffEmail, staffPassword } from "./fixtures";

export interface TestCluster {
	broker: ServiceBroker;
	/** Base URL of the gateway, e.g. http://127.0.0.1:40123 */
	baseUrl: string;
	stop(): Promise<void>;
}

/**
 * Starts the gateway, auth, audit and `services` in one in-process broker (no
 * transporter), the gateway listening on a free port. `options` change the
 * broker's (e.g. a logger that keeps what it writes).
 */
export async function startCluster(services: ServiceSchema[] = [], options: Partial<BrokerOptions> = {}): Promise<TestCluster> {
	const broker = new ServiceBroker({ ...brokerConfig, transporter: null, nodeID: `test-${process.pid}`, ...options });
	const api = broker.createService(ApiService as ServiceSchema);
	for (const schema of [AuthService as ServiceSchema, AuditService as ServiceSchema, ...services]) broker.createService(schema);
	try {
		await broker.start();
	} catch (err) {
		// Whatever did start (periodic jobs, pools) must not outlive the test file that failed.
		await broker.stop().catch(() => {});
		throw err;
	}
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

export function bearer(token: string): Record<string, string> {
	return { authorization: `Bearer ${token}` };
}

/** Logs in and returns the access token; fails the test on anything but 200. */
export async function login(baseUrl: string, email: string, password: string): Promise<string> {
	const res = await request(baseUrl, "POST", "/auth/login", { email, password });
	if (res.status !== 200) throw new Error(`login as ${email} answered ${res.status}: ${JSON.stringify(res.body)}`);
	return res.body.token;
}

export function adminLogin(baseUrl: string): Promise<string> {
	return login(baseUrl, process.env.ADMIN_EMAIL!, process.env.ADMIN_PASSWORD!);
}

export interface TestUser {
	id: string;
	email: string;
	password: string;
	role: Role;
	token: string;
}

/** Creates a user with `role` through the admin API and logs them in. */
export async function createUser(baseUrl: string, adminToken: string, role: Role): Promise<TestUser> {
	const email = staffEmail(role.toLowerCase());
	const password = staffPassword();
	const res = await request(baseUrl, "POST", "/auth/users", { email, password, role }, bearer(adminToken));
	if (res.status !== 201) throw new Error(`creating a ${role} answered ${res.status}: ${JSON.stringify(res.body)}`);
	return { id: res.body.id, email, password, role, token: await login(baseUrl, email, password) };
}
