import crypto from "node:crypto";
import http from "node:http";
import { verify } from "@node-rs/argon2";
import { Pool } from "pg";
import { patientById, patientPage } from "../services/patients/queries";
import { prepared } from "../lib/infra/sql";

/**
 * The ceiling for a Node service on this machine: a bare HTTP server doing the
 * same PostgreSQL work as MedSync's hot paths (the reads run the very same
 * statements, from services/patients/queries, prepared alike), with the same pool size, and
 * nothing else (no gateway, no broker, no validation, no auth, no events).
 *   node dist/bench/baseline.js <port> <patients database URL> <pool size> <argon2 hash>
 */
const [port, databaseUrl, poolSize, passwordHash] = process.argv.slice(2);
const pool = new Pool({ connectionString: databaseUrl, max: Number(poolSize) });

function send(res: http.ServerResponse, status: number, body: unknown): void {
	const text = JSON.stringify(body);
	res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
	res.end(text);
}

async function readBody(req: http.IncomingMessage): Promise<Record<string, string>> {
	let raw = "";
	for await (const chunk of req) raw += chunk;
	return raw ? JSON.parse(raw) : {};
}

const server = http.createServer(async (req, res) => {
	try {
		const url = new URL(req.url!, "http://x");
		if (req.method === "GET" && url.pathname.startsWith("/patients/")) {
			const { rows } = await pool.query(prepared(patientById(url.pathname.slice(10))));
			return rows[0] ? send(res, 200, rows[0]) : send(res, 404, {});
		}
		if (req.method === "GET" && url.pathname === "/patients") {
			const { rows } = await pool.query(prepared(patientPage({ search: url.searchParams.get("search") ?? undefined, sort: "-registerDate", page: 1, pageSize: 20 })));
			return send(res, 200, { rows: rows.filter(row => row.id !== null), total: rows[0].total });
		}
		if (req.method === "POST" && url.pathname === "/patients") {
			const body = await readBody(req);
			const { rows } = await pool.query(
				prepared({
					text: `INSERT INTO patients (id, mrn, name, email, address, date_of_birth, register_date)
					 VALUES ($1, lpad((nextval('patient_mrn_serial') % 100000000)::text, 8, '0'), $2, $3, $4, $5, CURRENT_DATE) RETURNING *`,
					values: [crypto.randomUUID(), body.name, `base.${body.email}`, body.address, body.dateOfBirth]
				})
			);
			return send(res, 201, rows[0]);
		}
		if (req.method === "POST" && url.pathname === "/login") {
			await readBody(req);
			return send(res, (await verify(passwordHash, "baseline-password")) ? 200 : 401, {});
		}
		send(res, 404, {});
	} catch (err) {
		send(res, 500, { message: (err as Error).message });
	}
});
server.listen(Number(port), "127.0.0.1", () => console.log(`baseline listening on ${port}`));
process.on("SIGTERM", () => server.close(() => pool.end().then(() => process.exit(0))));
