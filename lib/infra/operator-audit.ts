import crypto from "node:crypto";
import os from "node:os";
import { type CallingOptions, type Context, Errors, type Middleware, type ServiceBroker } from "moleculer";
import { AUDIT_TEXT_MAX, type AuditRecord, type ShipResult, auditOutcome, auditedPatientId } from "./audit-journal";

/** What an operator's tool puts in the meta of its calls; `$repl` is moleculer-repl's own mark on `call` and `dcall`. */
export interface OperatorMeta {
	operator?: unknown;
	$repl?: unknown;
	/** Set while an audited action called by an operator runs, so the audited calls it makes are not recorded again. */
	$operatorAudited?: unknown;
}

/** Stands for an operator's tool that did not say who runs it: audited, never let through unnamed. */
export const UNKNOWN_OPERATOR = "unknown";

/** Who runs this process, as the audit trail names an operator: `<OS user>@<host>`. */
export function operatorIdentity(): string {
	let user: string | undefined;
	try {
		user = os.userInfo().username;
	} catch {
		// A uid with no entry in the user database (some containers): the environment may still say.
		user = process.env.USER ?? process.env.LOGNAME ?? `uid ${process.getuid?.() ?? "?"}`;
	}
	return `${user || UNKNOWN_OPERATOR}@${os.hostname()}`.slice(0, AUDIT_TEXT_MAX.operator);
}

/**
 * For a node an operator types into (`npm run repl`, `npm run dev`'s REPL): its
 * calls carry the operator's identity in `meta.operator`. `everyCall`: a node
 * that is only a REPL, where every call is the operator's; otherwise only the
 * REPL's own calls (moleculer-repl marks them `$repl`), not the services'.
 */
export function OperatorIdentityMiddleware(everyCall: boolean): Middleware {
	const operator = operatorIdentity();
	return {
		name: "OperatorIdentity",
		call(next: ServiceBroker["call"]) {
			return (actionName: string, params?: unknown, opts: CallingOptions = {}) => {
				const meta = (opts.meta ?? {}) as OperatorMeta;
				if (!opts.parentCtx && (everyCall || meta.$repl)) opts = { ...opts, meta: { ...meta, $repl: true, operator } };
				return next(actionName, params, opts);
			};
		}
	} as unknown as Middleware;
}

/** 503: the audit trail did not take the record of an operator's read, and so the read's answer is withheld. */
export class OperatorAuditUnavailableError extends Errors.MoleculerRetryableError {
	constructor(reason: string) {
		super(`The audit trail did not record this operator call (${reason}); its answer is withheld`, 503, "AUDIT_UNAVAILABLE");
		this.name = "OperatorAuditUnavailableError";
	}
}

/**
 * Audits the calls an operator makes from the REPL to an action that declares
 * `audit`, on the node that runs the action, as the gateway audits a client's:
 * the record names the operator (`meta.operator`, or "unknown" for a REPL call
 * that does not say) instead of a user. It is stored before the answer leaves,
 * and if it cannot be, the answer is withheld (503): an operator's read is never
 * unaudited. A call the operator's call makes in turn is not recorded again.
 *
 * Calls from the gateway carry its user, and its journal records them; calls a
 * service makes on its own behalf (a Kafka consumer, a gRPC handler) carry
 * neither a user nor an operator and are not operators' reads. A REPL call
 * counts as the operator's even if it claims a gateway user in its meta.
 */
export const OperatorAuditMiddleware: Middleware = {
	name: "OperatorAudit",
	localAction(next: (ctx: Context) => Promise<unknown>, action: { name?: string; audit?: string }) {
		const resource = action.audit;
		if (!resource) return next;
		return async (ctx: Context) => {
			const meta = ctx.meta as OperatorMeta;
			const byOperator = meta.$repl !== undefined || meta.operator !== undefined;
			if (!byOperator || meta.$operatorAudited) return next(ctx);
			const operator = typeof meta.operator === "string" && meta.operator.trim() ? meta.operator.trim().slice(0, AUDIT_TEXT_MAX.operator) : UNKNOWN_OPERATOR;
			const params = (ctx.params ?? {}) as Record<string, unknown>;
			const record = (status: number, answer?: unknown): AuditRecord => ({
				id: crypto.randomUUID(),
				at: new Date().toISOString(),
				userId: null,
				role: null,
				action: (action.name ?? "unknown").slice(0, AUDIT_TEXT_MAX.action),
				resource,
				patientId: auditedPatientId(resource, params, answer as { id?: unknown; patientId?: unknown } | undefined),
				outcome: auditOutcome(status),
				status,
				ip: null,
				requestId: ctx.requestID?.slice(0, AUDIT_TEXT_MAX.requestId) ?? null,
				operator
			});
			meta.$operatorAudited = true;
			let answer: unknown;
			try {
				answer = await next(ctx);
			} catch (err) {
				const code = (err as { code?: unknown }).code;
				const status = typeof code === "number" && code >= 400 && code <= 599 ? code : 500;
				// The call failed anyway; a record that cannot be stored must not hide why it failed.
				await store(ctx, record(status)).catch(storeErr => ctx.broker.logger.error(`An operator's failed call to ${action.name} is not in the audit trail: ${(storeErr as Error).message}`));
				throw err;
			} finally {
				// The mark is for the calls this one makes; it must not travel back to the caller with the meta.
				delete meta.$operatorAudited;
			}
			await store(ctx, record(200, answer));
			return answer;
		};
	}
} as unknown as Middleware;

async function store(ctx: Context, record: AuditRecord): Promise<void> {
	let answer: Partial<ShipResult> | undefined;
	try {
		answer = await ctx.broker.call<Partial<ShipResult>, { records: AuditRecord[] }>("audit.record", { records: [record] });
	} catch (err) {
		throw new OperatorAuditUnavailableError((err as Error).message);
	}
	const refused = answer?.refused?.[0];
	if (refused) throw new OperatorAuditUnavailableError(`refused: ${refused.reason}`);
}
