import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { hash, verify } from "@node-rs/argon2";
import { PROJECT_ROOT } from "../../lib/infra/paths";

/** argon2id with OWASP's recommended minimum: 19 MiB of memory, 2 iterations, 1 lane. */
// 2 is Algorithm.Argon2id, a const enum that isolated modules cannot import.
const ARGON2_OPTIONS = { algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 };

export const PASSWORD_MIN = 8;
export const PASSWORD_MAX = 128;

/**
 * Hashes at once: one per core. Each holds 19 MiB while it runs, and more at
 * a time than there are cores finish no sooner; they only add to the memory
 * peak (by some 40 MB on two cores, with libuv's four threads).
 */
const HASH_SLOTS = os.availableParallelism();
let hashing = 0;
const waitingForSlot: (() => void)[] = [];

async function inHashSlot<T>(work: () => Promise<T>): Promise<T> {
	if (hashing >= HASH_SLOTS) await new Promise<void>(resolve => waitingForSlot.push(resolve));
	else hashing++;
	try {
		return await work();
	} finally {
		// The slot passes straight to the next waiter, or is freed.
		const next = waitingForSlot.shift();
		if (next) next();
		else hashing--;
	}
}

export function hashPassword(password: string): Promise<string> {
	return inHashSlot(() => hash(password, ARGON2_OPTIONS));
}

export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
	try {
		return await inHashSlot(() => verify(passwordHash, password));
	} catch {
		return false;
	}
}

let commonPasswords: Set<string> | undefined;

/** True for a password on the shipped list of common passwords, in any letter case. */
export function isCommonPassword(password: string): boolean {
	commonPasswords ??= new Set(
		fs
			.readFileSync(path.join(PROJECT_ROOT, "data/common-passwords.txt"), "utf8")
			.split("\n")
			.filter(line => line && !line.startsWith("# "))
			.map(line => line.toLowerCase())
	);
	return commonPasswords.has(password.toLowerCase());
}
