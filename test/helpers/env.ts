// Runs before each test file's imports, so lib/config sees the test settings.
process.env.PORT = "0";
process.env.LOG_LEVEL ??= "warn";
