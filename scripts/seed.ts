import { seedConfigured } from "../lib/tooling/seed";

/** `npm run seed`: loads the demo set into a running MedSync through its API (SEED_URL, default the local gateway). */
seedConfigured().catch(err => {
	console.error(`seed failed: ${(err as Error).message}`);
	process.exit(1);
});
