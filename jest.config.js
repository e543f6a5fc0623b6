/** @type {import('jest').Config} */
module.exports = {
	testEnvironment: "node",
	roots: ["<rootDir>/test"],
	testMatch: ["**/*.test.ts"],
	transform: {
		"^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }]
	},
	globalSetup: "<rootDir>/test/helpers/global-setup.ts",
	globalTeardown: "<rootDir>/test/helpers/global-teardown.ts",
	setupFiles: ["<rootDir>/test/helpers/env.ts"],
	reporters: ["default", "<rootDir>/test/helpers/summary-reporter.js"],
	testTimeout: 60_000,
	// Integration suites share one PostgreSQL and one NATS server; two cores run two files at once.
	maxWorkers: 2
};
