import { type ServiceError, status } from "@grpc/grpc-js";
import { Metadata } from "@grpc/grpc-js";
import { isDatabaseUnavailable } from "./db-errors";

interface ErrorLike {
	name?: string;
	message?: string;
	code?: number | string;
	type?: string;
}

/**
 * The gRPC status for an error thrown by an action. Client mistakes keep their
 * meaning and message; anything unexpected is INTERNAL, never UNKNOWN, and its
 * details stay on the server.
 */
export function toGrpcError(err: unknown): Partial<ServiceError> {
	const e = (err ?? {}) as ErrorLike;
	const grpcError = (code: status, details: string): Partial<ServiceError> => ({ code, details, message: details, metadata: new Metadata() });
	if (isDatabaseUnavailable(err)) return grpcError(status.UNAVAILABLE, "The service cannot reach its database; try again");
	// Moleculer reports a missing peer service as a 404; to a gRPC client that is a transient outage.
	if (e.type === "SERVICE_NOT_AVAILABLE" || e.type === "SERVICE_NOT_FOUND" || e.type === "REQUEST_TIMEOUT") {
		return grpcError(status.UNAVAILABLE, "A service behind this call is unavailable; try again");
	}
	switch (e.code) {
		case 400:
		case 422:
			return grpcError(status.INVALID_ARGUMENT, validationDetails(err) ?? e.message ?? "Invalid argument");
		case 401:
			return grpcError(status.UNAUTHENTICATED, e.message ?? "Unauthenticated");
		case 403:
			return grpcError(status.PERMISSION_DENIED, e.message ?? "Permission denied");
		case 404:
			return grpcError(status.NOT_FOUND, e.message ?? "Not found");
		case 409:
			if ((err as { stateConflict?: boolean }).stateConflict) return grpcError(status.FAILED_PRECONDITION, e.message ?? "Failed precondition");
			return grpcError(status.ALREADY_EXISTS, e.message ?? "Already exists");
		case 429:
			return grpcError(status.RESOURCE_EXHAUSTED, e.message ?? "Too many requests");
		case 503:
		case 504:
			return grpcError(status.UNAVAILABLE, "The service is temporarily unavailable; try again");
		default:
			return grpcError(status.INTERNAL, "Internal error");
	}
}

function validationDetails(err: unknown): string | undefined {
	const data = (err as { data?: { message?: string }[] }).data;
	return Array.isArray(data) ? data.map(d => d.message).filter(Boolean).join(" ") || undefined : undefined;
}
