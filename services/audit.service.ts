import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { auditMigrations } from "../migrations/audit";
import { AUDIT_RECORD_RULE, type AuditRecord, AuditRecordSchema, type Refusal, type ShipResult } from "../lib/infra/audit-journal";
import { ADMIN_ONLY } from "../lib/domain/roles";
import { type Page, pagingParams, toPage } from "../lib/domain/paging";
import { PageOf } from "../lib/domain/schemas";
import { timeBound, uuidRule } from "../lib/domain/validation";
import { type AuditFilter, type AuditRow, auditPage, auditRecordFrom, insertAuditRecords } from "./audit/queries";

interface AuditVars extends DbVars {
	/** fastest-validator's compiled check of one record: true, or what is wrong. */
	checkRecord(record: unknown): true | { message: string }[];
}

type AuditThis = Service<ServiceSettingSchema> & AuditVars;

/**
 * The audit trail of every access to patient data, in its own database. Records
 * arrive from the gateways' journals; nothing in the API changes or removes one.
 */
const AuditService: ServiceSchema<ServiceSettingSchema, Record<string, never>, AuditVars> = {
	name: "audit",

	mixins: [DbMixin("audit", auditMigrations)],

	settings: {
		rest: "/audit"
	},

	actions: {
		/**
		 * Stores a batch from a gateway's journal; an id already stored is skipped, so a resent batch is harmless.
		 * Each record is checked on its own: the ones the table cannot take are answered back, by position and
		 * with the reason (the journal sets them aside), and the others are stored. Not routed.
		 */
		record: {
			visibility: "public",
			params: { records: { type: "array", max: 1000 } },
			async handler(this: AuditThis, ctx: Context<{ records: unknown[] }>): Promise<ShipResult & { stored: number }> {
				const refused: Refusal[] = [];
				const good = ctx.params.records.filter((record, index) => {
					const result = this.checkRecord(record);
					if (result !== true) refused.push({ index, reason: result.map(error => error.message).join(" ") });
					return result === true;
				});
				if (good.length) await this.db.query(insertAuditRecords(good));
				return { stored: good.length, refused };
			}
		},

		list: {
			rest: "GET /",
			roles: ADMIN_ONLY,
			params: {
				$$strict: true,
				patientId: uuidRule({ optional: true }),
				userId: uuidRule({ optional: true }),
				from: timeBound({ optional: true }),
				to: timeBound({ optional: true }),
				...pagingParams(50)
			},
			responses: { 200: { description: "A page of the audit trail, newest first.", schema: PageOf(AuditRecordSchema) } },
			async handler(this: AuditThis, ctx: Context<AuditFilter>): Promise<Page<AuditRecord>> {
				const rows = await this.db.query<AuditRow & { total: number }>(auditPage(ctx.params));
				return toPage(rows.filter(row => row.id !== null).map(auditRecordFrom), rows[0].total, ctx.params);
			}
		}
	},

	created(this: AuditThis) {
		this.checkRecord = this.broker.validator!.compile(AUDIT_RECORD_RULE) as unknown as AuditVars["checkRecord"];
	}
};

export default AuditService;
