import { Validators } from "moleculer";

type Rule = Record<string, unknown> | string | unknown[];
type Schema = Record<string, Rule>;

export interface FieldProblem {
	type: string;
	field: string;
	message: string;
	actual?: unknown;
}

/**
 * C0 control characters but tab, line feed and carriage return, and DEL. No
 * field of ours means them, and PostgreSQL text cannot hold NUL at all: refused
 * here, once, instead of failing in whichever statement first meets them.
 */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_CHARACTER = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/;

/** Keys that reach an object's prototype when assigned; no field of ours is named so. */
export const PROTOTYPE_KEYS = new Set(["__proto__", "constructor", "prototype"]);

function normalize(rule: Rule): Record<string, unknown> | undefined {
	if (typeof rule === "string") {
		const flags = rule.split("|").slice(1);
		return { optional: flags.includes("optional"), nullable: flags.includes("nullable") };
	}
	// A list of alternative rules: each decides for itself.
	return Array.isArray(rule) ? undefined : rule;
}

function child(path: string, key: string | number): string {
	if (typeof key === "number") return `${path}[${key}]`;
	return path ? `${path}.${key}` : key;
}

/**
 * fastest-validator lets an optional field be null whatever its rule says, and
 * null then reaches a NOT NULL column. Here a field may be null only where its
 * rule says `nullable: true`: "optional" means "may be left out", nothing more.
 */
function nullProblems(props: Schema, value: Record<string, unknown>, path: string, problems: FieldProblem[]): void {
	for (const [key, input] of Object.entries(props)) {
		if (key.startsWith("$$") || !Object.hasOwn(value, key)) continue;
		const rule = normalize(input);
		if (!rule) continue;
		const field = child(path, key);
		const item = value[key];
		// A required field's null is the validator's own "required"; a default replaces null.
		if (item === null && rule.optional === true && rule.nullable !== true && rule.default === undefined) {
			problems.push({ type: "notNullable", field, message: `The '${field}' field may not be null; leave it out instead.`, actual: null });
		}
		ruleProblems(rule, item, field, problems);
	}
}

function ruleProblems(rule: Record<string, unknown>, value: unknown, path: string, problems: FieldProblem[]): void {
	const props = (rule.props ?? rule.properties) as Schema | undefined;
	if (rule.type === "object" && props && isPlainObject(value)) nullProblems(props, value, path, problems);
	if (rule.type === "array" && rule.items && Array.isArray(value)) {
		const items = normalize(rule.items as Rule);
		if (items) value.forEach((item, index) => ruleProblems(items, item, child(path, index), problems));
	}
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
	if (typeof value !== "object" || value === null) return false;
	const proto = Object.getPrototypeOf(value);
	return proto === Object.prototype || proto === null;
}

/** Every string, key included, at any depth: no control characters, no lone surrogates, no prototype keys. */
function textProblems(value: unknown, path: string, problems: FieldProblem[]): void {
	if (typeof value === "string") {
		if (CONTROL_CHARACTER.test(value)) problems.push({ type: "controlCharacter", field: path, message: `The '${path}' field contains a control character.` });
		else if (!value.isWellFormed()) problems.push({ type: "malformedText", field: path, message: `The '${path}' field is not well-formed Unicode text.` });
	} else if (Array.isArray(value)) {
		value.forEach((item, index) => textProblems(item, child(path, index), problems));
	} else if (isPlainObject(value)) {
		for (const [key, item] of Object.entries(value)) {
			if (PROTOTYPE_KEYS.has(key) || CONTROL_CHARACTER.test(key) || !key.isWellFormed()) {
				problems.push({ type: "forbiddenKey", field: child(path, key), message: `The field name '${JSON.stringify(key).slice(1, -1)}' is not allowed.` });
			} else {
				textProblems(item, child(path, key), problems);
			}
		}
	}
}

/** The problems that fastest-validator does not see in `params`, checked against `schema` (an action's params). */
function inputProblems(schema: Schema, params: unknown): FieldProblem[] {
	const problems: FieldProblem[] = [];
	textProblems(params, "", problems);
	if (schema.$$root) ruleProblems(schema as Record<string, unknown>, params, "", problems);
	else if (isPlainObject(params)) nullProblems(schema, params, "", problems);
	return problems;
}

/**
 * Messages that read right to a client: fastest-validator's own enum message
 * puts the allowed values where the given one belongs. None quotes the value
 * given, which may be patient data.
 */
const MESSAGES = {
	enumValue: "The '{field}' field must be one of: {expected}.",
	objectStrict: "Unknown field(s): {actual}. Allowed: {expected}."
};

/** What fastest-validator's checkers return (Moleculer's type says boolean, but a failure is the list of problems). */
type Checker = ((params: unknown, opts?: unknown) => true | unknown[]) & { async?: boolean };
type MoleculerChecker = ReturnType<Validators.Fastest["compile"]>;

/**
 * fastest-validator, plus the rules every action's input shares (inputProblems).
 * The broker's validator, so they hold for every action and event with params,
 * whoever calls it: the gateway, another service or the REPL.
 */
export class InputValidator extends Validators.Fastest {
	constructor(options: ConstructorParameters<typeof Validators.Fastest>[0] = {}) {
		super({ ...options, messages: { ...MESSAGES, ...options.messages } });
	}

	override compile(schema: Schema): MoleculerChecker {
		const check = super.compile(schema) as unknown as Checker;
		if (check.async) throw new Error("Async params validation ($$async) is not supported");
		const checkInput: Checker = (params, opts) => {
			const result = check(params, opts);
			const problems = inputProblems(schema, params);
			if (result === true) return problems.length ? problems : true;
			return [...result, ...problems];
		};
		checkInput.async = false;
		return checkInput as unknown as MoleculerChecker;
	}
}
