import type { Queryable, Statement } from "../../lib/infra/database";
import { config } from "../../lib/infra/config";
import { ensureFirstAdmin } from "../../services/auth/first-admin";

/** A database that answers the admin check with `adminExists` and the account's insert with `onInsert`. */
function database(adminExists: boolean, onInsert: (statement: Statement) => unknown[]): Queryable & { inserts: Statement[] } {
	const inserts: Statement[] = [];
	return {
		inserts,
		async query<T>(statement: Statement): Promise<T[]> {
			if (statement.text.includes("EXISTS")) return [{ found: adminExists }] as T[];
			inserts.push(statement);
			return onInsert(statement) as T[];
		}
	};
}

const logger = () => ({ info: jest.fn(), warn: jest.fn() });

describe("the first admin", () => {
	test("is created at a first start, as ADMIN_EMAIL with the ADMIN_PASSWORD's hash", async () => {
		const log = logger();
		const db = database(false, s => [{ id: s.values[0], email: s.values[1], role: s.values[3], active: true, createdAt: new Date() }]);
		await ensureFirstAdmin(db, log);
		expect(db.inserts).toHaveLength(1);
		const [, email, hash, role] = db.inserts[0].values;
		expect({ email, role }).toEqual({ email: config.adminEmail, role: "ADMIN" });
		expect(hash).toMatch(/^\$argon2id\$/);
		expect(log.info).toHaveBeenCalledTimes(1);
	});

	test("is left alone once an admin exists", async () => {
		const db = database(true, () => []);
		await ensureFirstAdmin(db, logger());
		expect(db.inserts).toEqual([]);
	});

	test("created by another node at the same moment is no error; any other failure is", async () => {
		const taken = Object.assign(new Error("duplicate key value violates unique constraint"), { code: "23505", constraint: "users_email_key" });
		const log = logger();
		const raceLost = database(false, () => {
			throw taken;
		});
		await expect(ensureFirstAdmin(raceLost, log)).resolves.toBeUndefined();
		expect(log.info).not.toHaveBeenCalled();
		const down = new Error("Connection terminated unexpectedly");
		const unreachable = database(false, () => {
			throw down;
		});
		await expect(ensureFirstAdmin(unreachable, logger())).rejects.toBe(down);
	});
});
