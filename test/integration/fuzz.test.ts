import Ajv2020, { type ValidateFunction } from "ajv/dist/2020";
import addFormats from "ajv-formats";
import fc from "fast-check";
import type { ServiceSchema } from "moleculer";
import AnalyticsService from "../../services/analytics.service";
import AppointmentsService from "../../services/appointments.service";
import BillingService from "../../services/billing.service";
import DoctorsService from "../../services/doctors.service";
import PatientsService from "../../services/patients.service";
import { PROTOTYPE_KEYS as PROTOTYPE_KEY_SET } from "../../lib/infra/validator";
import { type TestCluster, adminLogin, request, startCluster } from "../helpers/cluster";
import { doctorBody, patientBody } from "../helpers/fixtures";

/**
 * Property-based fuzzing of every operation the gateway documents in
 * /openapi.json, as an ADMIN (who may call them all): bad path ids, query
 * values and bodies, unknown and prototype keys, control characters, extremes,
 * wrong content types, empty and oversized bodies. Whatever comes in, the
 * answer is never a 5xx, always arrives, has a status the document lists for
 * the operation, and a body its schema there takes (an error's included).
 * FUZZ_RUNS sets the runs per operation; a failure prints the seed, which
 * FUZZ_SEED replays.
 */

const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
const REQUEST_TIMEOUT_MS = 5_000;

interface Operation {
	method: string;
	path: string;
	operationId: string;
	/** `[]` for a public action. */
	security?: unknown[];
	pathParams: string[];
	queryParams: { name: string; required: boolean; schema: Record<string, unknown> }[];
	body?: Record<string, any>;
	/** The answer's body schema, by each status the document lists; null for one without a body. */
	responses: Map<string, ValidateFunction | null>;
}

let cluster: TestCluster;
let spec: any;
let token: string;
let operations: Operation[];
let requests = 0;
let relogins = 0;

beforeAll(async () => {
	cluster = await startCluster([PatientsService, BillingService, DoctorsService, AppointmentsService, AnalyticsService] as ServiceSchema[]);
	spec = (await request(cluster.baseUrl, "GET", "/openapi.json")).body;
	// The answers' schemas, checked by a JSON Schema 2020-12 validator: their $refs point into the document's components.
	const ajv = new Ajv2020({ strict: false });
	addFormats(ajv);
	ajv.addSchema({ $id: "/openapi.json", components: spec.components });
	token = await adminLogin(cluster.baseUrl);
	Object.assign(knownIds, await recordsToFuzz());
	operations = Object.entries(spec.paths as Record<string, Record<string, any>>).flatMap(([path, methods]) =>
		Object.entries(methods)
			// Logging out would end the fuzzer's own session; the rest is fair game.
			.filter(([, op]) => op.operationId !== "auth.logout")
			.map(([method, op]) => ({
				method: method.toUpperCase(),
				path,
				operationId: op.operationId,
				security: op.security,
				pathParams: (op.parameters ?? []).filter((p: any) => p.in === "path").map((p: any) => p.name),
				queryParams: (op.parameters ?? []).filter((p: any) => p.in === "query"),
				body: op.requestBody?.content?.["application/json"]?.schema,
				responses: new Map(
					Object.entries<any>(op.responses).map(([status, answer]) => {
						const schema = answer.content?.["application/json"]?.schema;
						return [status, schema ? ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"/openapi.json#/components/'))) : null];
					})
				)
			}))
	)
		// Deleting the known records goes last, so that every other operation finds them.
		.sort((a, b) => Number(a.method === "DELETE") - Number(b.method === "DELETE"));
});

afterAll(() => cluster?.stop());

/** A patient (with its billing account), a doctor and a booking between them. */
async function recordsToFuzz(): Promise<Record<string, string>> {
	const admin = { authorization: `Bearer ${token}` };
	const patient = await request(cluster.baseUrl, "POST", "/patients", patientBody(), admin);
	const doctor = await request(cluster.baseUrl, "POST", "/doctors", doctorBody(), admin);
	expect([patient.status, doctor.status]).toEqual([201, 201]);
	const appointment = await request(cluster.baseUrl, "POST", "/appointments", { patientId: patient.body.id, doctorId: doctor.body.id, start: "2030-01-07T09:00:00Z" }, admin);
	expect(appointment.status).toBe(201);
	const account = await request(cluster.baseUrl, "GET", `/billing/accounts?patientId=${patient.body.id}`, undefined, admin);
	expect(account.body.rows).toHaveLength(1);
	return { patient: patient.body.id, doctor: doctor.body.id, appointment: appointment.body.id, account: account.body.rows[0].id };
}

const CONTROL = fc.constantFrom("\u0000", "\u0001", "\u0007", "\u001b", "\u007f", "\ud800", "\udfff");
const PROTOTYPE_KEYS = [...PROTOTYPE_KEY_SET];

/** Text a careless or hostile client sends: control characters, lone surrogates, markup, huge or empty strings. */
const nastyText = fc.oneof(
	fc.string({ maxLength: 40 }),
	fc.string({ unit: "binary", maxLength: 40 }),
	fc.tuple(fc.string({ maxLength: 10 }), CONTROL, fc.string({ maxLength: 10 })).map(([a, c, b]) => a + c + b),
	fc.constantFrom("", " ", "null", "undefined", "NaN", "-1", "0", "1e309", "99999999999999999999", "-99999999999999999999", "0x10", "1.5", "true", "[]", "{}"),
	fc.constantFrom("00000000-0000-0000-0000-000000000001", "ffffffff-ffff-ffff-ffff-ffffffffffff", "not-a-uuid", "../../etc/passwd", "'; DROP TABLE patients; --"),
	fc.constantFrom("0000-01-01", "9999-12-31", "-271821-04-20", "275760-09-13", "2024-02-30", "2024-13-01", "2026-01-01T25:00:00Z", "+275760-09-13T00:00:00Z"),
	fc.constantFrom("x".repeat(5000), "é".repeat(300), "👩‍⚕️".repeat(100))
);

/** A value of any JSON type, extremes included. */
const badValue: fc.Arbitrary<unknown> = fc.oneof(
	nastyText,
	fc.constantFrom(null, true, false, 0, -1, -0, 0.5, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, -Number.MAX_SAFE_INTEGER - 2, 2 ** 31, 2 ** 63),
	fc.integer(),
	fc.double({ noNaN: true, noDefaultInfinity: true }),
	fc.array(nastyText, { maxLength: 3 }),
	fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom(...PROTOTYPE_KEYS)), nastyText, { maxKeys: 3 })
);

