import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { Admin, Consumer, type Message, Producer } from "@platformatic/kafka";
import type { Context, Service, ServiceSchema, ServiceSettingSchema } from "moleculer";
import { config } from "../lib/infra/config";
import { isDatabaseUnavailable } from "../lib/infra/db-errors";
import { OrderedWork } from "../lib/infra/ordered-work";
import { activeTracer, inSpan } from "../lib/infra/tracing";
import { registerHealthCheck } from "./health.mixin";
import type { MixinSchema } from "../types/mixin";

/** A message as a handler sees it, whether it came from Kafka or over the service broker. */
export interface KafkaMessage {
	topic: string;
	key: string | null;
	value: Buffer;
	headers: Record<string, string>;
	partition?: number;
	offset?: string;
}

export interface OutgoingMessage {
	topic: string;
	key: string;
	value: Buffer;
	headers?: Record<string, string>;
}

/** One consumer, declared in a service's schema under `kafka.consumers`. */
export interface KafkaConsumerDefinition<TService = Service, T = unknown> {
	/** Resolved at start, so configuration decides (e.g. `() => config.patientTopic`). */
	topic: () => string;
	/** Turns the value into the payload; a message that fails here is poison and goes to the dead-letter topic at once. */
	decode(value: Buffer): T;
	/** Handles one payload. A throw is retried with backoff; after KAFKA_MAX_ATTEMPTS the message is dead-lettered. */
	handler(this: TService, payload: T, message: KafkaMessage): Promise<void>;
}

/** What a service declares under `kafka` in its schema. */
export interface KafkaSchema {
	// Each consumer has its own payload type; the mixin only passes payloads from decode to handler.
	// eslint-disable-next-line @typescript-eslint/no-explicit-any
	consumers?: KafkaConsumerDefinition<any, any>[];
	/** Topics this service produces to, created at start if missing. */
	produces?: (() => string)[];
}

interface KafkaVars {
	kafkaProducer?: Producer<Buffer, Buffer, string, string>;
	kafkaConsumers: Consumer<Buffer, Buffer, Buffer, Buffer>[];
	/** The topic each running consumer reads, for the lag an operator asks for. */
	kafkaConsumerTopics: Map<Consumer<Buffer, Buffer, Buffer, Buffer>, string>;
	kafkaLoop?: Promise<void>;
	kafkaWork?: OrderedWork<Message<Buffer, Buffer, Buffer, Buffer>>;
	kafkaStopping: boolean;
	kafkaCommitting?: Promise<void>;
}

/** One consumer's lag as the `kafkaLag` action reports it: messages behind the end, by partition. */
export interface ConsumerLag {
	group: string;
	topic: string;
	/** By partition number; null for a partition this node's consumer is not assigned. */
	partitions?: Record<string, number | null>;
	total?: number;
	/** Why the lag could not be read (the consumer has not joined its group yet, the broker is away). */
	error?: string;
}

/** The methods KafkaMixin adds to a service (a producer calls `kafkaSend`). */
export interface KafkaMethods {
	kafkaSend(messages: OutgoingMessage[]): Promise<void>;
	kafkaDeliver(definition: KafkaConsumerDefinition, message: KafkaMessage): Promise<void>;
	kafkaHandle(definition: KafkaConsumerDefinition, message: KafkaMessage): Promise<void>;
	kafkaDeadLetter(message: KafkaMessage, failure: unknown): Promise<void>;
	kafkaConsume(definition: KafkaConsumerDefinition): Promise<void>;
	kafkaReportLag(consumer: Consumer<Buffer, Buffer, Buffer, Buffer>, topic: string): Promise<void>;
}

type KafkaThis = Service & KafkaVars & KafkaMethods & { schema: { kafka?: KafkaSchema } };

/** The service broker event that carries outbox messages when no Kafka is configured. */
export const FALLBACK_EVENT = "outbox.message";

const RECONNECT_MAX_MS = 10_000;
const LAG_REPORT_MS = 15_000;

export const dlqTopic = (topic: string) => `${topic}.dlt`;
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/** Leaves the group and closes, ending its message stream; errors on the way out do not matter. */
function closeConsumer(consumer: Consumer<Buffer, Buffer, Buffer, Buffer>): Promise<void> {
	return new Promise(resolve => consumer.close(true, () => resolve()));
}

function stringHeaders(headers: Map<Buffer, Buffer>): Record<string, string> {
	return Object.fromEntries([...headers].map(([k, v]) => [k.toString(), v.toString()]));
}

