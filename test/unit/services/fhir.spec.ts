import { ServiceBroker, type ServiceSchema } from "moleculer";
import AppointmentsService from "../../../services/appointments.service";
import AuditService from "../../../services/audit.service";
import DoctorsService from "../../../services/doctors.service";
import FhirService from "../../../services/fhir.service";
import PatientsService from "../../../services/patients.service";
import { operationOutcome, withFhirPaths } from "../../../services/fhir/outcome";
import { dateRange, parseSearch, referenceId, tokenCode } from "../../../services/fhir/search";
import { declared } from "../../helpers/service-broker";

/**
 * The FHIR service's declarations against the REST actions it maps onto, and
 * its search and error rules. The integration suite (test/integration/fhir.test.ts)
 * drives the same through the gateway, on the real services.
 */

/** Each FHIR action and the REST action whose roles and audit it must carry. */
const MAPS_ONTO: Record<string, string> = {
	patientRead: "patients.get",
	patientVread: "patients.historyVersion",
	patientHistory: "patients.history",
	patientSearch: "patients.list",
	patientCreate: "patients.create",
	patientUpdate: "patients.replace",
	patientDelete: "patients.remove",
	practitionerRead: "doctors.get",
	practitionerSearch: "doctors.list",
	practitionerRoleRead: "doctors.get",
	practitionerRoleSearch: "doctors.list",
	scheduleRead: "doctors.get",
	scheduleSearch: "doctors.list",
	slotRead: "doctors.slots",
	slotSearch: "doctors.slots",
	appointmentRead: "appointments.get",
	appointmentSearch: "appointments.list",
	appointmentCreate: "appointments.book",
	// A change is a lifecycle step: the widest of them (arrive) lets it in; each step's own roles are checked as it is called.
	appointmentUpdate: "appointments.arrive",
	appointmentPatch: "appointments.arrive",
	auditEventSearch: "audit.list"
};

describe("declarations", () => {
	const broker = new ServiceBroker({ logger: false });
	for (const schema of [FhirService, PatientsService, DoctorsService, AppointmentsService, AuditService]) broker.createService(schema as ServiceSchema);

	test("every FHIR action allows the roles of the REST action it maps onto, and is audited as that one is", () => {
		const actions = Object.keys(broker.getLocalService("fhir")!.schema.actions!).filter(name => name !== "metadata");
		expect(actions.sort()).toEqual(Object.keys(MAPS_ONTO).sort());
		for (const [action, rest] of Object.entries(MAPS_ONTO)) {
			const { roles, audit } = declared(broker, rest);
			expect([action, declared(broker, `fhir.${action}`)]).toEqual([action, { roles, audit, public: undefined }]);
		}
		expect(declared(broker, "fhir.metadata")).toEqual({ public: true, roles: undefined, audit: undefined });
	});
});

describe("calls into the domain services", () => {
	const patient = { id: "00000000-0000-0000-0000-000000000001", mrn: "10000008", name: "A", email: "a@example.org", address: "x", dateOfBirth: "1990-01-01", version: 1, updatedAt: "2030-01-01T00:00:00.000Z" };
	const asRole = (role: string) => ({ meta: { user: { id: "u", email: "u@example.org", role, sessionId: "s" } } });

	test("are checked against the called action's own roles, and not made when no node serves the action", async () => {
		const broker = new ServiceBroker({ logger: false });
		broker.createService(FhirService as ServiceSchema);
		await broker.start();
		try {
			const read = (role: string) => broker.call("fhir.patientRead", { params: { id: patient.id } }, asRole(role));
			// The gateway answers this type 503 (lib/infra/client-errors.ts).
			await expect(read("ADMIN")).rejects.toMatchObject({ type: "SERVICE_NOT_AVAILABLE" });
			broker.createService({ name: "patients", actions: { get: { roles: ["ADMIN"], handler: () => patient } } });
			await broker.waitForServices(["patients"]);
			await expect(read("DOCTOR")).rejects.toMatchObject({ code: 403 });
			await expect(read("ADMIN")).resolves.toMatchObject({ resourceType: "Patient", id: patient.id, meta: { versionId: "1" } });
		} finally {
			await broker.stop();
		}
	});
});

