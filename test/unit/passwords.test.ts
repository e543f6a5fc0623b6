import os from "node:os";
import { hashPassword, verifyPassword } from "../../services/auth/passwords";

describe("password hashing", () => {
	test("many at once, more than there are cores, each wait their turn and all answer right", async () => {
		const count = os.availableParallelism() * 3;
		const passwords = Array.from({ length: count }, (_, i) => `correct horse ${i}`);
		const hashes = await Promise.all(passwords.map(hashPassword));
		expect(new Set(hashes).size).toBe(count);
		const checks = await Promise.all([
			...hashes.map((h, i) => verifyPassword(h, passwords[i])),
			...hashes.map((h, i) => verifyPassword(h, `${passwords[i]}!`)),
			verifyPassword("not a hash", "anything")
		]);
		expect(checks).toEqual([...hashes.map(() => true), ...hashes.map(() => false), false]);
	});
});
