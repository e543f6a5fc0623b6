import type { Queryable, Statement } from "../../lib/infra/database";

type Answer = (values: unknown[]) => unknown[];

/**
 * A stand-in for a service's database (lib/infra/database.ts): it records every
 * statement and answers each with the rows given for its text (a statement
 * built by the service's own query module, with any values), else no rows. A
 * transaction runs its work on it, and records whether it committed.
 */
export class StubDatabase implements Queryable {
	readonly statements: Statement[] = [];
	/** Each transaction's outcome, in order. */
	readonly transactions: ("committed" | "rolled back")[] = [];
	private readonly answers = new Map<string, Answer>();

	/** Statements with the text of `like` get `rows`, or what `rows` makes of their values (which may throw, as PostgreSQL refuses). */
	answer(like: Statement, rows: unknown[] | Answer): this {
		this.answers.set(like.text, typeof rows === "function" ? rows : () => rows);
		return this;
	}

	/** The statements sent with the text of `like`, in order. */
	sent(like: Statement): Statement[] {
		return this.statements.filter(s => s.text === like.text);
	}

	async query<T>(statement: Statement): Promise<T[]> {
		this.statements.push(statement);
		return (this.answers.get(statement.text)?.(statement.values) ?? []) as T[];
	}

	async transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
		try {
			const result = await work(this);
			this.transactions.push("committed");
			return result;
		} catch (err) {
			this.transactions.push("rolled back");
			throw err;
		}
	}

	async end(): Promise<void> {}
}
