import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { config } from "../infra/config";

/**
 * A realistic demo set, loaded through the public API as a client would:
 * 22 doctors over the original's ten specializations, with weekday availability
 * (some in other timezones), patients, appointments in every state, and
 * payments against the charges that fulfilled visits raised. Safe to run again:
 * what exists is reused, and a demo patient who has appointments gets no more.
 */

const SPECIALIZATIONS = [
	"Cardiology",
	"Pediatrics",
	"Dermatology",
	"Gastroenterology",
	"General Surgery",
	"Internal Medicine",
	"Neurology",
	"Obstetrics & Gynecology",
	"Oncology",
	"Orthopedic Surgery"
];
const FIRST = ["Amira", "Ben", "Chen", "Dana", "Elif", "Farah", "Goran", "Hana", "Ivan", "Jonas", "Kemal", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Samir", "Tara", "Uma", "Victor"];
const LAST = ["Okafor", "Schmidt", "Nakamura", "Haddad", "Kowalski", "Silva", "Novak", "Andersson", "Rossi", "Dubois", "Yilmaz", "Fischer"];
const TIMEZONES = ["UTC", "Europe/Berlin", "America/New_York"];
const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday"];

export interface SeedOptions {
	baseUrl: string;
	email: string;
	password: string;
	patients?: number;
	appointments?: number;
	log?: (line: string) => void;
	/** Called as each step advances, for a progress bar. */
	progress?: (step: string, done: number, total: number) => void;
}

/** What the demo set holds, and what this run added to it (nothing, on a second run). */
export interface SeedResult {
	doctors: number;
	patients: number;
	appointments: Record<string, number>;
	payments: number;
	added: { doctors: number; patients: number; appointments: number; payments: number };
}

/** Patients registered side by side: registration is the slow step of a large set. */
const CONCURRENT_REGISTRATIONS = 8;

/** The first admin's credentials: ADMIN_EMAIL / ADMIN_PASSWORD, or the password generated under the data dir. */
export function adminCredentials(): { email: string; password: string } {
	const file = path.join(config.dataDir, "admin-password");
	const password = config.adminPassword ?? (fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim() : undefined);
	if (!password) throw new Error(`No admin password: set ADMIN_PASSWORD, or run MedSync once so that ${file} exists`);
	return { email: config.adminEmail, password };
}

/**
 * `npm run seed [-- --patients N --appointments N]` and the REPL's `seed`: the
 * demo set into the gateway at SEED_URL, as the admin, with a progress bar on
 * a terminal (a line per tenth elsewhere), and the result as JSON.
 */
export async function seedConfigured(args: string[] = []): Promise<void> {
	const { values } = parseArgs({ args, options: { patients: { type: "string" }, appointments: { type: "string" } } });
	const size = (name: "patients" | "appointments") => {
		const value = values[name];
		if (value === undefined) return undefined;
		if (!/^\d{1,7}$/.test(value)) throw new Error(`--${name} takes a whole number up to 9999999, not "${value}"`);
		return Number(value);
	};
	const result = await seed({
		baseUrl: config.seedUrl,
		...adminCredentials(),
		patients: size("patients"),
		appointments: size("appointments"),
		log: line => console.log(`seed: ${line}`),
		progress: progressBar(process.stdout)
	});
	console.log(JSON.stringify(result));
}

/** A bar redrawn in place on a terminal; elsewhere (a log, a pipe) a line at each tenth of a long step. */
function progressBar(out: NodeJS.WriteStream): (step: string, done: number, total: number) => void {
	return (step, done, total) => {
		if (total < 100) return;
		if (out.isTTY) {
			const filled = Math.round((done / total) * 30);
			out.write(`\rseed: ${step} [${"#".repeat(filled)}${".".repeat(30 - filled)}] ${done}/${total}${done === total ? "\n" : ""}`);
		} else if (done === total || done % Math.ceil(total / 10) === 0) {
			out.write(`seed: ${step} ${done}/${total}\n`);
		}
	};
}

/** Runs `work` on each index below `total`, `concurrency` at a time, in order of start. */
async function eachConcurrently(total: number, concurrency: number, work: (index: number) => Promise<void>): Promise<void> {
	let next = 0;
	const worker = async () => {
		while (next < total) await work(next++);
	};
	await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
}

export async function seed(options: SeedOptions): Promise<SeedResult> {
	const log = options.log ?? (() => {});
	const progress = options.progress ?? (() => {});
	const call = async (method: string, path: string, body?: unknown, token?: string) => {
		let res: Response;
		try {
			res = await fetch(options.baseUrl + path, {
				method,
				headers: { "content-type": "application/json", ...(token && { authorization: `Bearer ${token}` }) },
				body: body === undefined ? undefined : JSON.stringify(body)
			});
		} catch (err) {
			const why = (err as Error & { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
			throw new Error(`MedSync does not answer at ${options.baseUrl} (${why}): start it (npm start, or npm run stack), or set SEED_URL to its gateway`, { cause: err });
		}
		const text = await res.text();
		return { status: res.status, body: text ? JSON.parse(text) : undefined };
	};
	const login = await call("POST", "/auth/login", { email: options.email, password: options.password });
	if (login.status !== 200) throw new Error(`Cannot log in as ${options.email}: ${login.status} ${login.body?.message ?? ""}`);
	const token: string = login.body.token;
	const api = (method: string, path: string, body?: unknown) => call(method, path, body, token);
	const must = async (method: string, path: string, body?: unknown) => {
		const res = await api(method, path, body);
		if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.body?.message ?? ""}`);
		return res.body;
	};
	const added = { doctors: 0, patients: 0, appointments: 0, payments: 0 };

	const doctors: { id: string; timezone: string }[] = [];
	for (let i = 0; i < 22; i++) {
		const email = `dr.${FIRST[i].toLowerCase()}.${LAST[i % LAST.length].toLowerCase()}@medsync.demo`;
		const created = await api("POST", "/doctors", {
			name: `Dr ${FIRST[i]} ${LAST[i % LAST.length]}`,
			email,
			specialization: SPECIALIZATIONS[i % SPECIALIZATIONS.length],
			address: `${10 + i} Clinic Road`,
			joiningDate: `20${10 + (i % 14)}-0${1 + (i % 9)}-15`,
			timezone: TIMEZONES[i % TIMEZONES.length],
			consultationFee: 5_000 + (i % 5) * 2_500,
			slotMinutes: i % 4 === 0 ? 20 : 30,
			availability: WEEKDAYS.map(day => ({ day, start: "09:00", end: "17:00" }))
		});
		if (created.status === 201) {
			doctors.push(created.body);
			added.doctors++;
		} else if (created.status === 409) {
			const found = await must("GET", `/doctors?search=${encodeURIComponent(`Dr ${FIRST[i]}`)}&pageSize=100`);
			const doctor = found.rows.find((d: { email: string }) => d.email === email);
			if (doctor) doctors.push(doctor);
		} else throw new Error(`POST /doctors: ${created.status} ${created.body?.message ?? ""}`);
	}
	log(`${doctors.length} doctors`);

	const patientTotal = options.patients ?? 30;
	const patients: { id: string; billingAccountId: string | null }[] = new Array(patientTotal);
	let registered = 0;
	await eachConcurrently(patientTotal, CONCURRENT_REGISTRATIONS, async i => {
		const first = FIRST[(i * 7) % FIRST.length];
		const last = LAST[(i * 5) % LAST.length];
		const email = `${first}.${last}.${i}@patients.medsync.demo`.toLowerCase();
		const created = await api("POST", "/patients", {
			name: `${first} ${last}`,
			email,
			address: `${i + 1} Harbour Street`,
			dateOfBirth: `19${50 + (i % 50)}-${String(1 + (i % 12)).padStart(2, "0")}-${String(1 + (i % 28)).padStart(2, "0")}`,
			phone: `+44 20 7946 ${String(1000 + i).slice(-4)}`,
			gender: ["female", "male", "other", "unknown"][i % 4]
		});
		if (created.status === 201) {
			patients[i] = created.body;
			added.patients++;
		} else if (created.status === 409) patients[i] = (await must("GET", `/patients?search=${encodeURIComponent(email)}`)).rows[0];
		else throw new Error(`POST /patients: ${created.status} ${created.body?.message ?? ""}`);
		progress("patients", ++registered, patientTotal);
	});
	log(`${patients.length} patients`);

	// A demo patient's appointments are the seed's alone: one that has them was seeded before, and gets no more.
	const wanted = options.appointments ?? 25;
	const perPatient = new Map<string, number>();
	for (let i = 0; i < wanted && patients.length; i++) {
		const { id } = patients[i % patients.length];
		perPatient.set(id, (perPatient.get(id) ?? 0) + 1);
	}
	for (const [patientId, count] of perPatient) {
		const { total } = await must("GET", `/appointments?patientId=${patientId}&pageSize=1`);
		perPatient.set(patientId, Math.max(0, count - total));
	}

	const appointments: Record<string, number> = {};
	let payments = 0;
	const states = ["booked", "arrived", "fulfilled", "cancelled", "noshow"];
	const toBook = [...perPatient.values()].reduce((a, b) => a + b, 0);
	for (let i = 0, booked = 0; booked < toBook && i < wanted * 4; i++) {
		const patient = patients[i % patients.length];
		if (!perPatient.get(patient.id)) continue;
		const doctor = doctors[i % doctors.length];
		const from = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
		const to = new Date(Date.now() + 14 * 86_400_000).toISOString().slice(0, 10);
		const { slots } = await must("GET", `/doctors/${doctor.id}/slots?from=${from}&to=${to}`);
		const slot = slots[(i * 3) % Math.max(1, slots.length)];
		if (!slot) continue;
		const res = await api("POST", "/appointments", { doctorId: doctor.id, patientId: patient.id, start: slot.start, reason: "Routine visit" });
		if (res.status === 409) continue;
		if (res.status !== 201) throw new Error(`POST /appointments: ${res.status} ${res.body?.message ?? ""}`);
		booked++;
		perPatient.set(patient.id, perPatient.get(patient.id)! - 1);
		const id = res.body.id;
		const state = states[booked % states.length];
		if (state === "arrived" || state === "fulfilled") await must("POST", `/appointments/${id}/arrive`);
		if (state === "fulfilled") await must("POST", `/appointments/${id}/fulfil`);
		if (state === "cancelled") await must("POST", `/appointments/${id}/cancel`, { reason: "Patient rescheduled by phone" });
		if (state === "noshow") await must("POST", `/appointments/${id}/no-show`);
		appointments[state] = (appointments[state] ?? 0) + 1;
		if (state === "fulfilled" && patient.billingAccountId) {
			await must("POST", `/billing/accounts/${patient.billingAccountId}/transactions`, { type: "PAYMENT", amount: 2_500, reference: `demo-payment-${id}` });
			payments++;
		}
		progress("appointments", booked, toBook);
	}
	added.appointments = Object.values(appointments).reduce((a, b) => a + b, 0);
	added.payments = payments;
	log(`${added.appointments} appointments added (${JSON.stringify(appointments)}), ${payments} payments`);
	return { doctors: doctors.length, patients: patients.length, appointments, payments, added };
}
