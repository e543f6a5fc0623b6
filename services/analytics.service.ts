import { type Static, Type } from "@sinclair/typebox";
import { type Context, type Service, type ServiceSchema, type ServiceSettingSchema } from "moleculer";
import { type DbVars, DbMixin } from "../mixins/db.mixin";
import { KafkaMixin, type KafkaConsumerDefinition } from "../mixins/kafka.mixin";
import { analyticsMigrations } from "../migrations/analytics";
import { config } from "../lib/infra/config";
import { todayIn } from "../lib/domain/dates";
import { dayCount, datesBetween } from "../lib/domain/zoned-time";
import { invalidFields } from "../lib/infra/errors";
import { decodePatientEvent } from "../lib/domain/patient-events";
import { ANALYTICS_READERS } from "../lib/domain/roles";
import { dateOnly } from "../lib/domain/validation";
import { DateOnly } from "../lib/domain/schemas";
import type { PatientEvent } from "../proto/generated/patient_event";
import { type RegistrationDay, countMerge, countRegistration, mergesBetween, registrationsBetween } from "./analytics/queries";

type AnalyticsThis = Service<ServiceSettingSchema> & DbVars;

const MAX_RANGE_DAYS = 366;
const DAY_MS = 86_400_000;

const Count = Type.Integer({ minimum: 0 });

/** Registrations and merges per day, and their sums: counts only, nothing personal. */
const RegistrationsSchema = Type.Object({
	from: DateOnly,
	to: DateOnly,
	days: Type.Array(Type.Object({ date: DateOnly, count: Count, merged: Count })),
	total: Count,
	merged: Count
});

function addDays(date: string, days: number): string {
	return new Date(Date.parse(`${date}T00:00:00Z`) + days * DAY_MS).toISOString().slice(0, 10);
}

/** Counts patient registrations and merges per day (in the clinic's timezone) from PATIENT_CREATED and PATIENT_MERGED events. */
const AnalyticsService: ServiceSchema<ServiceSettingSchema, Record<string, never>, DbVars> = {
	name: "analytics",

	// The last mixin starts first and stops last (DbMixin): no event is handled before the database is open.
	mixins: [KafkaMixin(), DbMixin("analytics", analyticsMigrations)],

	kafka: {
		consumers: [
			{
				topic: () => config.patientTopic,
				decode: decodePatientEvent,
				async handler(this: AnalyticsThis, event: PatientEvent) {
					const day = todayIn(config.clinicTimezone, new Date(event.occurredAt));
					if (event.eventType === "PATIENT_CREATED") await this.db.query(countRegistration(event.eventId, day));
					if (event.eventType === "PATIENT_MERGED") await this.db.query(countMerge(event.eventId, day));
				}
			} satisfies KafkaConsumerDefinition<AnalyticsThis, PatientEvent>
		]
	},

	settings: {
		rest: "/analytics"
	},

	actions: {
		registrations: {
			roles: ANALYTICS_READERS,
			rest: "GET /registrations",
			params: { $$strict: true, from: dateOnly({ optional: true }), to: dateOnly({ optional: true }) },
			responses: { 200: { description: "Registrations and merges per day, from and to included (the last 30 days by default).", schema: RegistrationsSchema } },
			async handler(this: AnalyticsThis, ctx: Context<{ from?: string; to?: string }>): Promise<Static<typeof RegistrationsSchema>> {
				const to = ctx.params.to ?? todayIn(config.clinicTimezone);
				const from = ctx.params.from ?? addDays(to, -29);
				const dayTotal = dayCount(from, to);
				if (dayTotal < 1 || dayTotal > MAX_RANGE_DAYS) {
					throw invalidFields([{ field: "from", message: `The range from 'from' to 'to' must run forwards and span at most ${MAX_RANGE_DAYS} days.` }]);
				}
				const [registered, merged] = await Promise.all([
					this.db.query<RegistrationDay>(registrationsBetween(from, to)),
					this.db.query<RegistrationDay>(mergesBetween(from, to))
				]);
				const counts = new Map(registered.map(r => [r.day, r.count]));
				const merges = new Map(merged.map(r => [r.day, r.count]));
				const days = datesBetween(from, to).map(date => ({ date, count: counts.get(date) ?? 0, merged: merges.get(date) ?? 0 }));
				return { from, to, days, total: days.reduce((sum, d) => sum + d.count, 0), merged: days.reduce((sum, d) => sum + d.merged, 0) };
			}
		}
	}
};

export default AnalyticsService;
