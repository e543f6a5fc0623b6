import "moleculer";

/**
 * Staff roles and who may do what. Each action names the roles it allows
 * (`roles: PATIENT_READERS`) beside its definition; the gateway enforces them.
 * The role matrix in docs/api.md is this file, in a table.
 */
export const ROLES = ["ADMIN", "RECEPTIONIST", "DOCTOR", "VIEWER"] as const;
export type Role = (typeof ROLES)[number];

export const EVERYONE: readonly Role[] = ROLES;
export const ADMIN_ONLY: readonly Role[] = ["ADMIN"];

export const PATIENT_READERS: readonly Role[] = ["ADMIN", "RECEPTIONIST", "DOCTOR"];
export const PATIENT_WRITERS: readonly Role[] = ["ADMIN", "RECEPTIONIST"];
export const PATIENT_DELETERS: readonly Role[] = ["ADMIN"];
/** Merging a duplicate into its survivor retires a record and moves what hangs on it: as weighty as a deletion. */
export const PATIENT_MERGERS: readonly Role[] = ["ADMIN"];

/** Read billing accounts and ledgers, post payments. */
export const BILLING_CLERKS: readonly Role[] = ["ADMIN", "RECEPTIONIST"];
/** Charges, refunds, adjustments and account status. */
export const BILLING_ADMINS: readonly Role[] = ["ADMIN"];

/** The doctor directory is for every signed-in role; only admins change it. */
export const DOCTOR_READERS: readonly Role[] = EVERYONE;
export const DOCTOR_WRITERS: readonly Role[] = ["ADMIN"];

export const APPOINTMENT_READERS: readonly Role[] = ["ADMIN", "RECEPTIONIST", "DOCTOR"];
/** Book, reschedule, cancel. */
export const APPOINTMENT_SCHEDULERS: readonly Role[] = ["ADMIN", "RECEPTIONIST"];
/** Arrive, fulfil, no-show: the visit itself. */
export const APPOINTMENT_ATTENDANTS: readonly Role[] = ["ADMIN", "RECEPTIONIST", "DOCTOR"];

/** Aggregates with no personal data. */
export const ANALYTICS_READERS: readonly Role[] = ["ADMIN", "VIEWER"];

/** What the gateway puts in `ctx.meta.user` for an authenticated request. */
export interface CallerIdentity {
	id: string;
	email: string;
	role: Role;
	sessionId: string;
}

/** Resources whose every access is written to the audit trail. */
export type AuditedResource = "patient" | "billing";
