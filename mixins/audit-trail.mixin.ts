import crypto from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { config } from "../lib/infra/config";
import { AUDIT_TEXT_MAX, AuditJournal, auditOutcome, auditedPatientId } from "../lib/infra/audit-journal";
import type { GatewayRequest } from "./auth.mixin";
import type { MixinSchema } from "../types/mixin";

interface AuditVars {
	auditJournal: AuditJournal;
	server: Server;
	auditMetricsTimer: NodeJS.Timeout | undefined;
}

interface AuditMethods {
	recordAccess(req: GatewayRequest, status: number, result?: unknown): void;
	auditJournalCheck(): string;
}

type AuditThis = Service & AuditVars & AuditMethods;

/** How often the backlog gauges are brought up to date: the age of the oldest record grows by itself. */
const METRICS_INTERVAL_MS = 1000;

function stringOrNull(value: unknown): string | null {
	return typeof value === "string" && value ? value : null;
}

/**
 * For the gateway: every call of an action marked `audit`, allowed or refused,
 * is appended to a local journal (see AuditJournal) that ships to the audit
 * service in the background. The journal is named after the gateway's port, so
 * a restarted gateway picks up what its predecessor left unshipped. Records the
 * audit service refuses are set aside beside it; the `auditSetAside` and
 * `auditReplaySetAside` actions (not routed) list and replay them.
 */
export function AuditTrailMixin(): MixinSchema {
	const schema: ServiceSchema<ServiceSettingSchema, AuditMethods, AuditVars> = {
		name: "audit-trail-mixin",

		actions: {
			/** This gateway's journal backlog: records not yet in the audit trail, the oldest one's wait, and how many are set aside. For operators; not routed. */
			auditBacklog: {
				visibility: "public",
				handler(this: AuditThis) {
					const { pending, oldestSeconds } = this.auditJournal.backlog();
					return { pending, oldestSeconds: Math.floor(oldestSeconds), setAside: this.auditJournal.setAsideCount };
				}
			},

			/** This gateway's set-aside records: each one's id, when it was set aside and why, and how many there are. For operators; not routed. */
			auditSetAside: {
				visibility: "public",
				params: { limit: { type: "number", integer: true, min: 1, max: 10_000, default: 100, convert: true } },
				handler(this: AuditThis, ctx: Context<{ limit: number }>) {
					return this.auditJournal.listSetAside(ctx.params.limit);
				}
			},

			/** Ships this gateway's set-aside records again; those the audit service still refuses stay set aside. For operators; not routed. */
			auditReplaySetAside: {
				visibility: "public",
				handler(this: AuditThis) {
					return this.auditJournal.replaySetAside();
				}
			}
		},

		methods: {
			recordAccess(this: AuditThis, req: GatewayRequest, status: number, result?: unknown) {
				const action = req.$action;
				if (!action?.audit || !this.auditJournal) return;
				const ctx = req.$ctx;
				const params = req.$params ?? {};
				const user = ctx?.meta.user;
				const answer = status < 400 ? (result as { id?: unknown; patientId?: unknown } | undefined) : undefined;
				this.auditJournal.append({
					id: crypto.randomUUID(),
					at: new Date().toISOString(),
					userId: user?.id ?? null,
					role: user?.role ?? null,
					action: action.name ?? "unknown",
					resource: action.audit,
					patientId: auditedPatientId(action.audit, params, answer),
					outcome: auditOutcome(status),
					status,
					// The client chooses these (X-Forwarded-For, X-Request-ID): cut to what the trail's columns hold.
					ip: stringOrNull(ctx?.meta.ip)?.slice(0, AUDIT_TEXT_MAX.ip) ?? null,
					requestId: stringOrNull(ctx?.requestID)?.slice(0, AUDIT_TEXT_MAX.requestId) ?? null
				});
			},

			/** For /ready: "up", or degraded while the oldest record not yet shipped is older than AUDIT_JOURNAL_MAX_AGE_SECONDS. */
			auditJournalCheck(this: AuditThis): string {
				if (!this.auditJournal) return "down: not open";
				const { pending, oldestSeconds } = this.auditJournal.backlog();
				const limit = config.auditJournalMaxAgeSeconds;
				if (oldestSeconds <= limit) return "up";
				return `degraded: ${pending} record(s) not yet in the audit trail, the oldest for ${Math.floor(oldestSeconds)} s (limit ${limit} s)`;
			}
		},

		created(this: AuditThis) {
			const metrics = this.broker.metrics;
			metrics.register({ type: "gauge", name: "medsync.audit.journal.pending", description: "Audit records in the gateway's journal, not yet in the audit trail" });
			metrics.register({ type: "gauge", name: "medsync.audit.journal.oldest.seconds", unit: "seconds", description: "How long the oldest audit record not yet in the audit trail has waited (0 when none)" });
			metrics.register({ type: "gauge", name: "medsync.audit.journal.set.aside", description: "Audit records the audit service refused, set aside beside the journal for an operator to replay" });
			metrics.register({ type: "counter", name: "medsync.audit.journal.set.aside.total", description: "Audit records the audit service refused and the journal set aside" });
		},

		started(this: AuditThis) {
			// Lifecycle hooks of mixins run side by side: the port is known once the server listens.
			const open = () => {
				const { port } = this.server.address() as AddressInfo;
				const file = path.join(config.dataDir, "audit-journal", `gateway-${port}.jsonl`);
				const metrics = this.broker.metrics;
				this.auditJournal = new AuditJournal(file, records => this.broker.call("audit.record", { records }), this.logger, {
					onSetAside: count => metrics.increment("medsync.audit.journal.set.aside.total", undefined, count)
				});
				this.auditJournal.open();
				const report = () => {
					const { pending, oldestSeconds } = this.auditJournal.backlog();
					metrics.set("medsync.audit.journal.pending", pending);
					metrics.set("medsync.audit.journal.oldest.seconds", oldestSeconds);
					metrics.set("medsync.audit.journal.set.aside", this.auditJournal.setAsideCount);
				};
				report();
				this.auditMetricsTimer = setInterval(report, METRICS_INTERVAL_MS);
				this.auditMetricsTimer.unref();
			};
			if (this.server.listening) open();
			else this.server.once("listening", open);
		},

		async stopped(this: AuditThis) {
			clearInterval(this.auditMetricsTimer);
			await this.auditJournal?.close();
		}
	};
	return schema;
}
