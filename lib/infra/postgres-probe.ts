import { Client } from "pg";

/** True when a PostgreSQL server accepts a connection at `url` within two seconds. */
export async function canConnect(url: string): Promise<boolean> {
	const client = new Client({ connectionString: url, connectionTimeoutMillis: 2000 });
	try {
		await client.connect();
		await client.end();
		return true;
	} catch {
		return false;
	}
}
