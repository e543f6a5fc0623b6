import crypto from "node:crypto";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * What an id is, everywhere (the gateway, the audit trail, every service's
 * params through `uuidRule`): a UUID in the form PostgreSQL's uuid type stores,
 * of any version. Anything else names no row (and is a 404, not a database error).
 */
export function isUuid(value: string): boolean {
	return UUID.test(value);
}

/**
 * A statement as a named prepared statement: a connection parses and plans it
 * once, then only binds values. The name comes from the text, so the same text
 * is the same statement on every connection; texts must carry no values.
 */
export function prepared(statement: { text: string; values: unknown[] }): { name: string; text: string; values: unknown[] } {
	let name = preparedNames.get(statement.text);
	if (!name) {
		name = `medsync_${crypto.createHash("sha1").update(statement.text).digest("hex").slice(0, 16)}`;
		preparedNames.set(statement.text, name);
	}
	return { name, ...statement };
}

const preparedNames = new Map<string, string>();

/** `\`, `%` and `_` are LIKE wildcards; a search for "50%" means those characters. */
export function escapeLike(text: string): string {
	return text.replace(/[\\%_]/g, c => `\\${c}`);
}

/** Migration SQL that makes `table` append-only: updates, deletes and truncation raise `message`. */
export function appendOnlySql(table: string, message: string): string {
	return `
CREATE FUNCTION ${table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION '${message.replace(/'/g, "''")}';
END;
$$;
CREATE TRIGGER ${table}_no_update_or_delete BEFORE UPDATE OR DELETE ON ${table}
	FOR EACH ROW EXECUTE FUNCTION ${table}_append_only();
CREATE TRIGGER ${table}_no_truncate BEFORE TRUNCATE ON ${table}
	FOR EACH STATEMENT EXECUTE FUNCTION ${table}_append_only();
`;
}
