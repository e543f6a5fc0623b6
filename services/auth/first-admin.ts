import crypto from "node:crypto";
import type { Logger } from "moleculer";
import { config } from "../../lib/infra/config";
import type { Queryable } from "../../lib/infra/database";
import { ConflictError } from "../../lib/infra/errors";
import { developmentSecret } from "../../lib/infra/secrets";
import { createUser } from "./accounts";
import * as sql from "./queries";

/** At first start (no admin yet): ADMIN_EMAIL / ADMIN_PASSWORD, or a generated password printed once and kept under the data dir. */
export async function ensureFirstAdmin(db: Queryable, logger: Pick<Logger, "info" | "warn">): Promise<void> {
	const [admin] = await db.query<{ found: boolean }>(sql.anyAdmin);
	if (admin.found) return;
	let password = config.adminPassword;
	if (!password) {
		const secret = developmentSecret("admin-password", () => crypto.randomBytes(18).toString("base64url"));
		password = secret.value.trim();
		if (secret.created) {
			logger.warn(`First admin ${config.adminEmail} created with password ${password} (also saved to ${secret.file}, mode 0600)`);
		}
	}
	try {
		await createUser(db, config.adminEmail, password, "ADMIN");
		logger.info(`Created the first admin account, ${config.adminEmail}`);
	} catch (err) {
		// Another auth node created it at the same moment.
		if (!(err instanceof ConflictError)) throw err;
	}
}
