/**
 * OpenAPI 3.1, generated from what the actions declare: the gateway's aliases
 * (from each action's `rest`) give the operations, the `params` (fastest-validator
 * rules) give the parameters and bodies, `roles` and `public` give the security,
 * `responses` (JSON Schemas whose static types the handlers return) the answers.
 * The errors the gateway itself may answer are added to every operation that can
 * meet them. Nothing here is maintained by hand.
 */

import type { TSchema } from "@sinclair/typebox";

type Rule = Record<string, unknown> | string;
type JsonSchema = Record<string, unknown>;

/** A header a successful answer carries: Link comes with every page by itself (services/api.service.ts). */
export type ResponseHeader = "ETag" | "Location";

/** A successful answer of an action. */
export interface SuccessResponse {
	description: string;
	/** The body's schema (TypeBox: the handler returns its `Static` type); none for an empty answer. */
	schema?: TSchema;
	headers?: ResponseHeader[];
}

/**
 * What an action answers through the gateway, by status: each success with its
 * body, and each error the action itself may answer (a conflict, a stale
 * If-Match) with a sentence saying when. An error's body is always `Error`.
 */
export type ActionResponses = Record<number, SuccessResponse | string>;

export interface RoutedAction {
	method: string;
	/** The alias's full path, e.g. /patients/:id */
	path: string;
	action: string;
	params?: Record<string, unknown>;
	roles?: readonly string[];
	public?: boolean;
	responses?: ActionResponses;
}

function normalize(rule: Rule): Record<string, unknown> {
	if (typeof rule === "string") {
		const [type, ...flags] = rule.split("|");
		return { type, optional: flags.includes("optional") };
	}
	return rule;
}

/** JSON Schema for one fastest-validator rule. */
export function ruleSchema(input: Rule): JsonSchema {
	const rule = normalize(input);
	let schema: JsonSchema;
	switch (rule.type) {
		case "string":
			schema = {
				type: "string",
				...(rule.min !== undefined && { minLength: rule.min }),
				...(rule.max !== undefined && { maxLength: rule.max }),
				...(rule.empty === false && { minLength: Math.max(1, Number(rule.min ?? 1)) }),
				...(rule.pattern instanceof RegExp && { pattern: rule.pattern.source }),
				...(typeof rule.format === "string" && { format: rule.format })
			};
			break;
		case "email":
			schema = { type: "string", format: "email", ...(rule.max !== undefined && { maxLength: rule.max }) };
			break;
		case "uuid":
			schema = { type: "string", format: "uuid" };
			break;
		case "number":
			schema = {
				type: rule.integer ? "integer" : "number",
				...(rule.min !== undefined && { minimum: rule.min }),
				...(rule.max !== undefined && { maximum: rule.max })
			};
			break;
		case "boolean":
			schema = { type: "boolean" };
			break;
		case "date":
			schema = { type: "string", format: "date-time" };
			break;
		case "enum":
			// A nullable enum lists null among its values too: JSON Schema checks `enum` apart from `type`.
			schema = { type: "string", enum: rule.nullable ? [...(rule.values as unknown[]), null] : rule.values };
			break;
		case "array":
			schema = { type: "array", ...(rule.items !== undefined && { items: ruleSchema(rule.items as Rule) }), ...(rule.max !== undefined && { maxItems: rule.max }) };
			break;
		case "object":
			schema = objectSchema((rule.props ?? rule.properties ?? {}) as Record<string, Rule>, rule.strict === true);
			break;
		default:
			schema = {};
	}
	if (rule.default !== undefined && typeof rule.default !== "function") schema.default = rule.default;
	if (rule.nullable && typeof schema.type === "string") schema.type = [schema.type, "null"];
	return schema;
}

function isOptional(rule: Rule): boolean {
	const r = normalize(rule);
	return r.optional === true || r.default !== undefined;
}

