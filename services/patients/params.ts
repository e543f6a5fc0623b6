import { dateOnly } from "../../lib/domain/validation";
import { GENDERS, PATIENT_SORT_KEYS } from "./queries";

/** The fields a client writes, as on create; `registerDate` defaults to today. */
export const patientFields = {
	name: { type: "string", trim: true, empty: false, max: 100 },
	email: { type: "email", max: 254 },
	address: { type: "string", trim: true, empty: false, max: 500 },
	dateOfBirth: dateOnly({ notFuture: true }),
	registerDate: dateOnly({ optional: true }),
	phone: { type: "string", trim: true, empty: false, max: 32, pattern: /^\+?[0-9 ()./-]{3,32}$/, optional: true, nullable: true },
	gender: { type: "enum", values: GENDERS, optional: true, nullable: true }
};

/** What the list sorts by: a sortable field, `-` first for descending. */
export const PATIENT_SORT_VALUES = Object.keys(PATIENT_SORT_KEYS).flatMap(field => [field, `-${field}`]);
