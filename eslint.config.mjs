import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
	{ ignores: ["dist/", "node_modules/", ".data/", "coverage/", "test-artifacts/", "proto/generated/"] },
	js.configs.recommended,
	...tseslint.configs.recommended,
	{
		languageOptions: { globals: { process: "readonly", console: "readonly" } },
		rules: {
			"@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_", varsIgnorePattern: "^_" }]
		}
	},
	{
		files: ["test/**/*.ts"],
		rules: { "@typescript-eslint/no-explicit-any": "off", "@typescript-eslint/no-non-null-assertion": "off" }
	},
	{
		files: ["**/*.js", "**/*.cjs"],
		languageOptions: { sourceType: "commonjs", globals: { module: "writable", require: "readonly" } }
	}
);
