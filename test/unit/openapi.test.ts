import { Type } from "@sinclair/typebox";
import { buildOpenApi, ruleSchema } from "../../lib/infra/openapi";
import { Nullable, PageOf, StringEnum } from "../../lib/domain/schemas";

const Thing = Type.Object({ id: Type.String(), kind: Nullable(StringEnum(["a", "b"] as const)) }, { $id: "Thing" });

function operation(route: Parameters<typeof buildOpenApi>[0][number]) {
	const doc = buildOpenApi([route], { title: "t", version: "1" }) as any;
	return { doc, op: doc.paths[route.path.replace(/:(\w+)/g, "{$1}")][route.method.toLowerCase()] };
}

describe("the OpenAPI generator", () => {
	test("a nullable enum is null by type and among its values", () => {
		expect(ruleSchema({ type: "enum", values: ["x", "y"], nullable: true })).toEqual({ type: ["string", "null"], enum: ["x", "y", null] });
		expect(ruleSchema({ type: "enum", values: ["x", "y"] })).toEqual({ type: "string", enum: ["x", "y"] });
		expect(JSON.parse(JSON.stringify(Thing.properties.kind))).toEqual({ type: ["string", "null"], enum: ["a", "b", null] });
	});

	test("an entity with an $id becomes a component, referenced wherever it appears, without its $id", () => {
		const { doc, op } = operation({ method: "GET", path: "/things", action: "things.list", roles: ["ADMIN"], responses: { 200: { description: "A page", schema: PageOf(Thing) } } });
		expect(op.responses["200"].content["application/json"].schema.properties.rows).toEqual({ type: "array", items: { $ref: "#/components/schemas/Thing" } });
		expect(doc.components.schemas.Thing.$id).toBeUndefined();
		expect(doc.components.schemas.Thing.properties.id).toEqual({ type: "string" });
		// A page gets its Link header by itself.
		expect(op.responses["200"].headers).toEqual({ Link: { $ref: "#/components/headers/Link" } });
	});

	test("the gateway's errors go where they can happen; the action's own are added with their reasons", () => {
		const guarded = operation({
			method: "PATCH",
			path: "/things/:id",
			action: "things.update",
			roles: ["ADMIN"],
			params: { id: { type: "string" }, name: { type: "string" } },
			responses: { 200: { description: "The thing", schema: Thing, headers: ["ETag"] }, 412: "Stale If-Match." }
		}).op;
		expect(Object.keys(guarded.responses)).toEqual(["200", "400", "401", "403", "404", "412", "413", "415", "422", "500", "503"]);
		expect(guarded.responses["412"].description).toBe("Stale If-Match.");
		expect(guarded.responses["200"].headers).toEqual({ ETag: { $ref: "#/components/headers/ETag" } });

		const open = operation({ method: "GET", path: "/open", action: "things.open", public: true, responses: { 200: { description: "Hi", schema: Thing } } }).op;
		expect(Object.keys(open.responses)).toEqual(["200", "400", "422", "500", "503"]);
		expect(open.security).toEqual([]);
		expect(open.responses["503"].headers).toEqual({ "Retry-After": { $ref: "#/components/headers/Retry-After" } });
	});

	test("a body declared for an error status replaces the Error body there; an empty success has no content", () => {
		const { op } = operation({
			method: "DELETE",
			path: "/things/:id",
			action: "things.remove",
			roles: ["ADMIN"],
			responses: { 204: { description: "Gone" }, 503: { description: "Report", schema: Thing } }
		});
		expect(op.responses["204"].content).toBeUndefined();
		expect(op.responses["503"]).toEqual({ description: "Report", content: { "application/json": { schema: { $ref: "#/components/schemas/Thing" } } } });
	});
});
