import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { config } from "./config";

interface DevelopmentSecret {
	value: string;
	created: boolean;
	file: string;
}

/**
 * A development secret kept under the data dir: read if present, else made by
 * `generate` and written with mode 0600. Never used in production, where every
 * secret comes from the environment.
 */
export function developmentSecret(name: string, generate: () => string): DevelopmentSecret {
	const file = path.join(config.dataDir, name);
	if (fs.existsSync(file)) return { value: fs.readFileSync(file, "utf8"), created: false, file };
	refuseInProduction(name);
	return store(file, generate());
}

/**
 * developmentSecret for what is made asynchronously (keys and certificates
 * through WebCrypto). A kept value that `usable` refuses (a certificate for
 * other hosts, from another CA, or expiring) is made again and replaced whole.
 */
export async function developmentSecretAsync(name: string, generate: () => Promise<string>, usable: (value: string) => boolean = () => true): Promise<DevelopmentSecret> {
	const file = path.join(config.dataDir, name);
	const kept = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined;
	if (kept !== undefined && usable(kept)) return { value: kept, created: false, file };
	refuseInProduction(name);
	const value = await generate();
	if (kept === undefined) return store(file, value);
	// Written beside it, then renamed over it: a reader sees the old file or the new one, never half of one.
	const temporary = temporaryBeside(file);
	fs.writeFileSync(temporary, value, { mode: 0o600 });
	fs.renameSync(temporary, file);
	return { value, created: true, file };
}

function refuseInProduction(name: string): void {
	if (config.production) throw new Error(`${name} must come from the environment in production (NODE_ENV=production)`);
}

/** Written whole beside it, then linked into place: a reader never sees half a file, and of two writers the first keeps it. */
function store(file: string, value: string): DevelopmentSecret {
	fs.mkdirSync(path.dirname(file), { recursive: true });
	const temporary = temporaryBeside(file);
	fs.writeFileSync(temporary, value, { mode: 0o600 });
	try {
		fs.linkSync(temporary, file);
	} catch (err) {
		// Another process on this machine created it first: use theirs.
		if ((err as NodeJS.ErrnoException).code === "EEXIST") return { value: fs.readFileSync(file, "utf8"), created: false, file };
		throw err;
	} finally {
		fs.rmSync(temporary, { force: true });
	}
	return { value, created: true, file };
}

const temporaryBeside = (file: string) => `${file}.${process.pid}-${crypto.randomBytes(4).toString("hex")}.tmp`;