/**
 * Kafka for a Moleculer service, on @platformatic/kafka. The service declares
 * what it consumes and produces in its schema (`kafka: { consumers, produces }`);
 * the mixin creates missing topics, connects on start, and on stop lets the
 * message in hand finish before it disconnects.
 *
 * Consumer groups are named after the service. Messages of different keys are
 * handled side by side (KAFKA_CONCURRENCY), one key's in order; an offset is
 * committed only once its handler, and every earlier one of its partition, has
 * succeeded. A failing handler is retried with backoff, and after
 * KAFKA_MAX_ATTEMPTS the message goes to `<topic>.dlt` and the consumer moves on.
 *
 * Without KAFKA_BROKERS, messages travel over the service broker instead
 * (`outbox.message`, one delivery per consuming service) to the same handlers.
 */
export function KafkaMixin(): MixinSchema {
	const schema: ServiceSchema<ServiceSettingSchema, KafkaMethods, KafkaVars> = {
		name: "kafka",

		actions: {
			/** The lag of this node's consumers, by group, topic and partition. For operators (the REPL's `kafka-lag`); not routed. */
			kafkaLag: {
				visibility: "public",
				handler(this: KafkaThis): Promise<ConsumerLag[]> {
					const group = config.kafkaGroupPrefix + this.name;
					return Promise.all(
						[...this.kafkaConsumerTopics].map(async ([consumer, topic]) => {
							try {
								const lag = (await consumer.getLag({ topics: [topic] })).get(topic) ?? [];
								const partitions = Object.fromEntries(lag.map((n, partition) => [partition, n < 0n ? null : Number(n)]));
								return { group, topic, partitions, total: lag.reduce((sum, n) => sum + (n < 0n ? 0 : Number(n)), 0) };
							} catch (err) {
								return { group, topic, error: (err as Error).message };
							}
						})
					);
				}
			}
		},

		events: {
			async [FALLBACK_EVENT](this: KafkaThis, ctx: Context<{ topic: string; key: string | null; value: string; headers: Record<string, string> }>) {
				if (config.kafkaBrokers) return;
				const definition = this.schema.kafka?.consumers?.find(c => c.topic() === ctx.params.topic);
				if (!definition) return;
				const message = { ...ctx.params, value: Buffer.from(ctx.params.value, "base64") };
				await this.kafkaDeliver(definition as KafkaConsumerDefinition, message);
			}
		},

		methods: {
			/** Produces in order and waits for the broker's acknowledgement (all in-sync replicas). */
			async kafkaSend(this: KafkaThis, messages: OutgoingMessage[]): Promise<void> {
				if (!config.kafkaBrokers) {
					for (const m of messages) {
						await this.broker.emit(FALLBACK_EVENT, { topic: m.topic, key: m.key, value: m.value.toString("base64"), headers: m.headers ?? {} });
					}
					return;
				}
				if (!this.kafkaProducer) throw new Error("The Kafka producer is not running");
				await this.kafkaProducer.send({
					messages: messages.map(m => ({ topic: m.topic, key: Buffer.from(m.key), value: m.value, headers: m.headers ?? {} }))
				});
			},

			/**
			 * Decode, then handle with retries; what cannot be handled goes to the dead-letter topic. With tracing on,
			 * all of it is a consumer span continuing the trace in the message's headers (the producer's span).
			 */
			kafkaDeliver(this: KafkaThis, definition: KafkaConsumerDefinition, message: KafkaMessage): Promise<void> {
				if (!activeTracer()) return this.kafkaHandle(definition, message);
				const attributes = {
					"messaging.system": config.kafkaBrokers ? "kafka" : "moleculer",
					"messaging.operation.type": "process",
					"messaging.destination.name": message.topic,
					"messaging.consumer.group.name": config.kafkaGroupPrefix + this.name,
					...(message.partition === undefined ? {} : { "messaging.destination.partition.id": String(message.partition) }),
					...(message.offset === undefined ? {} : { "messaging.kafka.offset": Number(message.offset) })
				};
				return inSpan(`process ${message.topic}`, { kind: SpanKind.CONSUMER, carrier: () => message.headers, attributes }, () =>
					this.kafkaHandle(definition, message)
				);
			},

			async kafkaHandle(this: KafkaThis, definition: KafkaConsumerDefinition, message: KafkaMessage): Promise<void> {
				let payload: unknown;
				try {
					payload = definition.decode(message.value);
				} catch (err) {
					return this.kafkaDeadLetter(message, err);
				}
				let failures = 0;
				for (let attempt = 1; ; attempt++) {
					try {
						return await definition.handler.call(this, payload, message);
					} catch (err) {
						// Unhandled, so uncommitted: the message comes again after the restart (handlers skip a repeat).
						if (this.kafkaStopping) throw err;
						// A database out of reach is no fault of the message: it waits for the database, using up none of
						// its attempts, instead of being dead-lettered during an outage.
						if (!isDatabaseUnavailable(err) && ++failures >= config.kafkaMaxAttempts) return this.kafkaDeadLetter(message, err);
						await sleep(Math.min(5000, 100 * 2 ** (attempt - 1)));
					}
				}
			},

			async kafkaDeadLetter(this: KafkaThis, message: KafkaMessage, failure: unknown): Promise<void> {
				const reason = failure instanceof Error ? failure.message : String(failure);
				this.logger.error(`Giving up on a ${message.topic} message (${reason}); dead-lettering it`);
				trace.getActiveSpan()?.setStatus({ code: SpanStatusCode.ERROR, message: "dead-lettered" });
				if (!this.kafkaProducer) return;
				await this.kafkaProducer.send({
					messages: [
						{
							topic: dlqTopic(message.topic),
							key: message.key === null ? undefined : Buffer.from(message.key),
							value: message.value,
							headers: {
								...message.headers,
								"x-error": reason.slice(0, 500),
								"x-consumer-group": config.kafkaGroupPrefix + this.name,
								"x-original-partition": String(message.partition ?? ""),
								"x-original-offset": String(message.offset ?? "")
							}
						}
					]
				});
			},

			/** Consumer lag (messages behind the end of each partition) as the medsync.kafka.consumer.lag gauge. */
			async kafkaReportLag(this: KafkaThis, consumer: Consumer<Buffer, Buffer, Buffer, Buffer>, topic: string): Promise<void> {
				try {
					const lag = await consumer.getLag({ topics: [topic] });
					const total = [...lag.values()].flat().reduce((sum, n) => sum + Math.max(0, Number(n)), 0);
					this.broker.metrics.set("medsync.kafka.consumer.lag", total, { group: config.kafkaGroupPrefix + this.name, topic });
				} catch (err) {
					this.logger.debug(`Cannot read consumer lag: ${(err as Error).message}`);
				}
			},

			/** One consumer's life: join the group, handle messages one at a time, commit each; reconnect with backoff on failure. */
			async kafkaConsume(this: KafkaThis, definition: KafkaConsumerDefinition): Promise<void> {
				const topic = definition.topic();
				for (let backoff = 500; !this.kafkaStopping; backoff = Math.min(RECONNECT_MAX_MS, backoff * 2)) {
					const consumer = new Consumer({
						groupId: config.kafkaGroupPrefix + this.name,
						clientId: `${this.name}-${this.broker.nodeID}`,
						bootstrapBrokers: config.kafkaBrokers!,
						sessionTimeout: 10_000,
						heartbeatInterval: 1000
					});
					this.kafkaConsumers.push(consumer);
					this.kafkaConsumerTopics.set(consumer, topic);
					let lagTimer: NodeJS.Timeout | undefined;
					try {
						const stream = await consumer.consume({ topics: [topic], mode: "committed", fallbackMode: "earliest", autocommit: false });
						backoff = 500;
						lagTimer = setInterval(() => this.kafkaReportLag(consumer, topic), LAG_REPORT_MS);
						lagTimer.unref();
						// Messages of different keys are handled side by side, each key's in order; an offset is
						// committed once every message before it in its partition has been handled.
						const work = new OrderedWork<Message<Buffer, Buffer, Buffer, Buffer>>(config.kafkaConcurrency, (_partition, raw) => {
							this.kafkaCommitting = Promise.resolve(raw.commit()).catch(err => this.logger.warn(`Offset commit failed: ${(err as Error).message}`));
						});
						this.kafkaWork = work;
						for await (const raw of stream as AsyncIterable<Message<Buffer, Buffer, Buffer, Buffer>>) {
							const message: KafkaMessage = {
								topic: raw.topic,
								key: raw.key?.length ? raw.key.toString() : null,
								value: raw.value,
								headers: stringHeaders(raw.headers),
								partition: raw.partition,
								offset: String(raw.offset)
							};
							const key = message.key ?? `${raw.partition}:${raw.offset}`;
							await work.add(raw.partition, key, raw, () => this.kafkaDeliver(definition, message));
							if (this.kafkaStopping) break;
						}
						await work.drain();
					} catch (err) {
						if (!this.kafkaStopping) this.logger.warn(`Kafka consumer of ${topic} failed (${(err as Error).message}; KAFKA_BROKERS=${brokersSetting()}); reconnecting in ${backoff} ms`);
					} finally {
						clearInterval(lagTimer);
						await closeConsumer(consumer);
						this.kafkaConsumers = this.kafkaConsumers.filter(c => c !== consumer);
						this.kafkaConsumerTopics.delete(consumer);
					}
					if (!this.kafkaStopping) await sleep(backoff);
				}
			}
		},

		created(this: KafkaThis) {
			this.broker.metrics.register({ type: "gauge", name: "medsync.kafka.consumer.lag", labelNames: ["group", "topic"], description: "Messages the consumer group has yet to read" });
			if (config.kafkaBrokers) {
				registerHealthCheck(this, "kafka", async () => {
					if (!this.kafkaProducer) throw new Error("not started");
					await this.kafkaProducer.metadata({ topics: [] });
				});
			}
			this.kafkaConsumers = [];
			this.kafkaConsumerTopics = new Map();
			this.kafkaStopping = false;
		},

		async started(this: KafkaThis) {
			const declared = this.schema.kafka ?? {};
			const consumers = (declared.consumers ?? []) as KafkaConsumerDefinition[];
			if (!config.kafkaBrokers) {
				// Said once, by the producing side; consumers simply receive the broker event.
				if (declared.produces?.length) {
					this.logger.info(`KAFKA_BROKERS is unset: events go over the service broker ('${FALLBACK_EVENT}') instead of Kafka`);
				}
				return;
			}
			const topics = [...(declared.produces ?? []).map(t => t()), ...consumers.flatMap(c => [c.topic(), dlqTopic(c.topic())])];
			this.kafkaProducer = new Producer({
				clientId: `${this.name}-${this.broker.nodeID}`,
				bootstrapBrokers: config.kafkaBrokers,
				idempotent: true,
				// Fail fast while the broker is away: the outbox keeps the events and the relay retries.
				timeout: 5000,
				retries: 2,
				serializers: {
					key: (key?: Buffer) => key,
					value: (value?: Buffer) => value,
					headerKey: (key?: string) => (key === undefined ? undefined : Buffer.from(key)),
					headerValue: (value?: string) => (value === undefined ? undefined : Buffer.from(value))
				}
			});
			// In the background: a broker that is down delays consuming, never the service's start.
			this.kafkaLoop = ensureTopics(topics, this.logger, () => this.kafkaStopping).then(() => Promise.all(consumers.map(c => this.kafkaConsume(c))).then(() => {}));
		},

		async stopped(this: KafkaThis) {
			this.kafkaStopping = true;
			// Drain: the messages in hand finish (and commit) before the consumers leave their group.
			await this.kafkaWork?.drain();
			await this.kafkaCommitting;
			await Promise.all(this.kafkaConsumers.map(closeConsumer));
			await this.kafkaLoop;
			await this.kafkaProducer?.close().catch(() => {});
			this.kafkaProducer = undefined;
		}
	};
	return schema;
}

