import fs from "node:fs";
import path from "node:path";
import { config } from "./config";

/**
 * A development secret kept under the data dir: read if present, else made by
 * `generate` and written with mode 0600. Never used in production, where every
 * secret comes from the environment.
 */
export function developmentSecret(name: string, generate: () => string): { value: string; created: boolean; file: string } {
	const file = path.join(config.dataDir, name);
	if (fs.existsSync(file)) return { value: fs.readFileSync(file, "utf8"), created: false, file };
	if (config.production) throw new Error(`${name} must come from the environment in production (NODE_ENV=production)`);
	const value = generate();
	fs.mkdirSync(path.dirname(file), { recursive: true });
	try {
		fs.writeFileSync(file, value, { mode: 0o600, flag: "wx" });
	} catch (err) {
		// Another process on this machine created it first: use theirs.
		if ((err as NodeJS.ErrnoException).code === "EEXIST") return { value: fs.readFileSync(file, "utf8"), created: false, file };
		throw err;
	}
	return { value, created: true, file };
}
