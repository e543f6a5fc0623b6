import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { DataTypes, Op, type WhereOptions } from "sequelize";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { auditMigrations } from "../migrations/audit";
import { AUDIT_RECORD_RULE, AUDIT_TEXT_MAX, type AuditRecord, type Refusal, type ShipResult } from "../lib/audit-journal";
import { ADMIN_ONLY } from "../lib/roles";
import { type PageRequest, limitOffset, pagingParams, toPage } from "../lib/paging";
import { timeBound, uuidRule } from "../lib/validation";

interface ListParams extends PageRequest {
	patientId?: string;
	userId?: string;
	from?: Date;
	to?: Date;
}

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

	mixins: [
		DbMixin(
			"audit",
			auditMigrations,
			{
				name: "auditEvent",
				define: {
					id: { type: DataTypes.UUID, primaryKey: true },
					at: { type: DataTypes.DATE, allowNull: false },
					userId: { type: DataTypes.UUID },
					role: { type: DataTypes.STRING(AUDIT_TEXT_MAX.role) },
					action: { type: DataTypes.STRING(AUDIT_TEXT_MAX.action), allowNull: false },
					resource: { type: DataTypes.STRING(AUDIT_TEXT_MAX.resource), allowNull: false },
					patientId: { type: DataTypes.UUID },
					outcome: { type: DataTypes.STRING(16), allowNull: false },
					status: { type: DataTypes.SMALLINT, allowNull: false },
					ip: { type: DataTypes.STRING(AUDIT_TEXT_MAX.ip) },
					requestId: { type: DataTypes.STRING(AUDIT_TEXT_MAX.requestId) }
				},
				options: { tableName: "audit_events", underscored: true, timestamps: false }
			}
		)
	],

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
				// The whole batch as one JSON parameter: one short statement however many records, and nothing for the ORM to build.
				if (good.length) {
					await this.db.query({
						text: `INSERT INTO audit_events (id, at, user_id, role, action, resource, patient_id, outcome, status, ip, request_id)
							SELECT id, at, "userId", role, action, resource, "patientId", outcome, status, ip, "requestId"
							FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, at timestamptz, "userId" uuid, role text, action text, resource text,
								"patientId" uuid, outcome text, status smallint, ip text, "requestId" text)
							ON CONFLICT (id) DO NOTHING`,
						values: [JSON.stringify(good)]
					});
				}
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
			async handler(this: AuditThis, ctx: Context<ListParams>) {
				const { patientId, userId, from, to } = ctx.params;
				const where: WhereOptions = {};
				if (patientId) Object.assign(where, { patientId });
				if (userId) Object.assign(where, { userId });
				if (from || to) Object.assign(where, { at: { ...(from && { [Op.gte]: from }), ...(to && { [Op.lte]: to }) } });
				const { rows, count } = await this.adapter.model.findAndCountAll({
					where,
					order: [["at", "DESC"], ["id", "DESC"]],
					...limitOffset(ctx.params)
				});
				const records = rows.map(row => {
					const r = row.get({ plain: true }) as AuditRecord & { at: Date };
					return { ...r, at: new Date(r.at).toISOString() };
				});
				return toPage(records, count, ctx.params);
			}
		}
	},

	created(this: AuditThis) {
		this.checkRecord = this.broker.validator!.compile(AUDIT_RECORD_RULE) as unknown as AuditVars["checkRecord"];
	}
};

export default AuditService;
