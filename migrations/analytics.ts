import type { Migration } from "../lib/infra/migrations";
import { PROCESSED_EVENTS_SQL } from "../lib/domain/patient-events";

export const analyticsMigrations: Migration[] = [
	{
		version: 1,
		name: "daily registration counts",
		sql: `
-- Aggregates only: no personal data lives in the analytics database.
CREATE TABLE registrations_daily (
	day date PRIMARY KEY,
	count integer NOT NULL CHECK (count >= 0)
);
${PROCESSED_EVENTS_SQL}
`
	},
	{
		version: 2,
		name: "daily merge counts",
		sql: `
-- Duplicate patients merged per day, from PATIENT_MERGED: aggregates only, as registrations.
CREATE TABLE merges_daily (
	day date PRIMARY KEY,
	count integer NOT NULL CHECK (count >= 0)
);`
	}
];
