import { config } from "../lib/config";
import { adminCredentials, seed } from "../lib/seed";

/** `npm run seed`: loads the demo set into a running MedSync through its API (SEED_URL, default the local gateway). */
async function main(): Promise<void> {
	const baseUrl = process.env.SEED_URL ?? `http://127.0.0.1:${config.port}`;
	const result = await seed({ baseUrl, ...adminCredentials(), log: line => console.log(`seed: ${line}`) });
	console.log(JSON.stringify(result));
}

main().catch(err => {
	console.error(`seed failed: ${(err as Error).message}`);
	process.exit(1);
});
