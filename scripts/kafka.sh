#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft mode) for MedSync on machines without
# Docker: fetched from Maven Central with the machine's Maven, run with Java 17+,
# listening on 127.0.0.1:${KAFKA_PORT:-9092}, with its data under ${DATA_DIR:-.data}/kafka.
#
#   scripts/kafka.sh start    start it, or reuse one already running (idempotent)
#   scripts/kafka.sh stop     stop the broker this script started
#   scripts/kafka.sh status   say whether a broker answers
#
# With KAFKA_BROKERS set, `start` only checks that broker and starts nothing.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
data_dir="$(cd "$root" && mkdir -p "${DATA_DIR:-.data}" && cd "${DATA_DIR:-.data}" && pwd)"
kafka_dir="$data_dir/kafka"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
pid_file="$kafka_dir/broker.pid"

answers() { # host port
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# An open port is not yet a broker: this one must answer Kafka's ApiVersions
# request (v0, correlation id 7) with a response carrying that id.
is_kafka() { # host port
	local reply
	reply="$( (exec 3<>"/dev/tcp/$1/$2" && printf '\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x07\xff\xff' >&3 &&
		timeout 3 head -c 8 <&3 | od -An -tx1 | tr -d ' \n') 2>/dev/null)"
	[ "${reply:8:8}" = "00000007" ]
}

first_broker() {
	local broker="${KAFKA_BROKERS%%,*}"
	echo "${broker%%:*} ${broker##*:}"
}

fetch_libs() {
	if [ -f "$kafka_dir/libs/.complete" ]; then return; fi
	echo "Fetching the Kafka broker from Maven Central into $kafka_dir/libs ..."
	rm -rf "$kafka_dir/libs"
	mvn -q -B -Dstyle.color=never -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
		-DoutputDirectory="$kafka_dir/libs" -DincludeScope=runtime
	touch "$kafka_dir/libs/.complete"
}

write_config() {
	mkdir -p "$kafka_dir/logs"
	cat > "$kafka_dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$kafka_dir/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
}

java_run() { # main class and its arguments
	java -Xms256m -Xmx512m -XX:+UseG1GC \
		-Dlog4j2.configurationFile="$root/scripts/kafka/log4j2.properties" \
		-Dkafka.logs.dir="$kafka_dir/logs" \
		-cp "$kafka_dir/libs/*" "$@"
}

start() {
	if [ -n "${KAFKA_BROKERS:-}" ]; then
		read -r host p < <(first_broker)
		if is_kafka "$host" "$p"; then echo "Using the Kafka broker at $KAFKA_BROKERS"; return 0; fi
		if answers "$host" "$p"; then
			echo "KAFKA_BROKERS=$KAFKA_BROKERS: $host:$p answers, but not as a Kafka broker" >&2
		else
			echo "KAFKA_BROKERS=$KAFKA_BROKERS does not answer" >&2
		fi
		return 1
	fi
	if is_kafka 127.0.0.1 "$port"; then
		echo "A Kafka broker already answers on 127.0.0.1:$port"
		return 0
	fi
	if answers 127.0.0.1 "$port"; then
		echo "Something that is not a Kafka broker listens on 127.0.0.1:$port: stop it, or set KAFKA_PORT to a free port" >&2
		return 1
	fi
	command -v java >/dev/null || { echo "Java 17 or later is needed to run Kafka" >&2; return 1; }
	command -v mvn >/dev/null || { echo "Maven is needed to fetch Kafka" >&2; return 1; }
	mkdir -p "$kafka_dir"
	fetch_libs
	write_config
	if [ ! -f "$kafka_dir/data/meta.properties" ]; then
		java_run kafka.tools.StorageTool format --standalone \
			-t "$(java_run kafka.tools.StorageTool random-uuid)" \
			-c "$kafka_dir/server.properties" >/dev/null
	fi
	nohup bash -c "$(declare -f java_run); root='$root' kafka_dir='$kafka_dir' java_run kafka.Kafka '$kafka_dir/server.properties'" \
		> "$kafka_dir/logs/stdout.log" 2>&1 &
	echo $! > "$pid_file"
	for _ in $(seq 1 120); do
		if is_kafka 127.0.0.1 "$port"; then
			echo "Kafka broker started on 127.0.0.1:$port (data under $kafka_dir)"
			return 0
		fi
		if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
			echo "The Kafka broker exited; see $kafka_dir/logs" >&2
			tail -n 20 "$kafka_dir/logs/stdout.log" >&2 || true
			return 1
		fi
		sleep 0.5
	done
	echo "The Kafka broker did not answer within 60 s; see $kafka_dir/logs" >&2
	return 1
}

stop() {
	if [ ! -f "$pid_file" ]; then echo "No broker started by this script"; return 0; fi
	local pid
	pid="$(cat "$pid_file")"
	if kill -0 "$pid" 2>/dev/null; then
		# The wrapper's child is the JVM; stop both, and wait for a clean shutdown.
		pkill -TERM -P "$pid" 2>/dev/null || true
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 60); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.5
		done
	fi
	rm -f "$pid_file"
	echo "Kafka broker stopped"
}

case "${1:-start}" in
	start) start ;;
	stop) stop ;;
	status) if is_kafka 127.0.0.1 "$port"; then echo "running on 127.0.0.1:$port"; else echo "not running"; exit 1; fi ;;
	*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
