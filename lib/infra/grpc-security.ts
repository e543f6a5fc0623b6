import crypto from "node:crypto";
import { type ChannelCredentials, Metadata, ServerCredentials, credentials } from "@grpc/grpc-js";
import { type Config, type TlsIdentity, config } from "./config";
import { developmentCa, developmentCertificate } from "./dev-certificates";
import { developmentSecret } from "./secrets";

/**
 * How a gRPC server is secured: TLS, with a bearer token required on every
 * call; or, opted into by the setting named in `optIn`, neither.
 */
export type GrpcServerSecurity =
	| { plaintext: true; optIn: string }
	| {
			plaintext?: false;
			token: string;
			/** With `clientCa`, clients must also present a certificate it issued (mutual TLS). */
			tls: TlsIdentity & { clientCa?: string };
	  };

/** How a gRPC client connects: TLS trusting `ca`, with its token (and for mutual TLS its certificate); or plaintext with no credential. */
export type GrpcClientSecurity =
	| { plaintext: true; optIn: string }
	| { plaintext?: false; token: string; tls: { ca: string } & Partial<TlsIdentity> };

export function serverCredentials(security: GrpcServerSecurity): ServerCredentials {
	if (security.plaintext) return ServerCredentials.createInsecure();
	const { cert, key, clientCa } = security.tls;
	return ServerCredentials.createSsl(clientCa ? Buffer.from(clientCa) : null, [{ cert_chain: Buffer.from(cert), private_key: Buffer.from(key) }], Boolean(clientCa));
}

export function channelCredentials(security: GrpcClientSecurity): ChannelCredentials {
	if (security.plaintext) return credentials.createInsecure();
	const { ca, cert, key } = security.tls;
	const channel = credentials.createSsl(Buffer.from(ca), key ? Buffer.from(key) : null, cert ? Buffer.from(cert) : null);
	// Call credentials: grpc-js adds them to every call, and only ever sends them over TLS.
	const bearer = credentials.createFromMetadataGenerator((_call, callback) => {
		const metadata = new Metadata();
		metadata.set("authorization", `Bearer ${security.token}`);
		callback(null, metadata);
	});
	return credentials.combineChannelCredentials(channel, bearer);
}

const digest = (value: string) => crypto.createHash("sha256").update(value).digest();

/**
 * A check of the call's `authorization` metadata against `Bearer <token>`. Both
 * sides are compared as SHA-256 digests with timingSafeEqual: equal lengths,
 * and a time that tells an attacker nothing about how much of a guess was right.
 */
export function bearerCheck(token: string): (metadata: Metadata) => boolean {
	const expected = digest(token);
	return metadata => {
		const [value] = metadata.get("authorization");
		const presented = typeof value === "string" ? /^Bearer (.+)$/i.exec(value)?.[1] : undefined;
		return presented !== undefined && crypto.timingSafeEqual(digest(presented), expected);
	};
}

const DEVELOPMENT_DIR = "billing-grpc";

/** A setting's value; outside production, when unset, what `generate` makes under DATA_DIR. */
async function givenOrGenerated<T>(cfg: Config, setting: string, value: T | undefined, generate: () => Promise<T>): Promise<T> {
	if (value !== undefined) return value;
	if (cfg.production) throw new Error(`${setting} must be set in production (NODE_ENV=production); see docs/security.md, "gRPC security"`);
	return generate();
}

const developmentToken = async () => developmentSecret(`${DEVELOPMENT_DIR}/token`, () => crypto.randomBytes(32).toString("base64url")).value.trim();
const developmentCaCert = async () => (await developmentCa(DEVELOPMENT_DIR)).cert;

/** The hosts a development server certificate names: loopback, the host clients are told to call, and the address it binds. */
function serverHosts(cfg: Config): string[] {
	const urlHost = new URL(`grpc://${cfg.billingGrpcUrl}`).hostname.replace(/^\[|\]$/g, "");
	const bound = ["0.0.0.0", "::"].includes(cfg.billingGrpcHost) ? [] : [cfg.billingGrpcHost];
	return [...new Set(["localhost", "127.0.0.1", "::1", urlHost, ...bound].map(host => host.toLowerCase()))];
}

/** Billing's gRPC server: the configured certificate, token and (mutual TLS) client CA, generated in development. */
export async function billingServerSecurity(cfg: Config = config): Promise<GrpcServerSecurity> {
	if (cfg.billingGrpcInsecure) return { plaintext: true, optIn: "BILLING_GRPC_INSECURE=true" };
	const token = await givenOrGenerated(cfg, "BILLING_GRPC_TOKEN", cfg.billingGrpcToken, developmentToken);
	const identity = await givenOrGenerated(cfg, "BILLING_GRPC_TLS_CERT and BILLING_GRPC_TLS_KEY", cfg.billingGrpcTls, () =>
		developmentCertificate(DEVELOPMENT_DIR, "server", { server: serverHosts(cfg) })
	);
	const clientCa = cfg.billingGrpcMtls ? await givenOrGenerated(cfg, "BILLING_GRPC_TLS_CA", cfg.billingGrpcTlsCa, developmentCaCert) : undefined;
	return { token, tls: { ...identity, clientCa } };
}

/** A client of billing's gRPC server (the patients service): the CA it trusts, the token and (mutual TLS) its certificate. */
export async function billingClientSecurity(cfg: Config = config): Promise<GrpcClientSecurity> {
	if (cfg.billingGrpcInsecure) return { plaintext: true, optIn: "BILLING_GRPC_INSECURE=true" };
	const token = await givenOrGenerated(cfg, "BILLING_GRPC_TOKEN", cfg.billingGrpcToken, developmentToken);
	const ca = await givenOrGenerated(cfg, "BILLING_GRPC_TLS_CA", cfg.billingGrpcTlsCa, developmentCaCert);
	const identity = cfg.billingGrpcMtls
		? await givenOrGenerated(cfg, "BILLING_GRPC_TLS_CLIENT_CERT and BILLING_GRPC_TLS_CLIENT_KEY", cfg.billingGrpcTlsClient, () =>
				developmentCertificate(DEVELOPMENT_DIR, "client", { client: "medsync-billing-client" })
			)
		: undefined;
	return { token, tls: { ca, ...identity } };
}