/** Percent-encoded, or raw fragments that are not valid percent-encoding or UTF-8 at all. */
const urlPart = fc.oneof(
	nastyText.map(text => encodeURIComponent(text.toWellFormed())),
	fc.constantFrom("%", "%zz", "%FF", "%ED%A0%80", "%C0%AF", "%00", "..%2F..%2F", "a%2Fb", "%E0%A4%A")
);

type JsonSchema = Record<string, any>;

/**
 * A value its schema accepts. Bad input mostly fails validation on its first
 * field; a valid request with one thing wrong gets past the validator to the
 * service and its database, where the worst answers come from.
 */
function validValue(schema: JsonSchema): fc.Arbitrary<unknown> {
	if (schema.enum) return fc.constantFrom(...schema.enum);
	const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
	switch (type) {
		case "integer":
			return fc.integer({ min: schema.minimum ?? 0, max: Math.min(schema.maximum ?? 1000, (schema.minimum ?? 0) + 1000) });
		case "number":
			return fc.double({ min: schema.minimum ?? 0, max: schema.maximum ?? 1000, noNaN: true });
		case "boolean":
			return fc.boolean();
		case "array":
			return fc.array(schema.items ? validValue(schema.items) : fc.constant("x"), { maxLength: 2 });
		case "object":
			return validObject(schema);
		case "string":
			if (schema.format === "email") return fc.stringMatching(/^[a-z]{1,12}\.[a-z0-9]{1,8}@example\.org$/);
			if (schema.format === "date") return fc.date({ min: new Date("1900-01-01"), max: new Date("2020-12-31"), noInvalidDate: true }).map(d => d.toISOString().slice(0, 10));
			if (schema.format === "date-time") return fc.date({ min: new Date("2027-01-01"), max: new Date("2027-12-31"), noInvalidDate: true }).map(d => d.toISOString());
			if (schema.format === "uuid") return idValue(undefined);
			if (schema.pattern) return fc.stringMatching(new RegExp(schema.pattern)).filter(v => v.length <= (schema.maxLength ?? 100));
			return fc.string({ minLength: Math.max(1, schema.minLength ?? 1), maxLength: Math.min(schema.maxLength ?? 30, 30) }).filter(v => v.trim().length > 0);
		default:
			return fc.string({ maxLength: 10 });
	}
}

function validObject(schema: JsonSchema): fc.Arbitrary<Record<string, unknown>> {
	const properties = (schema.properties ?? {}) as Record<string, JsonSchema>;
	// A path or body id may be any short string (a malformed one is a 404, not a 422): ids are known by their names here.
	const value = (name: string, property: JsonSchema) =>
		name === "id" || name.endsWith("Id") ? idValue(name.replace(/Id$/, "")) : (VALID_BY_NAME[name] ?? validValue(property));
	return fc.record(Object.fromEntries(Object.entries(properties).map(([name, property]) => [name, value(name, property)])), {
		requiredKeys: (schema.required ?? []) as string[]
	}) as fc.Arbitrary<Record<string, unknown>>;
}

