import crypto from "node:crypto";
import { isUuid } from "../lib/sql";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { config } from "../lib/config";
import { type AuditRecord, AuditJournal } from "../lib/audit-journal";
import type { GatewayRequest } from "./auth.mixin";

interface AuditVars {
	auditJournal: AuditJournal;
	server: Server;
}

interface AuditMethods {
	recordAccess(req: GatewayRequest, status: number, result?: unknown): void;
}

type AuditThis = Service & AuditVars & AuditMethods;

function outcomeOf(status: number): AuditRecord["outcome"] {
	if (status < 400) return "success";
	return status === 401 || status === 403 ? "denied" : "error";
}

function stringOrNull(value: unknown): string | null {
	return typeof value === "string" && value ? value : null;
}

/**
 * For the gateway: every call of an action marked `audit`, allowed or refused,
 * is appended to a local journal (see AuditJournal) that ships to the audit
 * service in the background. The journal is named after the gateway's port, so
 * a restarted gateway picks up what its predecessor left unshipped.
 */
export function AuditTrailMixin(): Partial<ServiceSchema> {
	const schema: ServiceSchema<ServiceSettingSchema, AuditMethods, AuditVars> = {
		name: "audit-trail-mixin",

		methods: {
			recordAccess(this: AuditThis, req: GatewayRequest, status: number, result?: unknown) {
				const action = req.$action;
				if (!action?.audit || !this.auditJournal) return;
				const ctx = req.$ctx;
				const params = req.$params ?? {};
				const user = ctx?.meta.user;
				const answer = status < 400 ? (result as { id?: unknown; patientId?: unknown } | undefined) : undefined;
				// Whose data: named in the request, or in the answer (a billing account names its patient).
				const patientId =
					stringOrNull(params.patientId) ??
					stringOrNull(answer?.patientId) ??
					(action.audit === "patient" ? (stringOrNull(params.id) ?? stringOrNull(answer?.id)) : null);
				this.auditJournal.append({
					id: crypto.randomUUID(),
					at: new Date().toISOString(),
					userId: user?.id ?? null,
					role: user?.role ?? null,
					action: action.name ?? "unknown",
					resource: action.audit,
					// A malformed id names no patient; keep the trail's column a uuid.
					patientId: patientId && isUuid(patientId) ? patientId : null,
					outcome: outcomeOf(status),
					status,
					ip: ctx?.meta.ip ?? null,
					requestId: ctx?.requestID ?? null
				});
			}
		},

		started(this: AuditThis) {
			// Lifecycle hooks of mixins run side by side: the port is known once the server listens.
			const open = () => {
				const { port } = this.server.address() as AddressInfo;
				const file = path.join(config.dataDir, "audit-journal", `gateway-${port}.jsonl`);
				this.auditJournal = new AuditJournal(file, records => this.broker.call("audit.record", { records }), this.logger);
				this.auditJournal.open();
			};
			if (this.server.listening) open();
			else this.server.once("listening", open);
		},

		async stopped(this: AuditThis) {
			await this.auditJournal?.close();
		}
	};
	return schema as unknown as Partial<ServiceSchema>;
}
