import { seedConfigured } from "../lib/tooling/seed";

/** `npm run seed [-- --patients N --appointments N]`: loads the demo set into a running MedSync through its API (SEED_URL, default the local gateway). */
seedConfigured(process.argv.slice(2)).catch(err => {
	console.error(`seed failed: ${(err as Error).message}`);
	process.exit(1);
});
