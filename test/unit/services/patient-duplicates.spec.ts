import crypto from "node:crypto";
import type { Service, ServiceSchema } from "moleculer";
import type { GrpcClientVars } from "../../../mixins/grpc-client.mixin";
import PatientsService from "../../../services/patients.service";
import { duplicateCandidates, duplicateSearchSettings } from "../../../services/patients/duplicate-queries";
import { DUPLICATE_WEIGHTS, MIN_DUPLICATE_SCORE, NAME_SIMILARITY_FLOOR } from "../../../services/patients/duplicates";
import { mergedPatientById, patientById } from "../../../services/patients/queries";
import { duplicateRow, patientRow } from "../../helpers/fixtures";
import { failure } from "../../helpers/expect";
import { createWithDatabase, expectDeclared, refusedFields, unitBroker } from "../../helpers/service-broker";
import { StubDatabase } from "../../helpers/stub-database";

/**
 * The duplicate search on a broker, its database a stub: what it asks
 * PostgreSQL and how it turns the rows into candidates and reasons. Whether
 * PostgreSQL finds the right candidates, through its indexes, is for the
 * integration suite (patient-duplicates.test.ts).
 */

const PATIENT = patientRow();
const SEARCH = duplicateCandidates({ id: "", weights: DUPLICATE_WEIGHTS, nameFloor: 0, minScore: 0, limit: 0 });
let candidates: ReturnType<typeof duplicateRow>[] = [];
const db = new StubDatabase()
	.answer(patientById(""), values => (values[0] === PATIENT.id ? [PATIENT] : []))
	.answer(SEARCH, () => candidates);

const broker = unitBroker();
const service = createWithDatabase(broker, { ...(PatientsService as ServiceSchema), started() {}, stopped() {} }, db);

beforeAll(async () => {
	await broker.start();
	(service as Service & GrpcClientVars).grpcClients.billing.close();
});
afterAll(() => broker.stop());

const search = (params: Record<string, unknown>) => broker.call<any, object>("patients.duplicates", params);

test("patient readers may search, and every search is audited as the patient's", () => {
	expectDeclared(broker, "patients", "patient", { duplicates: ["ADMIN", "RECEPTIONIST", "DOCTOR"] });
});

test("one transaction: the patient, the name threshold a name alone must reach, then the scored candidates", async () => {
	const sent = db.statements.length;
	candidates = [];
	expect(await search({ id: PATIENT.id })).toEqual({ patient: PATIENT.id, candidates: [] });
	const statements = db.statements.slice(sent);
	expect(statements.map(s => s.text)).toEqual([patientById("").text, duplicateSearchSettings(0).text, SEARCH.text]);
	// A name alone scores 0.5 × its similarity: 0.8 reaches the 0.4 a candidate needs.
	expect(statements[1].values).toEqual(["0.8"]);
	expect(statements[2].values).toEqual([PATIENT.id, 10, NAME_SIMILARITY_FLOOR, 0.5, 0.2, 0.15, 0.15, MIN_DUPLICATE_SCORE]);
	expect(db.transactions.at(-1)).toBe("committed");
});

test("each reason the row reports becomes one, with its weight; a name below the floor is none", async () => {
	const typo = duplicateRow({ nameSimilarity: 0.4615, nameWeight: 0.231, sameDateOfBirth: true, score: 0.431 });
	const household = duplicateRow({ nameSimilarity: 0.12, nameWeight: 0, sameDateOfBirth: true, samePhone: true, sameEmail: true, score: 0.5 });
	candidates = [household, typo];
	const { candidates: found } = await search({ id: PATIENT.id, limit: "2" });
	expect(db.statements.at(-1)!.values[1]).toBe(2);
	expect(found).toEqual([
		{
			patient: expect.objectContaining({ id: household.id, createdAt: household.createdAt.toISOString() }),
			score: 0.5,
			reasons: [
				{ kind: "dateOfBirth", weight: 0.2 },
				{ kind: "phone", weight: 0.15 },
				{ kind: "email", weight: 0.15 }
			]
		},
		{
			patient: expect.objectContaining({ id: typo.id, name: typo.name }),
			score: 0.431,
			reasons: [
				{ kind: "name", similarity: 0.462, weight: 0.231 },
				{ kind: "dateOfBirth", weight: 0.2 }
			]
		}
	]);
	// The API's patient: no search columns.
	expect(Object.keys(found[0].patient)).not.toContain("nameSimilarity");
});

test("an unknown patient is 404 and nothing is searched; a limit out of bounds is refused before any statement", async () => {
	const sent = db.statements.length;
	expect(await failure(search({ id: crypto.randomUUID() }))).toMatchObject({ code: 404 });
	// Only the lookups of the patient (live, else merged); no search.
	expect(db.statements.slice(sent).map(s => s.text)).toEqual([patientById("").text, mergedPatientById("").text]);
	const refused = db.statements.length;
	for (const limit of [0, 51, 2.5, "ten"]) expect(await refusedFields(search({ id: PATIENT.id, limit }))).toEqual(["limit"]);
	expect(await refusedFields(search({ id: PATIENT.id, minScore: 0 }))).toEqual(["minScore"]);
	expect(db.statements).toHaveLength(refused);
});