/** Fields whose rules the OpenAPI document cannot express (a timezone, a schedule, a slot inside it). */
const VALID_BY_NAME: Record<string, fc.Arbitrary<unknown>> = {
	timezone: fc.constantFrom("UTC", "Europe/Berlin", "America/New_York"),
	availability: fc.constant([{ day: "monday", start: "08:00", end: "18:00" }]),
	start: fc.integer({ min: 0, max: 52 }).map(week => new Date(Date.UTC(2031, 0, 6 + 7 * week, 9)).toISOString()),
	date: fc.integer({ min: 0, max: 52 }).map(week => new Date(Date.UTC(2031, 0, 6 + 7 * week)).toISOString().slice(0, 10)),
	startTime: fc.constantFrom("09:00", "10:30", "17:00")
};

/** Ids of records that exist, so that a request gets past its 404; made in beforeAll. */
const knownIds: Record<string, string> = {};

/** Mostly the known record of this kind (patient, doctor, appointment, account), else any known one or a random id. */
function idValue(kind: string | undefined): fc.Arbitrary<string> {
	const known = kind && knownIds[kind] ? [{ weight: 3, arbitrary: fc.constant(knownIds[kind]) }] : [];
	return fc.oneof(...known, { weight: 1, arbitrary: fc.constantFrom(...Object.values(knownIds)) }, { weight: 1, arbitrary: fc.uuid() });
}