describe("search parameters", () => {
	const definition = { params: [{ name: "date", type: "date" as const, documentation: "" }], sorts: ["date"] };

	test("date prefixes and precisions make half-open ranges; repeats narrow them", () => {
		const day = Date.UTC(2030, 0, 7);
		expect(dateRange("date", ["2030-01-07"])).toEqual({ from: day, to: day + 86_400_000 });
		expect(dateRange("date", ["eq2030"])).toEqual({ from: Date.UTC(2030, 0, 1), to: Date.UTC(2031, 0, 1) });
		expect(dateRange("date", ["ge2030-01"])).toEqual({ from: Date.UTC(2030, 0, 1) });
		expect(dateRange("date", ["gt2030-01-07"])).toEqual({ from: day + 86_400_000 });
		expect(dateRange("date", ["lt2030-01-07"])).toEqual({ to: day });
		expect(dateRange("date", ["le2030-01-07T10:30:00+01:00"])).toEqual({ to: Date.parse("2030-01-07T09:30:01Z") });
		expect(dateRange("date", ["ge2030-01-01", "lt2030-02-01", "ge2030-01-15"])).toEqual({ from: Date.UTC(2030, 0, 15), to: Date.UTC(2030, 1, 1) });
		for (const bad of ["ne2030", "sa2030", "2030-02-30", "2030-13", "20300107", "2030-01-07T25:00Z", "yesterday"]) {
			expect(() => dateRange("date", [bad])).toThrow(expect.objectContaining({ code: 400 }));
		}
	});

	test("paging, sorting and totals are bounded; unknown parameters follow the handling asked for; OR is refused", () => {
		expect(parseSearch({ _count: "5", _page: "3", _sort: "-date", _total: "none", date: "2030" }, definition, "strict")).toMatchObject({
			count: 5,
			page: 3,
			sort: { name: "date", descending: true },
			total: "none",
			values: new Map([["date", ["2030"]]])
		});
		expect(parseSearch({ other: "1", _format: "json" }, definition, "lenient").ignored).toEqual(["other"]);
		const refusals: Record<string, unknown>[] = [{ other: "1" }, { _count: "0" }, { _count: "101" }, { _page: "0" }, { _sort: "name" }, { _total: "some" }, { date: "2030,2031" }, { date: { a: "1" } }, { _count: ["1", "2"] }, { date: "" }];
		for (const query of refusals) expect(() => parseSearch(query, definition, "strict")).toThrow(expect.objectContaining({ code: 400 }));
		expect(parseSearch({ date: "a\\,b" }, definition, "strict").values.get("date")).toEqual(["a,b"]);
	});

	test("tokens and references", () => {
		expect(tokenCode("identifier", "sys|123", "sys")).toBe("123");
		expect(tokenCode("identifier", "|123", "sys")).toBe("123");
		expect(tokenCode("identifier", "123", "sys")).toBe("123");
		expect(tokenCode("identifier", "other|123", "sys")).toBeNull();
		expect(referenceId("patient", "Patient/abc", ["Patient"])).toBe("abc");
		expect(referenceId("patient", "abc", ["Patient"])).toBe("abc");
		expect(referenceId("patient", "http://host/fhir/Patient/abc", ["Patient"])).toBe("abc");
		expect(() => referenceId("patient", "Practitioner/abc", ["Patient"])).toThrow(expect.objectContaining({ code: 400 }));
		expect(() => referenceId("patient", "Patient/a b", ["Patient"])).toThrow(expect.objectContaining({ code: 400 }));
	});
});

describe("errors", () => {
	test("an OperationOutcome per status, one issue per invalid field at its FHIRPath", () => {
		expect(operationOutcome({ code: 404, message: "Patient not found" })).toEqual({
			resourceType: "OperationOutcome",
			issue: [{ severity: "error", code: "not-found", diagnostics: "Patient not found" }]
		});
		expect(operationOutcome({ code: 503, message: "Unavailable" }).issue[0]).toMatchObject({ severity: "fatal", code: "transient" });
		const invalid = withFhirPaths({ type: "VALIDATION_ERROR", data: [{ field: "dateOfBirth", message: "bad" }, { field: "other", message: "odd" }] }, "Patient", { dateOfBirth: "Patient.birthDate" });
		expect(operationOutcome({ code: 422, message: "bad odd", ...(invalid as object) }).issue).toEqual([
			{ severity: "error", code: "invariant", diagnostics: "bad", expression: ["Patient.birthDate"] },
			{ severity: "error", code: "invariant", diagnostics: "odd", expression: ["Patient"] }
		]);
	});
});
