import { config } from "../../lib/infra/config";
import { ensureFirstAdmin } from "../../services/auth/first-admin";
import { anyAdmin, insertUser } from "../../services/auth/queries";
import { StubDatabase } from "../helpers/stub-database";

const INSERT = insertUser("", "", "", "ADMIN");

/** A database that answers the admin check with `adminExists` and the account's insert with `onInsert`. */
function database(adminExists: boolean, onInsert: (values: unknown[]) => unknown[]): StubDatabase {
	return new StubDatabase().answer(anyAdmin, [{ found: adminExists }]).answer(INSERT, onInsert);
}

/** What a first start wrote after the admin check: its statements' texts. */
const writes = (db: StubDatabase) => db.statements.slice(1).map(s => s.text);

const logger = () => ({ info: jest.fn(), warn: jest.fn() });

describe("the first admin", () => {
	test("is created at a first start, as ADMIN_EMAIL with the ADMIN_PASSWORD's hash", async () => {
		const log = logger();
		const db = database(false, values => [{ id: values[0], email: values[1], role: values[3], active: true, createdAt: new Date() }]);
		await ensureFirstAdmin(db, log);
		expect(writes(db)).toEqual([INSERT.text]);
		const [, email, hash, role] = db.sent(INSERT)[0].values;
		expect({ email, role }).toEqual({ email: config.adminEmail, role: "ADMIN" });
		expect(hash).toMatch(/^\$argon2id\$/);
		expect(log.info).toHaveBeenCalledTimes(1);
	});

	test("is left alone once an admin exists", async () => {
		const db = database(true, () => []);
		await ensureFirstAdmin(db, logger());
		expect(db.statements).toEqual([anyAdmin]);
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
