import { ServiceBroker, type ServiceSchema } from "moleculer";
import { Client } from "pg";
import { config } from "../../lib/infra/config";
import { type KafkaConsumerDefinition, type KafkaMessage, KafkaMixin } from "../../mixins/kafka.mixin";
import { freePort } from "../helpers/node-process";

/**
 * How a consumer treats a message its handler fails on: a fault of the message
 * uses up its attempts and is dead-lettered; a database out of reach does not,
 * and the message waits for it. The handler stands in for a service's; the
 * database error is pg's own, from connecting to a closed port.
 */

const broker = new ServiceBroker({ logger: false });
const service = broker.createService({ name: "consumer", mixins: [KafkaMixin()] } as ServiceSchema) as unknown as {
	kafkaDeliver(definition: KafkaConsumerDefinition, message: KafkaMessage): Promise<void>;
	kafkaDeadLetter(message: KafkaMessage, failure: unknown): Promise<void>;
};
const message: KafkaMessage = { topic: "patient", key: "k", value: Buffer.from("{}"), headers: {} };
let databaseDown: unknown;

beforeAll(async () => {
	databaseDown = await new Client({ host: "127.0.0.1", port: await freePort(), connectionTimeoutMillis: 300 }).connect().catch((err: unknown) => err);
	expect(databaseDown).toMatchObject({ code: "ECONNREFUSED" });
});

/** A handler that throws `error` the first `times` calls, then succeeds; and the dead letters it caused. */
function failing(error: unknown, times: number) {
	const calls = { handled: 0, deadLettered: 0 };
	service.kafkaDeadLetter = async () => {
		calls.deadLettered += 1;
	};
	const definition: KafkaConsumerDefinition = {
		topic: () => "patient",
		decode: value => value,
		async handler() {
			calls.handled += 1;
			if (calls.handled <= times) throw error;
		}
	};
	return { calls, deliver: () => service.kafkaDeliver(definition, message) };
}

test("a failing message is dead-lettered after KAFKA_MAX_ATTEMPTS", async () => {
	const { calls, deliver } = failing(new Error("no such patient"), Infinity);
	await deliver();
	expect(calls).toEqual({ handled: config.kafkaMaxAttempts, deadLettered: 1 });
}, 20_000);

test("a database out of reach uses up no attempt: the message is handled once the database answers", async () => {
	const { calls, deliver } = failing(databaseDown, config.kafkaMaxAttempts);
	await deliver();
	expect(calls).toEqual({ handled: config.kafkaMaxAttempts + 1, deadLettered: 0 });
}, 20_000);
