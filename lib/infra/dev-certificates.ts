import crypto from "node:crypto";
import net from "node:net";
import type { TlsIdentity } from "./config";
import { developmentSecretAsync } from "./secrets";

/**
 * A development PKI under DATA_DIR: a CA, and certificates it issues for a
 * server or a client, each kept with its key in one 0600 file (read together,
 * so a key never meets another's certificate). node:crypto can read
 * certificates but not make them; @peculiar/x509 makes them, through WebCrypto.
 * Production never comes here: its certificates are given.
 */

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const DAY_MS = 86_400_000;
const CA_DAYS = 3650;
const LEAF_DAYS = 825;

/** Loaded only when something is generated, so production never loads it or its Reflect polyfill. */
function x509Library(): typeof import("@peculiar/x509") {
	// @peculiar/x509 resolves its parts through tsyringe, which needs the Reflect metadata API.
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	require("reflect-metadata");
	// eslint-disable-next-line @typescript-eslint/no-require-imports
	return require("@peculiar/x509") as typeof import("@peculiar/x509");
}

function serialNumber(): string {
	const bytes = crypto.randomBytes(16);
	bytes[0] &= 0x7f; // positive, as RFC 5280 asks
	return bytes.toString("hex");
}

function exportKey(key: crypto.webcrypto.CryptoKey): string {
	return crypto.KeyObject.from(key).export({ type: "pkcs8", format: "pem" }).toString();
}

/** The PEM block of `label` in `pem` (e.g. "CERTIFICATE"), with its trailing newline. */
function pemBlock(pem: string, label: string): string | undefined {
	return pem.match(new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----\\n?`))?.[0];
}

/** The key and the certificate of a kept file (key first, then the certificate). */
export function splitIdentity(pem: string): TlsIdentity {
	const key = pemBlock(pem, "PRIVATE KEY");
	const cert = pemBlock(pem, "CERTIFICATE");
	if (!key || !cert) throw new Error("A development identity file holds no key or no certificate: delete it to have it made again");
	return { key, cert };
}

function unexpired(cert: crypto.X509Certificate): boolean {
	return Date.parse(cert.validTo) > Date.now() + DAY_MS;
}

/** The development CA kept at `<dir>/ca.pem`, made at first use. */
export async function developmentCa(dir: string): Promise<TlsIdentity> {
	const file = await developmentSecretAsync(
		`${dir}/ca.pem`,
		async () => {
			const x509 = x509Library();
			const keys = await crypto.webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
			const cert = await x509.X509CertificateGenerator.createSelfSigned({
				serialNumber: serialNumber(),
				name: "CN=MedSync development CA",
				notBefore: new Date(Date.now() - 60_000),
				notAfter: new Date(Date.now() + CA_DAYS * DAY_MS),
				signingAlgorithm: ALGORITHM,
				keys,
				extensions: [
					new x509.BasicConstraintsExtension(true, 0, true),
					new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
					await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
				]
			});
			return exportKey(keys.privateKey) + cert.toString("pem") + "\n";
		},
		kept => unexpired(new crypto.X509Certificate(splitIdentity(kept).cert))
	);
	return splitIdentity(file.value);
}

export type CertificateUse = { server: string[] } | { client: string };

/**
 * A certificate from the development CA of `dir`, kept at `<dir>/<name>.pem`:
 * for a server, naming `hosts` (DNS names and IP addresses); for a client,
 * with `client` as its common name. One that no longer fits (other hosts,
 * another CA, near its end) is made again.
 */
export async function developmentCertificate(dir: string, name: string, use: CertificateUse): Promise<TlsIdentity> {
	const ca = await developmentCa(dir);
	const caCert = new crypto.X509Certificate(ca.cert);
	const fits = (kept: string) => {
		const cert = new crypto.X509Certificate(splitIdentity(kept).cert);
		const names = "server" in use ? use.server.every(host => (net.isIP(host) ? cert.checkIP(host) : cert.checkHost(host))) : true;
		return names && unexpired(cert) && cert.checkIssued(caCert) && cert.verify(caCert.publicKey);
	};
	const file = await developmentSecretAsync(
		`${dir}/${name}.pem`,
		async () => {
			const x509 = x509Library();
			const keys = await crypto.webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
			const issuer = new x509.X509Certificate(ca.cert);
			const cert = await x509.X509CertificateGenerator.create({
				serialNumber: serialNumber(),
				subject: `CN=${"server" in use ? use.server[0] : use.client}`,
				issuer: issuer.subject,
				notBefore: new Date(Date.now() - 60_000),
				notAfter: new Date(Date.now() + LEAF_DAYS * DAY_MS),
				signingAlgorithm: ALGORITHM,
				publicKey: keys.publicKey,
				signingKey: crypto.createPrivateKey(ca.key).toCryptoKey(ALGORITHM, false, ["sign"]),
				extensions: [
					new x509.BasicConstraintsExtension(false, undefined, true),
					new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
					new x509.ExtendedKeyUsageExtension(["server" in use ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
					...("server" in use ? [new x509.SubjectAlternativeNameExtension(use.server.map(host => ({ type: net.isIP(host) ? "ip" : "dns", value: host })))] : []),
					await x509.AuthorityKeyIdentifierExtension.create(issuer),
					await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
				]
			});
			return exportKey(keys.privateKey) + cert.toString("pem") + "\n";
		},
		fits
	);
	return splitIdentity(file.value);
}
