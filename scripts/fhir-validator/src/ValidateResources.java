import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

/**
 * Validates FHIR R4 resources against the official base profiles that
 * hapi-fhir-validation-resources-r4 carries, offline: no terminology server.
 * Reads one JSON resource per line on stdin, as they come, so a test can feed
 * it while it runs; writes one line per resource on stdout, in the same order:
 * the OperationOutcome HAPI makes of its findings. One JVM for a whole batch
 * (loading the profiles is the slow part), validating on every core.
 */
public final class ValidateResources {
	public static void main(String[] args) throws Exception {
		FhirContext context = FhirContext.forR4();
		ValidationSupportChain chain = new ValidationSupportChain(
			new DefaultProfileValidationSupport(context),
			new CommonCodeSystemsTerminologyService(context),
			new InMemoryTerminologyServerValidationSupport(context),
			new SnapshotGeneratingValidationSupport(context));
		// A FhirValidator is thread-safe once built.
		FhirValidator validator = context.newValidator().registerValidatorModule(new FhirInstanceValidator(chain));
		ExecutorService workers = Executors.newFixedThreadPool(Math.max(1, Runtime.getRuntime().availableProcessors()));
		BlockingQueue<Future<String>> pending = new LinkedBlockingQueue<>();
		Future<String> end = workers.submit(() -> null);
		PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
		Thread writer = new Thread(() -> {
			try {
				for (Future<String> next = pending.take(); next != end; next = pending.take()) out.println(next.get());
			} catch (Exception e) {
				e.printStackTrace();
				System.exit(1);
			}
		});
		writer.start();
		BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
		for (String line = in.readLine(); line != null; line = in.readLine()) {
			if (line.isBlank()) continue;
			String resource = line;
			pending.put(workers.submit(() -> context.newJsonParser().encodeResourceToString(validator.validateWithResult(resource).toOperationOutcome())));
		}
		pending.put(end);
		writer.join();
		workers.shutdown();
	}
}
