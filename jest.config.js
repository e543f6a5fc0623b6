/**
 * Two tiers, one run: `npm test` runs both; `npm run test:unit` the unit tier alone.
 * A project's global setup runs only when one of its files does, so the unit tier
 * never looks for PostgreSQL or NATS.
 */

/** @type {import('jest').Config} */
const shared = {
	testEnvironment: "node",
	transform: {
		"^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }]
	},
	setupFiles: ["<rootDir>/test/helpers/env.ts"]
};

/** @type {import('jest').Config} */
module.exports = {
	projects: [
		{
			...shared,
			// Code alone, and services on a broker with their neighbours and database stubbed: no server, no build.
			displayName: "unit",
			roots: ["<rootDir>/test/unit"],
			testMatch: ["**/*.test.ts", "**/*.spec.ts"]
		},
		{
			...shared,
			// Real PostgreSQL, NATS, Kafka, gRPC and HTTP: PostgreSQL for every file (global setup), NATS and Kafka for those that ask (test/helpers/servers.ts).
			displayName: "integration",
			roots: ["<rootDir>/test/integration"],
			testMatch: ["**/*.test.ts"],
			globalSetup: "<rootDir>/test/helpers/global-setup.ts",
			globalTeardown: "<rootDir>/test/helpers/global-teardown.ts"
		}
	],
	reporters: ["default", "<rootDir>/test/helpers/summary-reporter.js"],
	// A global option: Jest reads no project's own.
	testTimeout: 60_000,
	// Integration suites share one PostgreSQL and one NATS server; two cores run two files at once.
	maxWorkers: 2
};