/** The kind of record a path's id names: /patients/{id} → patient. */
function pathKind(path: string): string | undefined {
	const match = /\/(patients|doctors|appointments|accounts)\/\{/.exec(path);
	return match ? match[1].replace(/s$/, "") : undefined;
}

/** One thing wrong with a valid object: a field replaced or added, a control character in a text field, or a field dropped. */
function mutated(base: fc.Arbitrary<Record<string, unknown>>, fields: string[]): fc.Arbitrary<[string, unknown][]> {
	const anyKey = fc.oneof(fc.constantFrom(...fields, "unknownField", ...PROTOTYPE_KEYS), fc.string({ maxLength: 12 }));
	return base.chain(object => {
		const entries = Object.entries(object);
		const texts = entries.filter(([, value]) => typeof value === "string").map(([name]) => name);
		const mutations: fc.Arbitrary<[string, unknown][]>[] = [
			fc.constant(entries),
			fc.tuple(anyKey, badValue).map(([key, value]) => [...entries.filter(([name]) => name !== key), [key, value]])
		];
		if (texts.length) {
			mutations.push(
				fc.tuple(fc.constantFrom(...texts), CONTROL).map(([key, control]) =>
					entries.map(([name, value]) => [name, name === key ? `${String(value).slice(0, 1)}${control}${String(value).slice(1)}` : value])
				)
			);
		}
		if (entries.length) mutations.push(fc.constantFrom(...entries.map(([name]) => name)).map(key => entries.filter(([name]) => name !== key)));
		return fc.oneof(...mutations);
	});
}

/** A JSON object as text, so that prototype keys survive (JSON.stringify would drop them). */
function jsonObjectText(entries: [string, unknown][]): string {
	return `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value) ?? "null"}`).join(",")}}`;
}

const bodyText = (schema: JsonSchema | undefined) =>
	fc.oneof(
		{ weight: 8, arbitrary: mutated(validObject(schema ?? {}), Object.keys(schema?.properties ?? {})).map(jsonObjectText) },
		{ weight: 1, arbitrary: fc.constantFrom("", "[]", "null", "1", '"text"', "{", '{"a":}', "x".repeat(200 * 1024), `{"name":"${"x".repeat(200 * 1024)}"}`) }
	);

const contentType = fc.oneof(
	{ weight: 8, arbitrary: fc.constant("application/json") },
	{ weight: 1, arbitrary: fc.constantFrom("text/plain", "application/xml", "multipart/form-data; boundary=xyz", "application/x-www-form-urlencoded", "application/json; charset=utf-16", "", "application/octet-stream") }
);

function requestFor(op: Operation) {
	const querySchema = {
		properties: Object.fromEntries(op.queryParams.map(p => [p.name, p.schema])),
		required: op.queryParams.filter(p => p.required).map(p => p.name)
	};
	const queryValue = (value: unknown) => (typeof value === "string" ? encodeURIComponent(value.toWellFormed()) : encodeURIComponent(JSON.stringify(value) ?? ""));
	const query = fc.oneof(
		// Valid values with one of them bad (or an unknown or prototype key added)...
		mutated(validObject(querySchema), op.queryParams.map(p => p.name)).map(entries => entries.map(([key, value]) => [encodeURIComponent(key), queryValue(value)] as [string, string])),
		// ...or raw keys and values that are not even well-formed.
		fc.array(fc.tuple(fc.oneof(fc.constantFrom(...op.queryParams.map(p => p.name), "__proto__[polluted]", "page[0]"), fc.string({ maxLength: 8 }).map(encodeURIComponent)), urlPart), { maxLength: 4 })
	);
	const withBody = op.method !== "GET" && op.method !== "DELETE";
	return fc.record({
		pathValues: fc.array(fc.oneof({ weight: 2, arbitrary: idValue(pathKind(op.path)) }, { weight: 1, arbitrary: urlPart }), {
			minLength: op.pathParams.length,
			maxLength: op.pathParams.length
		}),
		// An operation with a body mostly gets no query, so that the body's one mistake is what is tested.
		query: withBody ? fc.oneof({ weight: 4, arbitrary: fc.constant<[string, string][]>([]) }, { weight: 1, arbitrary: query }) : query,
		body: withBody ? fc.option(bodyText(op.body), { nil: undefined, freq: 8 }) : fc.constant(undefined),
		contentType
	});
}

async function send(op: Operation, input: { pathValues: string[]; query: [string, string][]; body?: string; contentType: string }) {
	let i = 0;
	const path = op.path.replace(/\{\w+\}/g, () => input.pathValues[i++] || "x");
	const qs = input.query.map(([key, value]) => `${key}=${value}`).join("&");
	// Each request from its own client address (TRUST_PROXY is on in tests): failed logins must not throttle the fuzzer's own.
	const headers: Record<string, string> = { authorization: `Bearer ${token}`, "x-forwarded-for": `10.${(requests >> 16) & 255}.${(requests >> 8) & 255}.${requests++ & 255}` };
	if (input.body !== undefined && input.contentType) headers["content-type"] = input.contentType;
	const res = await fetch(`${cluster.baseUrl}${path}${qs ? `?${qs}` : ""}`, {
		method: op.method,
		headers,
		body: input.body,
		signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS)
	});
	return { status: res.status, text: await res.text() };
}

describe("fuzzing every documented operation with bad input", () => {
	test("never a 5xx, never a hang, and every error in the documented shape", async () => {
		const required: string[] = spec.components.schemas.Error.required;
		expect(required.sort()).toEqual(["code", "data", "message", "name", "type"]);
		expect(operations.length).toBeGreaterThan(30);
		// Every operation is fuzzed, and every one that fails is reported, not just the first.
		const failures: string[] = [];
		for (const op of operations) {
			const details = await fc.check(
				fc.asyncProperty(requestFor(op), async input => {
					const { status, text } = await send(op, input);
					if (process.env.FUZZ_DEBUG) console.log(op.operationId, status, text.slice(0, 150));
					// A 401 from a public action is its answer (a bad login); from any other, the fuzzer's own token has gone.
					if (status === 401 && op.security?.length !== 0) {
						// Only an operation that ends sessions could have cost the admin its token: anything else refused a valid one.
						relogins += 1;
						token = await adminLogin(cluster.baseUrl);
					}
					const where = `${op.method} ${op.path} → ${status}: ${text.slice(0, 300)}`;
					if (status >= 500) throw new Error(where);
					if (!op.responses.has(String(status))) throw new Error(`undocumented status in ${where}`);
					const validate = op.responses.get(String(status));
					const body = text ? JSON.parse(text) : undefined;
					if (validate && !validate(body)) throw new Error(`not the documented body (${JSON.stringify(validate.errors).slice(0, 300)}) in ${where}`);
					if (status < 400) return;
					for (const field of required) if (!(field in body)) throw new Error(`missing '${field}' in ${where}`);
					if (body.code !== status) throw new Error(`code ${body.code} in ${where}`);
					if (text.includes("nodeID") || text.includes(op.operationId)) throw new Error(`internal names in ${where}`);
				}),
				// No shrinking: a hang would cost a timeout per shrinking step. The seed and path replay the failure.
				{ numRuns: RUNS, endOnFailure: true, ...(process.env.FUZZ_SEED && { seed: Number(process.env.FUZZ_SEED) }) }
			);
			if (details.failed) failures.push(`${op.operationId} (seed ${details.seed}, path "${details.counterexamplePath}"): ${String((details.errorInstance as Error)?.message ?? details.errorInstance)}\n  input: ${JSON.stringify(details.counterexample)?.slice(0, 300)}`);
		}
		expect(failures).toEqual([]);
		expect(relogins).toBe(0);
	}, 600_000);
});
