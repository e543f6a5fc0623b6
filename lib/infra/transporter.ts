import type { BrokerOptions } from "moleculer";
import type { Config } from "./config";

/**
 * The broker's transporter: none without TRANSPORTER; else its URL, which
 * selects and configures one (nats://… → NATS). With NATS credentials or TLS
 * settings, an options object instead, which Moleculer's NATS transporter hands
 * whole to the `nats` client.
 */
export function transporterOptions(cfg: Config): BrokerOptions["transporter"] {
	if (!cfg.transporter) return null;
	const { natsUser, natsPassword, natsToken, natsTlsCa, natsTls } = cfg;
	if (!natsUser && !natsToken && !natsTlsCa && !natsTls) return cfg.transporter as BrokerOptions["transporter"];
	// Not `url`: from a URL the transporter resets user and pass to the URL's own, undefined when it has none.
	const urls = cfg.transporter.split(",").map(url => new URL(url.trim()));
	const urlUser = decodeURIComponent(urls[0].username) || undefined;
	const user = natsUser ?? urlUser;
	return {
		type: "NATS",
		options: {
			servers: urls.map(url => url.host),
			...(user && { user, pass: natsUser ? natsPassword : decodeURIComponent(urls[0].password) }),
			...(natsToken && { token: natsToken }),
			...((natsTlsCa || natsTls) && { tls: { ca: natsTlsCa, ...natsTls } })
		}
	};
}