function objectSchema(props: Record<string, Rule>, strict: boolean): JsonSchema {
	const required = Object.entries(props)
		.filter(([, rule]) => !isOptional(rule))
		.map(([name]) => name);
	return {
		type: "object",
		properties: Object.fromEntries(Object.entries(props).map(([name, rule]) => [name, ruleSchema(rule)])),
		...(required.length && { required }),
		...(strict && { additionalProperties: false })
	};
}

/** The action's fields, whether declared flat or as a `$$root` object (partial updates). */
function fieldsOf(params: Record<string, unknown> | undefined): Record<string, Rule> {
	if (!params) return {};
	if (params.$$root) return ((params.props ?? params.properties) as Record<string, Rule>) ?? {};
	return Object.fromEntries(Object.entries(params).filter(([name]) => !name.startsWith("$$"))) as Record<string, Rule>;
}

const ERROR_SCHEMA = {
	type: "object",
	description: "Every failure, whatever its status: `code` repeats the status, `type` names the failure for a program.",
	properties: {
		name: { type: "string" },
		message: { type: "string", description: "For a person: what went wrong, and for a validation error which fields." },
		code: { type: "integer", description: "The HTTP status." },
		type: { type: "string", description: "For a program: e.g. VALIDATION_ERROR, NOT_FOUND, PRECONDITION_FAILED." },
		data: { description: "Details: for a validation error, one entry per field (`field`, `message`, `type`); null when there are none." }
	},
	required: ["name", "message", "code", "type", "data"],
	examples: [
		{
			name: "ValidationError",
			message: "The 'email' field must be a valid e-mail.",
			code: 422,
			type: "VALIDATION_ERROR",
			data: [{ field: "email", message: "The 'email' field must be a valid e-mail.", type: "email", actual: "not-an-email" }]
		}
	]
};

/** The errors every operation may meet at the gateway, and what each means there. */
const GATEWAY_ERRORS: Record<number, { when: (route: RoutedAction, hasBody: boolean, hasPathParams: boolean) => boolean; description: string; example: JsonSchema }> = {
	400: {
		when: () => true,
		description: "A malformed If-Match or Idempotency-Key header, or a body that is not valid JSON.",
		example: { name: "BadRequestError", message: "The request body is not valid JSON.", code: 400, type: "INVALID_JSON", data: null }
	},
	401: {
		when: route => !route.public,
		description: "No bearer token, or one that is expired, revoked or not ours.",
		example: { name: "UnauthorizedError", message: "Missing bearer token", code: 401, type: "UNAUTHORIZED", data: null }
	},
	403: {
		when: route => !route.public,
		description: "The token is valid, but its role may not call this operation.",
		example: { name: "ForbiddenError", message: "Your role may not do this", code: 403, type: "FORBIDDEN", data: null }
	},
	404: {
		when: (_route, _hasBody, hasPathParams) => hasPathParams,
		description: "No such record (or it was deleted, or the id is malformed).",
		example: { name: "NotFoundError", message: "Patient not found", code: 404, type: "NOT_FOUND", data: { id: "8d5e9c4e-2f4b-4c43-9d59-3a3f1a3b7a10" } }
	},
	413: {
		when: (_route, hasBody) => hasBody,
		description: "The body is larger than the gateway takes (BODY_LIMIT).",
		example: { name: "PayloadTooLargeError", message: "The request body is larger than 100kb.", code: 413, type: "PAYLOAD_TOO_LARGE", data: null }
	},
	415: {
		when: (_route, hasBody) => hasBody,
		description: "A body that is not JSON (send Content-Type: application/json).",
		example: { name: "UnsupportedMediaTypeError", message: "The request body must be JSON, sent as Content-Type: application/json.", code: 415, type: "UNSUPPORTED_MEDIA_TYPE", data: { contentType: "text/plain" } }
	},
	422: {
		when: () => true,
		description: "A field is missing, unknown or invalid: `data` names each one.",
		example: ERROR_SCHEMA.examples[0]
	},
	500: {
		when: () => true,
		description: "A fault of the server: the log has its cause under the response's X-Request-Id.",
		example: { name: "InternalServerError", message: "Internal server error", code: 500, type: "INTERNAL_ERROR", data: null }
	},
	503: {
		when: () => true,
		description: "A service or its database is unreachable for now: retry after Retry-After seconds.",
		example: { name: "ServiceUnavailableError", message: "The service is temporarily unavailable. Try again shortly.", code: 503, type: "SERVICE_UNAVAILABLE", data: null }
	}
};

