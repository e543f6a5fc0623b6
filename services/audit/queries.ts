import type { AuditRecord } from "../../lib/infra/audit-journal";
import type { Statement } from "../../lib/infra/database";
import { type PageRequest, limitOffset } from "../../lib/domain/paging";

/** Every statement of the audit trail, which only ever inserts and reads. */

export interface AuditFilter extends PageRequest {
	patientId?: string;
	userId?: string;
	from?: Date;
	to?: Date;
}

/** A record as the list reads it. */
export type AuditRow = Omit<AuditRecord, "at"> & { at: Date };

export function auditRecordFrom(row: AuditRow): AuditRecord {
	return {
		id: row.id,
		at: row.at.toISOString(),
		userId: row.userId,
		role: row.role,
		action: row.action,
		resource: row.resource,
		patientId: row.patientId,
		outcome: row.outcome,
		status: row.status,
		ip: row.ip,
		requestId: row.requestId,
		operator: row.operator ?? null
	};
}

/**
 * Stores checked records; an id already stored is skipped, so a resent batch
 * is harmless. The whole batch goes as one JSON parameter: one short statement
 * however many records.
 */
export function insertAuditRecords(records: unknown[]): Statement {
	return {
		text: `INSERT INTO audit_events (id, at, user_id, role, action, resource, patient_id, outcome, status, ip, request_id, operator)
			SELECT id, at, "userId", role, action, resource, "patientId", outcome, status, ip, "requestId", operator
			FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, at timestamptz, "userId" uuid, role text, action text, resource text,
				"patientId" uuid, outcome text, status smallint, ip text, "requestId" text, operator text)
			ON CONFLICT (id) DO NOTHING`,
		values: [JSON.stringify(records)]
	};
}

/**
 * One page of the records that match, newest first, each row also carrying
 * `total`, the count of all that match; a page past the end is one row of
 * nulls but for `total`.
 */
export function auditPage(filter: AuditFilter): Statement {
	const values: unknown[] = [];
	const conditions: string[] = [];
	if (filter.patientId) conditions.push(`patient_id = $${values.push(filter.patientId)}`);
	if (filter.userId) conditions.push(`user_id = $${values.push(filter.userId)}`);
	if (filter.from) conditions.push(`at >= $${values.push(filter.from)}`);
	if (filter.to) conditions.push(`at <= $${values.push(filter.to)}`);
	const where = conditions.length ? `WHERE ${conditions.join(" AND ")}` : "";
	const { limit, offset } = limitOffset(filter);
	const next = values.length + 1;
	return {
		text: `SELECT id, at, user_id AS "userId", role, action, resource, patient_id AS "patientId", outcome, status, ip, request_id AS "requestId", operator, counted.total
			FROM (SELECT count(*)::int AS total FROM audit_events ${where}) AS counted
			LEFT JOIN LATERAL (SELECT * FROM audit_events ${where} ORDER BY at DESC, id DESC LIMIT $${next} OFFSET $${next + 1}) AS page ON true`,
		values: [...values, limit, offset]
	};
}
