import fs from "node:fs";
import path from "node:path";
import type { IncomingMessage, ServerResponse } from "node:http";
import { type ActionSchema, type Context, Errors, type ServiceSchema } from "moleculer";
import serveStatic from "serve-static";
import { getAbsoluteFSPath as swaggerUiPath } from "swagger-ui-dist";
import { type RoutedAction, buildOpenApi } from "../lib/infra/openapi";
import { PROJECT_ROOT } from "../lib/infra/paths";
import ApiGateway, { type ApiSettingsSchema } from "moleculer-web";
import { type ErrorLike, toClientError } from "../lib/infra/client-errors";
import { config } from "../lib/infra/config";
import { errorFields } from "../lib/infra/log-fields";
import { HTTP_DURATION_BUCKETS, METRICS, ensureMetric } from "../lib/infra/metrics";
import { requestConditions } from "../lib/infra/http";
import { AuditTrailMixin } from "../mixins/audit-trail.mixin";
import { JSON_MEDIA_TYPES, refusePrototypeKeys, requireJsonBody } from "../lib/infra/request-guards";
import { apiSecurityHeaders, docsSecurityHeaders } from "../lib/infra/security-headers";
import { AuthMixin, type GatewayRequest } from "../mixins/auth.mixin";
import { fhirContentNegotiation, prepareFhirRequest, sendOperationOutcome } from "./fhir/gateway";
import { patientShownBy } from "./fhir/audit-subject";

interface GatewayAlias {
	method: string;
	fullPath: string;
	action?: string;
}

const PACKAGE_VERSION = (JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, "package.json"), "utf8")) as { version: string }).version;

const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>MedSync API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;

/** In a file of its own, not inline: the page's Content-Security-Policy runs no inline script. */
const DOCS_INIT = `window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true, tryItOutEnabled: false });\n`;

interface RequestLogFields {
	method: string;
	route: string | null;
	requestId: string | null;
	userId: string | null;
}

/** A dependency down (a database, a service node) is back within seconds, or the client had better wait longer. */
const SERVICE_UNAVAILABLE_RETRY_SECONDS = 5;

/** The client's retry key (Idempotency-Key) and the versions a change may apply to (If-Match), for the action. */
function passRequestConditions(req: GatewayRequest): void {
	const conditions = requestConditions(req.headers);
	if ("malformed" in conditions) {
		throw new Errors.MoleculerClientError(`The ${conditions.malformed} header is malformed`, 400, "BAD_REQUEST", { header: conditions.malformed });
	}
	if (req.$ctx) Object.assign(req.$ctx.meta, conditions.meta);
}

type RecordsAccess = { recordAccess(req: GatewayRequest, status: number, result?: unknown): void };

const defaultSendError = ApiGateway.methods!.sendError as (req: IncomingMessage, res: ServerResponse, err: Error) => void;