const HEADERS: Record<ResponseHeader | "Link" | "Retry-After", JsonSchema> = {
	ETag: { description: "The record's version, to send back as If-Match on a change.", schema: { type: "string", examples: ['W/"3"'] } },
	Location: { description: "Where the record lives.", schema: { type: "string", examples: ["/patients/8d5e9c4e-2f4b-4c43-9d59-3a3f1a3b7a10"] } },
	Link: {
		description: "The list's first, prev, next and last pages (RFC 8288): this request's path and query with another `page`.",
		schema: { type: "string", examples: ['</patients?page=1&pageSize=20>; rel="first", </patients?page=2&pageSize=20>; rel="next", </patients?page=5&pageSize=20>; rel="last"'] }
	},
	"Retry-After": { description: "Seconds to wait before trying again.", schema: { type: "integer", examples: [5] } }
};

const headerRef = (name: keyof typeof HEADERS) => ({ [name]: { $ref: `#/components/headers/${name}` } });

/** Whether a schema is a page of a list (lib/domain/paging.ts): the gateway adds its Link header. */
function isPageSchema(schema: TSchema | undefined): boolean {
	const properties = (schema as { properties?: Record<string, unknown> } | undefined)?.properties;
	return !!properties && ["rows", "page", "pageSize", "totalPages"].every(name => name in properties);
}

/**
 * The schema as the document holds it: every sub-schema with an `$id` (an
 * entity such as Patient) moves to components.schemas under that name, and a
 * `$ref` takes its place; the `$id` itself goes, as it would change the base
 * of every `$ref` inside it.
 */
function hoist(schema: unknown, components: Record<string, unknown>): unknown {
	if (Array.isArray(schema)) return schema.map(item => hoist(item, components));
	if (typeof schema !== "object" || schema === null) return schema;
	const { $id, ...rest } = schema as JsonSchema;
	const copy = Object.fromEntries(Object.entries(rest).map(([key, value]) => [key, key === "examples" || key === "default" ? value : hoist(value, components)]));
	if (typeof $id !== "string") return copy;
	components[$id] ??= copy;
	return { $ref: `#/components/schemas/${$id}` };
}

function operationResponses(route: RoutedAction, hasBody: boolean, hasPathParams: boolean, components: Record<string, unknown>): JsonSchema {
	const responses: Record<string, JsonSchema> = {};
	const declared = Object.entries(route.responses ?? { 200: { description: "Success" } });
	for (const [status, answer] of declared) {
		if (typeof answer === "string") continue;
		responses[status] = {
			description: answer.description,
			...((answer.headers?.length || isPageSchema(answer.schema)) && {
				headers: Object.assign({}, ...(answer.headers ?? []).map(headerRef), ...(isPageSchema(answer.schema) ? [headerRef("Link")] : []))
			}),
			...(answer.schema && { content: { "application/json": { schema: hoist(answer.schema, components) } } })
		};
	}
	const errors: Record<number, string> = Object.fromEntries(
		Object.entries(GATEWAY_ERRORS)
			.filter(([, error]) => error.when(route, hasBody, hasPathParams))
			.map(([status, error]) => [status, error.description])
	);
	for (const [status, answer] of declared) {
		if (typeof answer === "string") errors[Number(status)] = answer;
		// An answer with a body of its own (a readiness report's 503) is not the Error body.
		else delete errors[Number(status)];
	}
	for (const [status, description] of Object.entries(errors).sort(([a], [b]) => Number(a) - Number(b))) {
		const example = GATEWAY_ERRORS[Number(status)]?.example;
		responses[status] = {
			description,
			...((status === "503" || status === "429") && { headers: headerRef("Retry-After") }),
			content: { "application/json": { schema: { $ref: "#/components/schemas/Error" }, ...(example && { example }) } }
		};
	}
	return responses;
}

