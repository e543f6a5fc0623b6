import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { SECRET_SETTINGS } from "../../lib/infra/config";
import { PROJECT_ROOT } from "../../lib/infra/paths";

/**
 * docker-compose.yml, checked by Docker Compose itself (Debian's
 * docker-compose validates against the compose schema without a Docker
 * engine; .ci/run installs it), then held to MedSync's rules: images pinned by
 * digest, secrets only as files, the gateway on loopback, healthchecks off the
 * metrics port, Prometheus scraping every service.
 */
const COMPOSE_FILE = path.join(PROJECT_ROOT, "docker-compose.yml");
const run = promisify(execFile);

/** What `docker-compose <args>` prints for `file`, with no secret in the environment. */
async function compose(file: string, ...args: string[]): Promise<string> {
	const env = { PATH: process.env.PATH, HOME: os.tmpdir() };
	return (await run("docker-compose", ["-f", file, ...args], { env, cwd: path.dirname(file) })).stdout;
}

const source = fs.readFileSync(COMPOSE_FILE, "utf8");
/** The file as Compose reads it, every profile included (each run of Debian's docker-compose takes seconds). */
let rendered: string;

beforeAll(async () => {
	rendered = await compose(COMPOSE_FILE, "--profile", "observability", "config");
}, 60_000);

describe("docker-compose.yml", () => {
	test("is valid, with and without the observability profile, and needs no secret in the environment", async () => {
		await expect(compose(COMPOSE_FILE, "config", "--quiet")).resolves.toBe("");
		await expect(compose(COMPOSE_FILE, "--profile", "observability", "config", "--quiet")).resolves.toBe("");
		expect((await compose(COMPOSE_FILE, "config", "--profiles")).split("\n")).toContain("observability");
		const services = (await compose(COMPOSE_FILE, "--profile", "observability", "config", "--services")).trim().split("\n");
		expect(services).toEqual(expect.arrayContaining(["prometheus", "grafana", "api", "billing"]));
		// Only under the profile.
		expect(source).toMatch(/^ {2}prometheus:\n( {4}.*\n)*? {4}profiles: \["observability"\]$/m);
		expect(source).toMatch(/^ {2}grafana:\n( {4}.*\n)*? {4}profiles: \["observability"\]$/m);
	});

	test("the lint fails on an invalid file", async () => {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "medsync-compose-"));
		const broken = path.join(dir, "docker-compose.yml");
		fs.writeFileSync(broken, source.replace("    healthcheck:\n", "    healthchek:\n"));
		await expect(compose(broken, "config", "--quiet")).rejects.toMatchObject({ stderr: expect.stringMatching(/healthchek/) });
	});

	test("every image is pinned by digest; MedSync's own are built here", () => {
		const images = [...rendered.matchAll(/^\s+image: (\S+)$/gm)].map(m => m[1]);
		expect(images.length).toBe(5);
		for (const image of images) expect(image).toMatch(/^[a-z0-9./-]+:[\w.-]+@sha256:[0-9a-f]{64}$/);
	});

	test("secrets come as files: no secret setting has a value in the file, each *_FILE names a declared secret", () => {
		for (const name of SECRET_SETTINGS) expect([name, new RegExp(`^\\s+${name}:`, "m").test(source)]).toEqual([name, false]);
		expect(source).not.toMatch(/POSTGRES_PASSWORD:|--pass ["']?\$\{/);
		const declared = new Set([...source.matchAll(/^ {2}([a-z_]+):\n {4}file: \.\/secrets\/\1$/gm)].map(m => m[1]));
		const named = [...source.matchAll(/_FILE: \/run\/secrets\/([a-z_]+)$/gm)].map(m => m[1]);
		expect(named.length).toBeGreaterThanOrEqual(8);
		for (const secret of named) expect([secret, declared.has(secret)]).toEqual([secret, true]);
	});

	test("the gateway is published on 127.0.0.1 unless told otherwise, as are Prometheus and Grafana; nothing else is", () => {
		const published = [...rendered.matchAll(/^\s+- (\S+):(\d+):\d+\/tcp$/gm)].map(m => `${m[1]}:${m[2]}`);
		expect(published.sort()).toEqual(["127.0.0.1:3000", "127.0.0.1:4005", "127.0.0.1:9090"]);
	});

	test("no healthcheck depends on the metrics port", () => {
		const healthchecks = [...source.matchAll(/healthcheck:\n\s+test: (.*)$/gm)].map(m => m[1]);
		expect(healthchecks.length).toBeGreaterThanOrEqual(8);
		for (const test of healthchecks) expect(test).not.toMatch(/3030|metrics/);
	});

	test("Prometheus scrapes every MedSync service's metrics port", () => {
		const services = [...source.matchAll(/^\s+SERVICES: (\w+)$/gm)].map(m => m[1]);
		const prometheus = fs.readFileSync(path.join(PROJECT_ROOT, "observability/prometheus.yml"), "utf8");
		const targets = [...prometheus.matchAll(/^\s+- (\w+):3030$/gm)].map(m => m[1]);
		expect(targets.sort()).toEqual(services.sort());
	});
});