const ApiService: ServiceSchema<ApiSettingsSchema> = {
	name: "api",
	mixins: [ApiGateway, AuthMixin(), AuditTrailMixin()],

	settings: {
		port: config.port,
		ip: config.host,
		// No origins (production's default): no CORS headers at all, so browsers keep other sites out.
		cors: config.corsOrigins.length
			? {
					origin: config.corsOrigins.includes("*") ? "*" : config.corsOrigins,
					methods: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
					allowedHeaders: ["Authorization", "Content-Type", "X-Request-Id", "Idempotency-Key", "If-Match"],
					exposedHeaders: ["Location", "X-Request-Id", "ETag"],
					maxAge: 3600
				}
			: undefined,
		routes: [
			{
				// Swagger UI, from the swagger-ui-dist package: no CDN.
				path: "/docs",
				mappingPolicy: "restrict",
				use: [docsSecurityHeaders, serveStatic(swaggerUiPath(), { index: false }) as never],
				aliases: {
					"GET /"(_req: IncomingMessage, res: ServerResponse) {
						res.setHeader("Content-Type", "text/html; charset=utf-8");
						res.end(DOCS_PAGE);
					},
					"GET /init.js"(_req: IncomingMessage, res: ServerResponse) {
						res.setHeader("Content-Type", "text/javascript; charset=utf-8");
						res.end(DOCS_INIT);
					}
				}
			},
			{
				// FHIR R4 (services/fhir.service.ts): the same tokens, roles and audit trail as the REST API, in FHIR's
				// media type, the body unmerged (a resource is not params), and every error an OperationOutcome.
				path: "/fhir",
				whitelist: ["fhir.*"],
				authentication: true,
				authorization: true,
				autoAliases: true,
				mappingPolicy: "restrict",
				mergeParams: false,
				onBeforeCall(_ctx: unknown, _route: unknown, req: GatewayRequest) {
					passRequestConditions(req);
					prepareFhirRequest(req);
				},
				onAfterCall(this: RecordsAccess, ctx: { meta: { $statusCode?: number } }, _route: unknown, req: GatewayRequest, _res: ServerResponse, data: unknown) {
					// The patient the answer shows, as a REST answer's `patientId` or `id` names it.
					this.recordAccess(req, ctx.meta.$statusCode ?? 200, { patientId: patientShownBy(data) });
					return data;
				},
				onError: sendOperationOutcome,
				bodyParsers: {
					json: { strict: true, limit: config.bodyLimit, type: JSON_MEDIA_TYPES },
					urlencoded: false
				},
				use: [apiSecurityHeaders, fhirContentNegotiation, requireJsonBody, refusePrototypeKeys],
				logging: true
			},
			{
				path: "/",
				whitelist: ["api.health", "api.ready", "api.openapi", "auth.*", "audit.*", "patients.*", "billing.*", "analytics.*", "doctors.*", "appointments.*"],
				aliases: {
					"GET /health": "api.health",
					"GET /ready": "api.ready",
					"GET /openapi.json": "api.openapi"
				},
				// Every request is authenticated and authorised against the action's declared roles (mixins/auth.mixin.ts).
				authentication: true,
				authorization: true,
				onBeforeCall(_ctx: unknown, _route: unknown, req: GatewayRequest) {
					passRequestConditions(req);
				},
				onAfterCall(
					this: RecordsAccess,
					ctx: { meta: { $statusCode?: number } },
					_route: unknown,
					req: GatewayRequest,
					_res: ServerResponse,
					data: unknown
				) {
					// The response status is set after this hook, from what the action asked for.
					this.recordAccess(req, ctx.meta.$statusCode ?? 200, data);
					return data;
				},
				// REST paths come from each action's `rest` definition, next to its params.
				autoAliases: true,
				mappingPolicy: "restrict",
				bodyParsers: {
					json: { strict: true, limit: config.bodyLimit, type: JSON_MEDIA_TYPES },
					urlencoded: false
				},
				// After the body parser: the security headers; a body must be JSON; no key may reach a prototype when the params are merged.
				use: [apiSecurityHeaders, requireJsonBody, refusePrototypeKeys],
				logging: true
			}
		],
		log4XXResponses: false,
		// No line before a request (with its URL, query included): the access line after it says all (logResponse).
		logRequest: null,
		logRequestParams: null,
		logResponseData: null
	},

	created() {
		ensureMetric(this.broker.metrics, {
			type: "histogram",
			name: METRICS.httpDuration,
			labelNames: ["method", "route", "status"],
			buckets: HTTP_DURATION_BUCKETS,
			description: "Time from a request's arrival at the gateway to its answer, in seconds, by method, route template and status"
		});
	},

	actions: {
		/** Liveness: the gateway process answers. */
		health: {
			public: true,
			handler() {
				return { status: "ok", nodeID: this.broker.nodeID, uptime: Math.round(process.uptime()) };
			}
		},

		/** The OpenAPI 3.1 document, generated from the routed actions' `rest`, `params` and `roles`. */
		openapi: {
			public: true,
			handler() {
				const aliases = (this as unknown as { aliases: GatewayAlias[] }).aliases;
				const actions = new Map(
					(this.broker.registry.getActionList({}) as { name: string; action?: ActionSchema }[]).map(a => [a.name, a.action])
				);
				const routes: RoutedAction[] = aliases
					// FHIR describes itself, at /fhir/metadata.
					.filter(alias => alias.action && alias.method !== "*" && !alias.action.startsWith("fhir."))
					.map(alias => {
						const action = actions.get(alias.action!);
						return { method: alias.method, path: alias.fullPath, action: alias.action!, params: action?.params as Record<string, unknown>, roles: action?.roles, public: action?.public };
					});
				return buildOpenApi(routes, { title: "MedSync API", version: PACKAGE_VERSION });
			}
		},

		/** Readiness: the transporter, and every service's own dependencies (database, Kafka, gRPC peer); 503 while any is down. */
		ready: {
			public: true,
			async handler(ctx: Context<unknown, { $statusCode?: number }>) {
				const transit = (this.broker as unknown as { transit?: { connected: boolean } }).transit;
				const checks: Record<string, string> = { transporter: !transit || transit.connected ? "up" : "down: disconnected" };
				// Accesses not reaching the audit trail for too long: the gateway must not look healthy (mixins/audit-trail.mixin.ts).
				checks.auditJournal = (this as unknown as { auditJournalCheck(): string }).auditJournalCheck();
				await Promise.all(
					config.readyServices.map(async service => {
						try {
							const report = await ctx.call<{ checks: Record<string, string> }, object>(`${service}.health`, {}, { timeout: 3000 });
							for (const [name, state] of Object.entries(report.checks)) checks[`${service}.${name}`] = state;
						} catch (err) {
							checks[service] = `down: ${(err as Error).message}`;
						}
					})
				);
				// A service can answer before the gateway has routed it (moleculer-web builds its aliases a moment after a
				// service appears): until then its paths are 404, so the gateway is not ready for it either.
				const aliases = (this as unknown as { aliases: GatewayAlias[] }).aliases;
				for (const service of config.readyServices) {
					checks[`${service}.routes`] = aliases.some(alias => alias.action?.startsWith(`${service}.`)) ? "up" : "down: not routed yet";
				}
				const up = Object.values(checks).every(state => state === "up");
				if (!up) ctx.meta.$statusCode = 503;
				return { status: up ? "ready" : "unavailable", checks };
			}
		}
	},

	methods: {
		/**
		 * What a log line may say about a request: the method and the route's
		 * template (`/patients/:id`), never the URL's query or the body, which hold
		 * names, emails, MRNs and search terms; the request and the user by id.
		 */
		requestFields(req: GatewayRequest): RequestLogFields {
			return {
				method: req.method ?? "?",
				route: req.$alias?.fullPath ?? null,
				requestId: req.$ctx?.requestID ?? null,
				userId: req.$ctx?.meta.user?.id ?? null
			};
		},

		/** One structured line per answered request, errors included, and its time in the latency histogram. */
		logResponse(req: GatewayRequest & { $startTime?: [number, number] }, res: ServerResponse) {
			const elapsed = req.$startTime ? process.hrtime(req.$startTime) : undefined;
			const ms = elapsed ? Math.round((elapsed[0] * 1e3 + elapsed[1] / 1e6) * 10) / 10 : null;
			const fields = this.requestFields(req);
			this.logger.info({ ...fields, status: res.statusCode, ms }, `${fields.method} ${fields.route ?? "(no route)"} ${res.statusCode} ${ms ?? "?"} ms`);
			if (elapsed && this.broker.isMetricsEnabled()) {
				// The route's template, never the path: ids in a label would make a series per patient.
				const labels = { method: fields.method, route: fields.route ?? "unmatched", status: String(res.statusCode) };
				this.broker.metrics.observe(METRICS.httpDuration, elapsed[0] + elapsed[1] / 1e9, labels);
			}
		},

		/** moleculer-web logs a failure here before sending it, without its cause; sendError logs it with one. */
		errorHandler(req: GatewayRequest, res: ServerResponse, err: ErrorLike) {
			this.sendError(req, res, err);
		},

		/**
		 * Every failure leaves as `{ name, message, code, type, data }` with a 4xx or
		 * 5xx status. A 500's cause stays in the log, with its stack and the request's
		 * id; a 503 tells the client when to try again.
		 */
		sendError(req: GatewayRequest, res: ServerResponse, err: ErrorLike) {
			const clientError = toClientError(err);
			// An error may come before the route's middlewares ran (a body the parser refused, a path no route serves).
			if (!res.headersSent) apiSecurityHeaders(req, res, () => {});
			if (clientError.code === 500) this.logger.error({ ...this.requestFields(req), ...errorFields(err) }, "Request failed");
			const retryAfter = (clientError.data as { retryAfter?: number } | null)?.retryAfter;
			if (clientError.code === 429 && retryAfter) res.setHeader("Retry-After", String(retryAfter));
			if (clientError.code === 503) res.setHeader("Retry-After", String(retryAfter ?? SERVICE_UNAVAILABLE_RETRY_SECONDS));
			this.recordAccess(req, clientError.code);
			return defaultSendError.call(this, req, res, clientError);
		}
	}
};

export default ApiService;
