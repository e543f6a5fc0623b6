import fs from "node:fs";
import path from "node:path";

/** The folder holding package.json, whether running from source (lib/) or built (dist/lib/). */
export const PROJECT_ROOT = (() => {
	let dir = __dirname;
	while (!fs.existsSync(path.join(dir, "package.json"))) {
		const parent = path.dirname(dir);
		if (parent === dir) throw new Error(`No package.json above ${__dirname}`);
		dir = parent;
	}
	return dir;
})();
