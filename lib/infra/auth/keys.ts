import crypto from "node:crypto";
import { type JWK, type KeyLike, calculateJwkThumbprint, importPKCS8 } from "jose";
import { config } from "../config";
import { developmentSecret } from "../secrets";

export const JWT_ALG = "EdDSA";

export interface SigningKey {
	kid: string;
	privateKey: KeyLike;
	/** The public half, as published in the JWKS. */
	publicJwk: JWK;
}

/**
 * The Ed25519 key that signs access tokens: AUTH_JWT_PRIVATE_KEY (PKCS#8 PEM)
 * in production; in development, generated at first start under the data dir.
 */
export async function loadSigningKey(): Promise<SigningKey> {
	const pem =
		config.jwtPrivateKey ??
		developmentSecret("auth/jwt-ed25519.pem", () =>
			crypto.generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" }).toString()
		).value;
	const publicJwk = crypto.createPublicKey(pem).export({ format: "jwk" }) as JWK;
	if (publicJwk.crv !== "Ed25519") throw new Error("AUTH_JWT_PRIVATE_KEY must be an Ed25519 private key (PKCS#8 PEM)");
	const kid = await calculateJwkThumbprint(publicJwk);
	return {
		kid,
		privateKey: await importPKCS8(pem, JWT_ALG),
		publicJwk: { ...publicJwk, kid, alg: JWT_ALG, use: "sig" }
	};
}
