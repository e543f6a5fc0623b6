import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import helmet from "helmet";
import { config } from "./config";

type Middleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/** A year, with subdomains: the usual HSTS once a site is served over TLS only. */
const HSTS = "max-age=31536000; includeSubDomains";

/**
 * HSTS only over TLS: directly, or behind a proxy that terminated it and says
 * so (X-Forwarded-Proto, trusted only with TRUST_PROXY). Over plain HTTP the
 * header means nothing, and a development host must stay reachable without TLS.
 */
function servedOverTls(req: IncomingMessage): boolean {
	if ((req.socket as TLSSocket).encrypted) return true;
	// The proxy's own entry is the last, as for X-Forwarded-For (clientIp): any before it is the client's claim.
	return config.trustProxy && String(req.headers["x-forwarded-proto"] ?? "").split(",").at(-1)?.trim() === "https";
}

/**
 * helmet's headers, worked out once: none depends on the request (no CSP
 * directive here is a function), and running helmet's chain of middlewares on
 * every answer cost a read about 10% more CPU (bench/changes.md).
 */
function fixedHeaders(options: Parameters<typeof helmet>[0]): [string, string][] {
	const headers: [string, string][] = [];
	const recorder = { setHeader: (name: string, value: unknown) => headers.push([name, String(value)]), removeHeader: () => {} };
	helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, () => {});
	return headers;
}

function securityHeaders(headers: [string, string][]): Middleware {
	return (req, res, next) => {
		for (const [name, value] of headers) res.setHeader(name, value);
		if (servedOverTls(req)) res.setHeader("Strict-Transport-Security", HSTS);
		next();
	};
}

const common = { frameguard: { action: "deny" as const }, referrerPolicy: { policy: "no-referrer" as const }, strictTransportSecurity: false };

/**
 * Headers for every API answer, errors included (helmet, OWASP's REST
 * guidance): no MIME sniffing, no framing, no referrer, a CSP that lets a JSON
 * answer load and run nothing, and no caching anywhere: they carry patient data.
 */
export const apiSecurityHeaders: Middleware = securityHeaders([
	...fixedHeaders({ ...common, contentSecurityPolicy: { useDefaults: false, directives: { "default-src": ["'none'"], "frame-ancestors": ["'none'"] } } }),
	["Cache-Control", "no-store"]
]);

/** The same for the API docs page, whose CSP lets it load its own scripts and styles (Swagger UI sets inline styles). */
export const docsSecurityHeaders: Middleware = securityHeaders(
	fixedHeaders({
		...common,
		contentSecurityPolicy: {
			useDefaults: false,
			directives: {
				"default-src": ["'self'"],
				"img-src": ["'self'", "data:"],
				"style-src": ["'self'", "'unsafe-inline'"],
				"frame-ancestors": ["'none'"],
				"form-action": ["'self'"],
				"base-uri": ["'none'"],
				"object-src": ["'none'"]
			}
		}
	})
);
