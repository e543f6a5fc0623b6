import { execFile, spawn } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { PROJECT_ROOT } from "../../lib/infra/paths";

/**
 * HAPI FHIR's instance validator (scripts/fhir-validator.sh), for the suites
 * that check what MedSync emits against the official R4 profiles. Its jars are
 * cached under the project's .data, not the test's DATA_DIR: one fetch serves every run.
 */

const SCRIPT = path.join(PROJECT_ROOT, "scripts/fhir-validator.sh");
const env = () => ({ ...process.env, DATA_DIR: path.join(PROJECT_ROOT, ".data") });

/** Fetches and compiles the validator unless it is ready; minutes on a fresh clone. */
export async function buildFhirValidator(): Promise<void> {
	await promisify(execFile)(SCRIPT, ["build"], { env: env(), maxBuffer: 16 * 1024 * 1024 });
}

export interface ValidationFinding {
	resource: string;
	severity: string;
	where: string;
	message: string;
}

/** Every error and fatal issue HAPI finds in `resources` (one JVM for all), each named by resource. */
export function fhirValidationErrors(resources: { resourceType: string; id?: string }[]): Promise<ValidationFinding[]> {
	return new Promise((resolve, reject) => {
		const child = spawn(SCRIPT, ["validate"], { env: env(), stdio: ["pipe", "pipe", "pipe"] });
		let stdout = "";
		let stderr = "";
		child.stdout.on("data", chunk => (stdout += chunk));
		child.stderr.on("data", chunk => (stderr += chunk));
		child.on("error", reject);
		child.on("close", code => {
			const outcomes = stdout.split("\n").filter(Boolean);
			if (code !== 0 || outcomes.length !== resources.length) {
				reject(new Error(`The FHIR validator exited ${code} with ${outcomes.length} of ${resources.length} answers: ${stderr.slice(-2000)}`));
				return;
			}
			resolve(
				outcomes.flatMap((line, i) => {
					const outcome = JSON.parse(line) as { issue?: { severity: string; expression?: string[]; location?: string[]; diagnostics?: string }[] };
					return (outcome.issue ?? [])
						.filter(issue => issue.severity === "error" || issue.severity === "fatal")
						.map(issue => ({
							resource: `${resources[i].resourceType}/${resources[i].id ?? "(no id)"}`,
							severity: issue.severity,
							where: issue.expression?.[0] ?? issue.location?.[0] ?? "",
							message: issue.diagnostics ?? ""
						}));
				})
			);
		});
		child.stdin.end(resources.map(r => JSON.stringify(r)).join("\n") + "\n");
	});
}
