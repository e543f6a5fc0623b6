import { STATUS_CODES } from "node:http";
import { Errors } from "moleculer";
import { config } from "./config";

export interface ErrorLike {
	name?: string;
	message?: string;
	code?: number;
	type?: string;
	data?: unknown;
}

interface FieldError {
	field?: string;
	message?: string;
	type?: string;
	expected?: unknown;
	actual?: unknown;
}

const SECRET_FIELD = /pass|token|secret/i;

/**
 * What a client learns of one invalid field: which, why, and the value it sent
 * (never for a password or a token). The validator also notes the node and the
 * action that refused it; those are the cluster's business, not the client's.
 */
function forClient({ field, message, type, expected, actual }: FieldError): FieldError {
	const secret = field !== undefined && SECRET_FIELD.test(field);
	return { field, message, type, expected, ...(!secret && { actual }) };
}

/** body-parser marks its errors with a `type`; these are the client's mistakes it can report. */
const BODY_PARSER_ERRORS: Record<string, { name: string; type: string; message: string }> = {
	"entity.parse.failed": { name: "BadRequestError", type: "INVALID_JSON", message: "The request body is not valid JSON." },
	"entity.too.large": {
		name: "PayloadTooLargeError",
		type: "PAYLOAD_TOO_LARGE",
		message: `The request body is larger than ${config.bodyLimit}.`
	},
	"encoding.unsupported": { name: "UnsupportedMediaTypeError", type: "UNSUPPORTED_ENCODING", message: "Unsupported content encoding." },
	"charset.unsupported": { name: "UnsupportedMediaTypeError", type: "UNSUPPORTED_CHARSET", message: "Unsupported charset." }
};

/** Moleculer's and MedSync's types for a node or a database that cannot answer now (a timeout is Moleculer's 504). */
const UNAVAILABLE_TYPES = new Set(["SERVICE_NOT_AVAILABLE", "REQUEST_TIMEOUT", "REQUEST_REJECTED", "DATABASE_UNAVAILABLE"]);

/**
 * Maps any error to the one the client sees: the status it deserves and the
 * common body fields. Internal details of a 5xx never reach the client.
 */
export function toClientError(err: ErrorLike): Errors.MoleculerError {
	const parserError = err.type ? BODY_PARSER_ERRORS[err.type] : undefined;
	if (parserError) return named(parserError.name, parserError.message, err.code ?? 400, parserError.type);

	// A path no routed action serves: the same 404 as any unknown path, without the action's name.
	if (err.type === "SERVICE_NOT_FOUND") return named("NotFoundError", "Not found", 404, "NOT_FOUND");
	if (err.code === 503 || UNAVAILABLE_TYPES.has(err.type ?? "")) {
		// A service node, or its database, is down, gone mid-request or slow: say so, without naming the cluster's nodes.
		return named("ServiceUnavailableError", "The service is temporarily unavailable. Try again shortly.", 503, "SERVICE_UNAVAILABLE");
	}
	const code = typeof err.code === "number" && err.code >= 400 && err.code < 600 ? err.code : 500;
	if (code >= 500) return named("InternalServerError", "Internal server error", 500, "INTERNAL_ERROR");

	if (err.type === "VALIDATION_ERROR" && Array.isArray(err.data)) {
		const fields = (err.data as FieldError[]).map(forClient);
		const message = fields.map(e => e.message).filter(Boolean).join(" ") || err.message || "Validation failed";
		return named(err.name ?? "ValidationError", message, code, err.type, fields);
	}
	return named(err.name ?? "Error", err.message ?? "Request failed", code, err.type, err.data);
}

/** Every error body has all of name, message, code, type and data (null when there is nothing more to say). */
function named(name: string, message: string, code: number, type?: string, data?: unknown): Errors.MoleculerError {
	const error = new Errors.MoleculerError(message, code, type || statusType(code), data ?? null);
	error.name = name;
	return error;
}


/** A type for an error thrown without one: its status in words, e.g. BAD_REQUEST. */
function statusType(code: number): string {
	return (STATUS_CODES[code] ?? "Error").toUpperCase().replace(/\W+/g, "_");
}
