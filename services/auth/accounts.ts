import crypto from "node:crypto";
import type { Database, Queryable } from "../../lib/infra/database";
import { violatedUniqueConstraint } from "../../lib/infra/db-errors";
import { ConflictError, NotFoundError, PreconditionFailedError } from "../../lib/infra/errors";
import { type RequestMeta, checkIfMatch } from "../../lib/infra/http";
import type { Revocation } from "../../lib/infra/auth/tokens";
import type { Role } from "../../lib/domain/roles";
import { isUuid } from "../../lib/infra/sql";
import { hashPassword } from "./passwords";
import * as sql from "./queries";
import type { User, UserRow } from "./queries";

/** Staff accounts: creating them, and changing what they may do. */

/** A new account; 409 naming the field when its email is taken, in any letter case. */
export async function createUser(db: Queryable, email: string, password: string, role: Role): Promise<User> {
	try {
		const [row] = await db.query<UserRow>(sql.insertUser(crypto.randomUUID(), email, await hashPassword(password), role));
		return sql.userFrom(row);
	} catch (err) {
		if (violatedUniqueConstraint(err) === "users_email_key") {
			throw new ConflictError("An account with this email already exists", { field: "email" });
		}
		throw err;
	}
}

export interface AccessChange {
	role?: Role;
	active?: boolean;
}

/**
 * A new role or active flag for an account, never leaving no active admin,
 * and only at a version the If-Match in `meta` names (else 412, nothing written).
 * A real change retires the tokens issued before it (the revocation to announce).
 */
export function changeAccess(
	db: Database,
	id: string,
	{ role, active }: AccessChange,
	meta: Pick<RequestMeta, "ifMatch"> = {}
): Promise<{ user: User; revocation?: Revocation }> {
	return db.transaction(async tx => {
		// Serialises admin changes, so two requests cannot together remove the last admin.
		await tx.query(sql.lockAdminChanges);
		const [row] = isUuid(id) ? await tx.query<UserRow>(sql.userById(id)) : [];
		if (!row) throw new NotFoundError("User", id);
		const before = sql.userFrom(row);
		checkIfMatch(meta, "User", before.version);
		const losesAdmin = before.role === "ADMIN" && before.active && (active === false || (role && role !== "ADMIN"));
		if (losesAdmin) {
			const [admins] = await tx.query<{ count: number }>(sql.activeAdminCount);
			if (admins.count <= 1) throw new ConflictError("The last active administrator cannot be demoted or deactivated");
		}
		const changed = (role !== undefined && role !== before.role) || (active !== undefined && active !== before.active);
		if (!changed) return { user: before };
		// Tokens minted before this second carry the old role or a deactivated user: refuse them.
		const validAfter = Math.ceil(Date.now() / 1000);
		const [after] = await tx.query<UserRow>(sql.updateUserAccess(id, role ?? before.role, active ?? before.active, new Date(validAfter * 1000), meta.ifMatch));
		// The lock serialises every access change, so the version read above still holds; the guard in the write makes sure.
		if (!after) throw new PreconditionFailedError("User", before.version);
		return { user: sql.userFrom(after), revocation: { userId: id, validAfter } };
	});
}
