import { loadConfig } from "../../lib/infra/config";
import { developmentCa } from "../../lib/infra/dev-certificates";
import { transporterOptions } from "../../lib/infra/transporter";

describe("the transporter options", () => {
	test("none in one process; the bare URL when NATS needs no credentials", () => {
		expect(transporterOptions(loadConfig({}))).toBeNull();
		expect(transporterOptions(loadConfig({ TRANSPORTER: "nats://nats:4222" }))).toBe("nats://nats:4222");
	});

	test("credentials and TLS go to the nats client, with every server of the URL", async () => {
		expect(transporterOptions(loadConfig({ TRANSPORTER: "nats://a:4222,nats://b:4223", NATS_USER: "medsync", NATS_PASSWORD: "s3cret" }))).toEqual({
			type: "NATS",
			options: { servers: ["a:4222", "b:4223"], user: "medsync", pass: "s3cret" }
		});
		expect(transporterOptions(loadConfig({ TRANSPORTER: "nats://nats:4222", NATS_TOKEN: "t0ken" }))).toEqual({
			type: "NATS",
			options: { servers: ["nats:4222"], token: "t0ken" }
		});
		const { cert, key } = await developmentCa("transporter-test");
		// Credentials written in the URL stay, next to the TLS settings.
		expect(transporterOptions(loadConfig({ TRANSPORTER: "nats://node:p%40ss@nats:4222", NATS_TLS_CA: cert, NATS_TLS_CERT: cert, NATS_TLS_KEY: key }))).toEqual({
			type: "NATS",
			options: { servers: ["nats:4222"], user: "node", pass: "p@ss", tls: { ca: cert.trim(), cert: cert.trim(), key: key.trim() } }
		});
	});
});
