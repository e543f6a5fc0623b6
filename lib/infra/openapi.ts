/**
 * OpenAPI 3.1, generated from what the actions declare: the gateway's aliases
 * (from each action's `rest`) give the operations, the `params` (fastest-validator
 * rules) give the parameters and bodies, `roles` and `public` give the security.
 * Nothing here is maintained by hand.
 */

type Rule = Record<string, unknown> | string;
type JsonSchema = Record<string, unknown>;

export interface RoutedAction {
	method: string;
	/** The alias's full path, e.g. /patients/:id */
	path: string;
	action: string;
	params?: Record<string, unknown>;
	roles?: readonly string[];
	public?: boolean;
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
			schema = { type: "string", enum: rule.values };
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
	properties: {
		name: { type: "string" },
		message: { type: "string" },
		code: { type: "integer" },
		type: { type: "string" },
		data: { description: "Details: for a validation error, one entry per field; null when there are none." }
	},
	required: ["name", "message", "code", "type", "data"]
};

export function buildOpenApi(routes: RoutedAction[], info: { title: string; version: string }): JsonSchema {
	const paths: Record<string, Record<string, JsonSchema>> = {};
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
			responses: {
				"2XX": { description: "Success", content: { "application/json": { schema: {} } } },
				"4XX": { description: "The client's mistake", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } },
				"5XX": { description: "A fault of the server or a service behind it", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } }
			}
		};
	}
	return {
		openapi: "3.1.0",
		info,
		security: [{ bearerAuth: [] }],
		paths,
		components: {
			securitySchemes: { bearerAuth: { type: "http", scheme: "bearer", bearerFormat: "JWT" } },
			schemas: { Error: ERROR_SCHEMA }
		}
	};
}