/** How a client gets a token and uses it: the document's introduction. */
const INTRODUCTION = `MedSync's HTTP API: patients, doctors, appointments, billing and staff accounts.

## Getting a token

Every operation but signup, login, refresh, the key set and the health checks needs a bearer token.
Log in with a staff account's email and password:

    POST /auth/login
    {"email": "admin@medsync.local", "password": "…"}

The answer holds a \`token\` (a JWT, valid for \`expiresIn\` seconds) and a \`refreshToken\`. Send the token on every call:

    Authorization: Bearer <token>

Before it expires, \`POST /auth/refresh {"refreshToken": "…"}\` gives a new pair (each refresh token works once);
\`POST /auth/logout\` ends the session. On the /docs page: **Authorize**, then paste the token.
What a role may do is in each operation's description.

## Conventions

- Errors: every failure has the \`Error\` body, \`code\` repeating the status; a 422 names each bad field in \`data\`.
- Versions: a record's \`version\` comes as \`ETag: W/"3"\`; send it back as \`If-Match\` on a change, which is 412 if the record moved on.
- Retries: \`Idempotency-Key\` on a create gets the first answer again, not a second record.
- Lists: \`page\` and \`pageSize\` (at most 100); the answer says \`total\` and \`totalPages\`, and its \`Link\` header links the first, prev, next and last pages.
`;

export function buildOpenApi(routes: RoutedAction[], info: { title: string; version: string; license?: { name: string; identifier: string } }): JsonSchema {
	const paths: Record<string, Record<string, JsonSchema>> = {};
	const schemas: Record<string, unknown> = {};
	for (const route of [...routes].sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method))) {
		const pathParams = [...route.path.matchAll(/:(\w+)/g)].map(m => m[1]);
		const fields = fieldsOf(route.params);
		const rest = Object.fromEntries(Object.entries(fields).filter(([name]) => !pathParams.includes(name)));
		const inQuery = route.method === "GET" || route.method === "DELETE";
		const parameters = [
			...pathParams.map(name => ({ name, in: "path", required: true, schema: fields[name] ? ruleSchema(fields[name]) : { type: "string" } })),
			...(inQuery ? Object.entries(rest).map(([name, rule]) => ({ name, in: "query", required: !isOptional(rule), schema: ruleSchema(rule) })) : [])
		];
		const openApiPath = route.path.replace(/:(\w+)/g, "{$1}");
		const [service, actionName] = route.action.split(".");
		paths[openApiPath] ??= {};
		paths[openApiPath][route.method.toLowerCase()] = {
			operationId: route.action,
			tags: [service],
			summary: `${actionName} (${service})`,
			description: route.public ? "No token needed." : `Roles: ${(route.roles ?? []).join(", ") || "none"}.`,
			...(route.public && { security: [] }),
			...(parameters.length && { parameters }),
			...(!inQuery && Object.keys(rest).length && {
				requestBody: { required: true, content: { "application/json": { schema: objectSchema(rest, route.params?.$$strict === true || route.params?.strict === true) } } }
			}),
			responses: operationResponses(route, !inQuery, pathParams.length > 0, schemas)
		};
	}
	return {
		openapi: "3.1.0",
		info: { ...info, description: INTRODUCTION },
		servers: [{ url: "/", description: "The gateway that serves this document" }],
		security: [{ bearerAuth: [] }],
		paths,
		components: {
			securitySchemes: { bearerAuth: { type: "http", scheme: "bearer", bearerFormat: "JWT", description: "The `token` from POST /auth/login." } },
			headers: HEADERS,
			schemas: { Error: ERROR_SCHEMA, ...Object.fromEntries(Object.entries(schemas).sort(([a], [b]) => a.localeCompare(b))) }
		}
	};
}
