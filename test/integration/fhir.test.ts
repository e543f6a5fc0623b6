import type { ServiceSchema } from "moleculer";
import AppointmentsService from "../../services/appointments.service";
import BillingService from "../../services/billing.service";
import DoctorsService from "../../services/doctors.service";
import FhirService from "../../services/fhir.service";
import PatientsService from "../../services/patients.service";
import { type TestCluster, adminLogin, bearer, request, startCluster } from "../helpers/cluster";
import { fhirPatientBody } from "../helpers/fixtures";

let cluster: TestCluster;
let adminToken: string;

const FHIR = { "content-type": "application/fhir+json", accept: "application/fhir+json" };
const fhir = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}, token = adminToken) =>
	request(cluster.baseUrl, method, `/fhir${path}`, body, { ...FHIR, ...bearer(token), ...headers });

beforeAll(async () => {
	cluster = await startCluster([PatientsService, BillingService, DoctorsService, AppointmentsService, FhirService] as ServiceSchema[]);
	adminToken = await adminLogin(cluster.baseUrl);
});

afterAll(() => cluster?.stop());

test("smoke", async () => {
	const meta = await fhir("GET", "/metadata");
	expect(meta.status).toBe(200);
	expect(meta.headers.get("content-type")).toContain("application/fhir+json");
	const created = await fhir("POST", "/Patient", fhirPatientBody());
	console.log(created.status, created.headers.get("location"), JSON.stringify(created.body));
	const read = await fhir("GET", `/Patient/${created.body.id}`);
	console.log(read.status, JSON.stringify(read.body));
	const search = await fhir("GET", `/Patient?name=test&_count=2`);
	console.log(search.status, JSON.stringify(search.body).slice(0, 1500));
	console.log(JSON.stringify((await fhir("GET", "/Patient/nope")).body), JSON.stringify((await fhir("GET", "/Nope")).body), (await fhir("GET", "/metadata?_format=xml")).status);
});
