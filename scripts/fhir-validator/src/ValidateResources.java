import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

/**
 * Validates FHIR R4 resources against the official base profiles that
 * hapi-fhir-validation-resources-r4 carries, offline: no terminology server.
 * Reads one JSON resource per line on stdin; writes one line per resource on
 * stdout, in the same order: the OperationOutcome HAPI makes of its findings.
 * One JVM for a whole batch: loading the profiles is the slow part.
 */
public final class ValidateResources {
	public static void main(String[] args) throws Exception {
		FhirContext context = FhirContext.forR4();
		ValidationSupportChain chain = new ValidationSupportChain(
			new DefaultProfileValidationSupport(context),
			new CommonCodeSystemsTerminologyService(context),
			new InMemoryTerminologyServerValidationSupport(context),
			new SnapshotGeneratingValidationSupport(context));
		FhirInstanceValidator module = new FhirInstanceValidator(chain);
		FhirValidator validator = context.newValidator().registerValidatorModule(module);
		PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
		BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
		String line;
		while ((line = in.readLine()) != null) {
			if (line.isBlank()) continue;
			ValidationResult result = validator.validateWithResult(line);
			out.println(context.newJsonParser().encodeResourceToString(result.toOperationOutcome()));
		}
	}
}
