import { isDataRefusal, violatedExclusionConstraint, violatedUniqueConstraint } from "../../lib/db-errors";

const withCode = (message: string, code: string, extra: object = {}) => Object.assign(new Error(message), { code, ...extra });

describe("other PostgreSQL errors", () => {
	test("a unique or exclusion violation names its constraint, from pg or through Sequelize", () => {
		const unique = withCode("duplicate key", "23505", { constraint: "patients_email_key" });
		expect(violatedUniqueConstraint(unique)).toBe("patients_email_key");
		expect(violatedUniqueConstraint({ name: "SequelizeUniqueConstraintError", parent: unique })).toBe("patients_email_key");
		expect(violatedUniqueConstraint(withCode("x", "23P01"))).toBeUndefined();
		const overlap = withCode("conflicting key value violates exclusion constraint", "23P01", { constraint: "appointments_patient_no_overlap" });
		expect(violatedExclusionConstraint({ name: "SequelizeDatabaseError", parent: overlap })).toBe("appointments_patient_no_overlap");
		expect(violatedExclusionConstraint({ name: "SequelizeDatabaseError", parent: unique })).toBeUndefined();
	});

	test("data refusals are SQLSTATE classes 22 and 23 only", () => {
		expect(["22P02", "22021", "23505", "23P01"].map(isDataRefusal)).toEqual([true, true, true, true]);
		expect(["57P01", "08006", "42P01", 23505, undefined].map(isDataRefusal)).toEqual([false, false, false, false, false]);
	});
});
