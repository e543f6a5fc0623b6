import { STATUS_CODES } from "node:http";
import { Errors } from "moleculer";
import type { OperationOutcome, OperationOutcomeIssue } from "@medplum/fhirtypes";

/** FHIR's issue type for each status an answer can have (valueset issue-type). */
const ISSUE_CODES: Record<number, OperationOutcomeIssue["code"]> = {
	400: "invalid",
	401: "login",
	403: "forbidden",
	404: "not-found",
	405: "not-supported",
	406: "not-supported",
	409: "conflict",
	410: "deleted",
	412: "conflict",
	413: "too-costly",
	415: "not-supported",
	422: "invariant",
	429: "throttled",
	503: "transient"
};

/** An error as the gateway hands it over (lib/infra/client-errors.ts): a status, a message, and per-field details for validation. */
export interface ClientError {
	code: number;
	message: string;
	type?: string;
	data?: unknown;
}

interface FieldProblem {
	field?: string;
	message?: string;
	/** The validator's rule ("required", "stringPattern", …), or "required" from unprocessable(). */
	type?: string;
}

/** The OperationOutcome of an error: one issue per invalid field (its FHIRPath in `expression`), else one for the whole. */
export function operationOutcome(err: ClientError): OperationOutcome {
	const code = ISSUE_CODES[err.code] ?? (err.code >= 500 ? "exception" : "processing");
	const severity = err.code >= 500 ? "fatal" : "error";
	const fields = Array.isArray(err.data) ? (err.data as FieldProblem[]) : [];
	const issues: OperationOutcomeIssue[] = fields.length
		? fields.map(problem => ({
				severity,
				// By the rule, not its wording: a pattern's message says "the required pattern".
				code: err.code === 422 && problem.type === "required" ? "required" : code,
				diagnostics: problem.message ?? err.message,
				...(problem.field && { expression: [problem.field] })
			}))
		: [{ severity, code, diagnostics: err.message || STATUS_CODES[err.code] || "Request failed" }];
	return { resourceType: "OperationOutcome", issue: issues };
}

/** 400 for a request FHIR cannot read (a search parameter, a header), naming what is wrong. */
export function badRequest(message: string, field?: string): Errors.MoleculerClientError {
	const err = new Errors.MoleculerClientError(message, 400, "BAD_REQUEST", field ? [{ field, message }] : undefined);
	err.name = "BadRequestError";
	return err;
}

/** 422 for a resource that breaks MedSync's rules, each problem at its FHIRPath. */
export function unprocessable(problems: { field: string; message: string; type?: "required" }[]): Errors.ValidationError {
	return new Errors.ValidationError(problems.map(p => p.message).join(" "), "VALIDATION_ERROR", problems.map(p => ({ type: "fhir", ...p })));
}

/** 406 / 415: a format other than FHIR JSON. */
export function notSupported(status: 406 | 415, message: string): Errors.MoleculerClientError {
	const err = new Errors.MoleculerClientError(message, status, status === 406 ? "NOT_ACCEPTABLE" : "UNSUPPORTED_MEDIA_TYPE");
	err.name = status === 406 ? "NotAcceptableError" : "UnsupportedMediaTypeError";
	return err;
}

/**
 * A domain service's error in FHIR's terms: its REST field names become the
 * resource's FHIRPaths (`paths`), the rest stays as it is; a field with no
 * path is named at the resource itself.
 */
export function withFhirPaths(err: unknown, resourceType: string, paths: Record<string, string>): unknown {
	const e = err as { type?: string; data?: unknown };
	if (e?.type !== "VALIDATION_ERROR" || !Array.isArray(e.data)) return err;
	e.data = (e.data as FieldProblem[]).map(problem => {
		const field = problem.field?.replace(/\[\d+\].*$|\..*$/, "");
		return { ...problem, field: field && paths[field] ? paths[field] : problem.field?.startsWith(resourceType) ? problem.field : resourceType };
	});
	return err;
}
