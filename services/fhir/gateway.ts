import type { ServerResponse } from "node:http";
import typeis from "type-is";
import { config } from "../../lib/infra/config";
import type { GatewayRequest } from "../../mixins/auth.mixin";
import { FHIR_JSON } from "./conventions";
import { type ClientError, notSupported, operationOutcome } from "./outcome";
import { patientNamedBy } from "./audit-subject";
import type { FhirMeta, FhirParams } from "./resource";

/** What the gateway's /fhir route does that its REST route does not: FHIR's formats, its request headers, its errors. */

const FORMATS = new Set(["json", "application/json", "application/fhir+json"]);
const ACCEPTED = ["application/fhir+json", "application/json", "application/*+json"];
const HOST = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/** `_format` (json only) and Accept: anything but FHIR JSON is 406, as FHIR asks. */
export function fhirContentNegotiation(req: GatewayRequest, _res: ServerResponse, next: (err?: unknown) => void): void {
	const format = new URL(req.url ?? "/", "http://localhost").searchParams.get("_format");
	if (format !== null) {
		if (!FORMATS.has(format.split(";")[0].trim())) return next(notSupported(406, `MedSync speaks FHIR JSON only (_format=json), not ${format.slice(0, 64)}`));
		return next();
	}
	const accept = req.headers.accept;
	if (accept && !accept.split(",").some(type => typeis.is(type.split(";")[0].trim(), ACCEPTED) || /^\*\/\*|^application\/\*$/.test(type.trim()))) {
		return next(notSupported(406, "MedSync answers application/fhir+json only: ask for it in Accept"));
	}
	next();
}

function header(req: GatewayRequest, name: string): string | undefined {
	const value = req.headers[name];
	return Array.isArray(value) ? value.join(",") : value;
}

/** The server's base URL as this client reached it: fullUrls and links must resolve for it. */
function baseOf(req: GatewayRequest): string {
	const forwarded = config.trustProxy ? header(req, "x-forwarded-proto") : undefined;
	const scheme = forwarded === "https" || forwarded === "http" ? forwarded : "http";
	const host = header(req, "host");
	return `${scheme}://${host && HOST.test(host) ? host : `127.0.0.1:${config.port}`}/fhir`;
}

/** Before the call (and before authentication): the request's FHIR headers for the action, and its patient for the audit record. */
export function prepareFhirRequest(req: GatewayRequest): void {
	const ctx = req.$ctx as { meta: FhirMeta } | undefined;
	if (ctx) {
		const ifNoneExist = header(req, "if-none-exist");
		ctx.meta.fhir = {
			base: baseOf(req),
			handling: /\bhandling\s*=\s*strict\b/i.test(header(req, "prefer") ?? "") ? "strict" : "lenient",
			...(ifNoneExist && { ifNoneExist: ifNoneExist.slice(0, 2048) })
		};
	}
	const params = req.$params as FhirParams | undefined;
	if (params) {
		const patientId = patientNamedBy(req.$action?.name, params);
		if (patientId) params.patientId = patientId;
	}
}

/** moleculer-web's route onError: the gateway's sendError has already logged, audited and mapped the error; this writes it as an OperationOutcome. */
export function sendOperationOutcome(this: { logResponse(req: GatewayRequest, res: ServerResponse): void }, req: GatewayRequest, res: ServerResponse, err: Error): void {
	if (res.headersSent) return;
	const error = err as unknown as ClientError;
	const status = error.code >= 400 && error.code < 600 ? error.code : 500;
	res.statusCode = status;
	res.setHeader("Content-Type", FHIR_JSON);
	res.end(JSON.stringify(operationOutcome({ code: status, message: error.message, type: error.type, data: error.data })));
	this.logResponse(req, res);
}
