import { ServiceBroker, type ServiceSchema } from "moleculer";
import ApiGateway from "moleculer-web";
import AnalyticsService from "../../services/analytics.service";
import ApiService from "../../services/api.service";
import AppointmentsService from "../../services/appointments.service";
import AuditService from "../../services/audit.service";
import AuthService from "../../services/auth.service";
import BillingService from "../../services/billing.service";
import DoctorsService from "../../services/doctors.service";
import PatientsService from "../../services/patients.service";

type Rule = Record<string, unknown>;

/**
 * Unbounded input is a class of 500s (a page of 1e20 became an OFFSET overflow,
 * a date in year -271821 a timestamp PostgreSQL cannot hold). Every rule of
 * every action's params must bound what it takes: numbers by min and max,
 * strings by a length, a pattern or a check of their shape, arrays by a
 * length; no bare `date`.
 */
function unbounded(rule: Rule | string, field: string): string[] {
	if (typeof rule === "string") return rule.split("|")[0] === "string" || rule.startsWith("number") ? [`${field} (${rule})`] : [];
	if (Array.isArray(rule)) return rule.flatMap(alternative => unbounded(alternative, field));
	const problems: string[] = [];
	switch (rule.type) {
		case "number":
			if (!Number.isFinite(rule.min) || !Number.isFinite(rule.max)) problems.push(`${field}: a number needs min and max`);
			break;
		case "string":
		case "email":
			// A custom check (an id, a date, an instant) takes only its own shape; `format` alone checks nothing.
			if (rule.max === undefined && rule.pattern === undefined && rule.custom === undefined) problems.push(`${field}: a string needs max, a pattern or a custom check`);
			break;
		case "array":
			if (rule.max === undefined) problems.push(`${field}: an array needs max`);
			if (rule.items) problems.push(...unbounded(rule.items as Rule, `${field}[]`));
			break;
		case "date":
			problems.push(`${field}: a bare date takes years PostgreSQL cannot hold; use timeBound, instant or dateOnly`);
			break;
		case "object":
			for (const [name, child] of Object.entries((rule.props ?? rule.properties ?? {}) as Record<string, Rule>)) problems.push(...unbounded(child, `${field}.${name}`));
			break;
	}
	return problems;
}

test("every action's params bound what they take", () => {
	const broker = new ServiceBroker({ logger: false });
	for (const schema of [ApiService, AuthService, AuditService, PatientsService, BillingService, AnalyticsService, DoctorsService, AppointmentsService]) {
		broker.createService(schema as ServiceSchema);
	}
	const problems: string[] = [];
	let checked = 0;
	for (const service of broker.services) {
		for (const [name, action] of Object.entries(service.schema.actions ?? {})) {
			// moleculer-web's own actions (addRoute, removeRoute...) take no client input.
			if (service.name === "api" && name in (ApiGateway.actions ?? {})) continue;
			const params = typeof action === "object" ? (action as { params?: Record<string, Rule> }).params : undefined;
			if (!params) continue;
			checked += 1;
			const fields = params.$$root ? ((params.props ?? {}) as Record<string, Rule>) : params;
			for (const [field, rule] of Object.entries(fields)) {
				if (!field.startsWith("$$")) problems.push(...unbounded(rule, `${service.name}.${name} ${field}`));
			}
		}
	}
	expect(checked).toBeGreaterThan(40);
	expect(problems).toEqual([]);
});
