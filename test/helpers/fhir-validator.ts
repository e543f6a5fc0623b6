import { spawn } from "node:child_process";
import path from "node:path";
import { PROJECT_ROOT } from "../../lib/infra/paths";

/**
 * HAPI FHIR's instance validator (scripts/fhir-validator.sh), for the suites
 * that check what MedSync emits against the official R4 profiles. It starts
 * with the suite and validates each resource as the suite hands it over, so
 * the work overlaps the tests. Its jars are cached under the project's .data,
 * not the test's DATA_DIR: one fetch serves every run.
 */

export interface ValidationFinding {
	resource: string;
	severity: string;
	where: string;
	message: string;
}

export interface FhirValidatorRun {
	/** Hands a resource over; one already handed over is not validated again. */
	submit(resource: { resourceType: string; id?: string }): void;
	/** Every error and fatal issue found, each named by its resource, once all are validated. */
	finish(): Promise<ValidationFinding[]>;
	/** Ends the validator's JVM if it still runs (a suite that failed before finish()). */
	stop(): void;
}

export function startFhirValidator(): FhirValidatorRun {
	const child = spawn(path.join(PROJECT_ROOT, "scripts/fhir-validator.sh"), ["validate"], {
		env: { ...process.env, DATA_DIR: path.join(PROJECT_ROOT, ".data") },
		stdio: ["pipe", "pipe", "pipe"]
	});
	const submitted: { resourceType: string; id?: string }[] = [];
	const seen = new Set<string>();
	let stdout = "";
	let stderr = "";
	child.stdout.on("data", chunk => (stdout += chunk));
	child.stderr.on("data", chunk => (stderr += chunk));
	// A validator that died is reported by finish(), not by a write to its closed input.
	child.stdin.on("error", () => {});
	const exited = new Promise<number | null>((resolve, reject) => {
		child.on("error", reject);
		child.on("close", resolve);
	});
	exited.catch(() => {});
	return {
		submit(resource) {
			const line = JSON.stringify(resource);
			if (seen.has(line)) return;
			seen.add(line);
			submitted.push(resource);
			child.stdin.write(`${line}\n`);
		},
		async finish() {
			child.stdin.end();
			const code = await exited;
			const outcomes = stdout.split("\n").filter(Boolean);
			if (code !== 0 || outcomes.length !== submitted.length) {
				throw new Error(`The FHIR validator exited ${code} with ${outcomes.length} of ${submitted.length} answers: ${stderr.slice(-2000)}`);
			}
			return outcomes.flatMap((line, i) => {
				const outcome = JSON.parse(line) as { issue?: { severity: string; expression?: string[]; location?: string[]; diagnostics?: string }[] };
				return (outcome.issue ?? [])
					.filter(issue => issue.severity === "error" || issue.severity === "fatal")
					.map(issue => ({
						resource: `${submitted[i].resourceType}/${submitted[i].id ?? "(no id)"}`,
						severity: issue.severity,
						where: issue.expression?.[0] ?? issue.location?.[0] ?? "",
						message: issue.diagnostics ?? ""
					}));
			});
		},
		stop() {
			if (child.exitCode === null) child.kill();
		}
	};
}