/** Where the node looks for Kafka, for a warning to name when it does not answer. */
const brokersSetting = () => config.kafkaBrokers?.join(",") ?? "";

/** Creates the topics that do not exist yet, with KAFKA_PARTITIONS partitions; retries while the broker is away. */
async function ensureTopics(topics: string[], logger: Service["logger"], stopping: () => boolean): Promise<void> {
	for (let backoff = 500; !stopping(); backoff = Math.min(RECONNECT_MAX_MS, backoff * 2)) {
		const admin = new Admin({ clientId: "medsync-admin", bootstrapBrokers: config.kafkaBrokers! });
		try {
			const existing = new Set(await admin.listTopics());
			const missing = [...new Set(topics)].filter(t => !existing.has(t));
			if (missing.length) {
				await admin.createTopics({ topics: missing, partitions: config.kafkaPartitions, replicas: config.kafkaReplicationFactor });
				logger.info(`Created Kafka topics ${missing.join(", ")}`);
			}
			return;
		} catch (err) {
			// Another node created one of them first: look again.
			logger.warn(`Cannot ensure Kafka topics (${(err as Error).message}; KAFKA_BROKERS=${brokersSetting()}); retrying in ${backoff} ms`);
			await sleep(backoff);
		} finally {
			await admin.close().catch(() => {});
		}
	}
}
