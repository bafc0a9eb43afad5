#!/usr/bin/env bash
# A local single-node Apache Kafka (KRaft, broker + controller in one JVM) for the
# test suite. The jars come from Maven Central through scripts/kafka/pom.xml; the
# only tools needed are java (17+), mvn and standard Debian utilities.
#
#   scripts/kafka/kafka.sh install            fetch the jars into <work>/libs (once per pom)
#   scripts/kafka/kafka.sh start              install if needed, format once, start, wait until it serves
#   scripts/kafka/kafka.sh stop               SIGTERM, up to 30 s, then SIGKILL
#   scripts/kafka/kafka.sh status             exit 0 if running and answering clients, else 1
#   scripts/kafka/kafka.sh tool CLASS ARGS…   run a Kafka tool from the jars, e.g.
#       tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#
# Environment:
#   KAFKA_HOME_DIR            work dir (default: <repo>/.kafka) — libs, config, data, logs, pid
#   KAFKA_PORT                client port (default 9092), listener PLAINTEXT://127.0.0.1:PORT
#   KAFKA_CONTROLLER_PORT     KRaft controller port (default 9093)
#   KAFKA_START_TIMEOUT       seconds to wait for the broker to serve clients (default 90)
#   KAFKA_HEAP_OPTS           broker heap (default "-Xms256m -Xmx512m")
#   KAFKA_JAVA                java binary (default: $JAVA_HOME/bin/java if present, else java)
#   KAFKA_LIBS_DIR            the jars (default: <work>/libs), e.g. another work dir's, shared
#   KAFKA_EXTRA_LISTENERS     more client listeners, "SASL_SSL://127.0.0.1:P1,SSL://127.0.0.1:P2"
#                             (each named after its security protocol); PLAINTEXT stays for tools
#   KAFKA_EXTRA_CONFIG        a file appended to server.properties (ssl.*, sasl.*, listener.name.*)
#   KAFKA_FORMAT_ARGS         more arguments for the first storage format, split on white space,
#                             e.g. "--add-scram SCRAM-SHA-512=[name=app,password=…]"
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

WORK="${KAFKA_HOME_DIR:-$ROOT/.kafka}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
LIBS="${KAFKA_LIBS_DIR:-$WORK/libs}"
DATA="$WORK/data"
LOGS="$WORK/logs"
CONFIG="$WORK/server.properties"
LOG4J="$WORK/log4j2.properties"
TOOLS_LOG4J="$WORK/tools-log4j2.properties"
CLIENT_CONFIG="$WORK/client.properties"
PIDFILE="$WORK/kafka.pid"
CLUSTER_ID_FILE="$WORK/cluster-id"
STAMP="$LIBS/.pom.sha256"
OUT="$LOGS/kafka.out"

PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
HOST=127.0.0.1
BOOTSTRAP="$HOST:$PORT"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
EXTRA_LISTENERS="${KAFKA_EXTRA_LISTENERS:-}"
EXTRA_CONFIG="${KAFKA_EXTRA_CONFIG:-}"

if [[ -n "${KAFKA_JAVA:-}" ]]; then
  JAVA="$KAFKA_JAVA"
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA=java
fi

say() { echo "kafka: $*"; }
die() { echo "kafka: $*" >&2; exit 1; }

# ---------------------------------------------------------------- install

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (need Java 17+)"
  local line major
  line="$("$JAVA" -version 2>&1 | head -n1)"
  major="$(sed -E 's/.*version "([0-9]+)(\.[0-9]+)?.*/\1/' <<<"$line")"
  [[ "$major" == 1 ]] && major=8
  [[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] || die "Kafka 4 needs Java 17+, found: $line"
}

pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

installed() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(pom_sum)" ]]; }

install() {
  if installed; then
    say "libs up to date ($LIBS)"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found"
  local version
  version="$(sed -nE 's:.*<kafka.version>([^<]+)</kafka.version>.*:\1:p' "$POM")"
  say "fetching Kafka $version jars from Maven Central into $LIBS"
  local tmp="$LIBS.tmp"
  rm -rf "$tmp"
  # The stamp is written last: a half-done copy is never taken for a finished one.
  mkdir -p "$LOGS"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
    -DoutputDirectory="$tmp" >"$LOGS/install.log" 2>&1; then
    tail -n 40 "$LOGS/install.log" >&2
    die "mvn dependency:copy-dependencies failed (full output: $LOGS/install.log)"
  fi
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "mvn ran, but no kafka_2.13 jar in $tmp"
  pom_sum >"$tmp/.pom.sha256"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  say "installed $(find "$LIBS" -name '*.jar' | wc -l) jars ($(du -sh "$LIBS" | cut -f1))"
}

# ---------------------------------------------------------------- process

# The broker's pid: from the pid file, if that process is our broker (same work dir).
broker_pid() {
  local pid
  [[ -f "$PIDFILE" ]] || return 1
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $CONFIG" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

tool() {
  local class="$1"
  shift
  "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$LIBS/*" "$class" "$@"
}

# A real client round trip: an Admin client lists topics (Metadata request).
serves_clients() {
  port_open "$PORT" || return 1
  timeout 30 "$JAVA" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$LIBS/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
    --command-config "$CLIENT_CONFIG" --list >/dev/null 2>&1
}

write_configs() {
  mkdir -p "$DATA" "$LOGS"
  local extra="" protocols="" listener
  if [[ -n "$EXTRA_LISTENERS" ]]; then
    extra=",$EXTRA_LISTENERS"
    for listener in ${EXTRA_LISTENERS//,/ }; do
      protocols+=",${listener%%://*}:${listener%%://*}"
    done
  fi
  cat >"$CONFIG" <<EOF
# Written by scripts/kafka/kafka.sh on every start; edit the script, not this file.
# One KRaft node that is both broker and controller, for tests on a small box.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT$extra
advertised.listeners=PLAINTEXT://$HOST:$PORT$extra
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$protocols
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA

# Topics: one replica, created on first use.
auto.create.topics.enable=true
delete.topic.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Small: 2 cores, test data only.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.segment.bytes=16777216
log.retention.hours=24
log.retention.check.interval.ms=300000
EOF
  if [[ -n "$EXTRA_CONFIG" ]]; then
    [[ -r "$EXTRA_CONFIG" ]] || die "KAFKA_EXTRA_CONFIG: cannot read $EXTRA_CONFIG"
    { echo; echo "# From $EXTRA_CONFIG (KAFKA_EXTRA_CONFIG)."; cat "$EXTRA_CONFIG"; } >>"$CONFIG"
  fi
  cat >"$LOG4J" <<EOF
# Broker logging: INFO to a size-capped file, noisy loggers at WARN, nothing on a terminal.
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $LOGS/server.log
appender.file.filePattern = $LOGS/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF
  cat >"$TOOLS_LOG4J" <<EOF
# Kafka tools run by kafka.sh: warnings and errors only, to stderr.
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
EOF
  cat >"$CLIENT_CONFIG" <<EOF
# Admin client used by the health check: fail fast instead of retrying for a minute.
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

format_storage() {
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    tool kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE.tmp"
    mv "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
  fi
  if [[ -f "$DATA/meta.properties" ]]; then
    say "storage already formatted ($DATA)"
    return 0
  fi
  say "formatting storage, cluster id $(cat "$CLUSTER_ID_FILE")"
  # read -a: split on white space without expanding the [ ] of --add-scram as a glob.
  local more=()
  read -r -a more <<<"${KAFKA_FORMAT_ARGS:-}"
  tool kafka.tools.StorageTool format --ignore-formatted \
    --cluster-id="$(cat "$CLUSTER_ID_FILE")" -c "$CONFIG" "${more[@]}" >"$LOGS/format.log" 2>&1 \
    || { cat "$LOGS/format.log" >&2; die "storage format failed"; }
}

# The end of this start-up's output: kafka.out is new per start, server.log is
# appended to, so only what was written after byte $1 of it.
log_tail() {
  local from="${1:-0}"
  if [[ -s "$OUT" ]]; then
    echo "---- last lines of $OUT ----" >&2
    tail -n 40 "$OUT" >&2
  fi
  if [[ -s "$LOGS/server.log" ]]; then
    echo "---- last lines of $LOGS/server.log (this start) ----" >&2
    tail -c "+$((from + 1))" "$LOGS/server.log" | tail -n 40 >&2
  fi
}

stop_pid() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  say "no exit after 30 s, sending SIGKILL to $pid"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  die "pid $pid still alive after SIGKILL"
}

start() {
  check_java
  local pid
  if pid="$(broker_pid)"; then
    install >/dev/null
    if serves_clients; then
      say "already running (pid $pid) on $BOOTSTRAP"
      return 0
    fi
    say "pid $pid is running but not answering clients; restarting it"
    stop_pid "$pid"
  fi
  rm -f "$PIDFILE"
  install
  write_configs
  if port_open "$PORT" || port_open "$CONTROLLER_PORT"; then
    # Another checkout's broker (or any Kafka) already serving this port will do for
    # tests; anything else holding the port is an error.
    if serves_clients; then
      say "a Kafka not started from $WORK already serves $BOOTSTRAP; using it"
      return 0
    fi
    die "port $PORT or $CONTROLLER_PORT on $HOST is taken by a process not started from $WORK (see: ss -ltnp)"
  fi
  format_storage

  say "starting broker on $BOOTSTRAP (log: $LOGS/server.log)"
  local t0=$SECONDS log_from=0
  [[ -f "$LOGS/server.log" ]] && log_from="$(stat -c %s "$LOGS/server.log")"
  # A new session, so the broker outlives this shell and its terminal; setsid and
  # nohup exec in place, so $! is the java process itself. 9>&-: the broker must not
  # inherit (and so hold forever) the lock on fd 9.
  # shellcheck disable=SC2086
  setsid nohup "$JAVA" $HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J" -Dkafka.logs.dir="$LOGS" \
    -cp "$LIBS/*" kafka.Kafka "$CONFIG" >"$OUT" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$PIDFILE"

  while ((SECONDS - t0 < START_TIMEOUT)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PIDFILE"
      log_tail "$log_from"
      die "broker exited during start-up"
    fi
    if port_open "$PORT" && serves_clients; then
      say "up on $BOOTSTRAP (pid $pid, $((SECONDS - t0)) s)"
      return 0
    fi
    sleep 1
  done
  log_tail "$log_from"
  say "not serving clients after $START_TIMEOUT s; stopping pid $pid"
  stop_pid "$pid"
  rm -f "$PIDFILE"
  exit 1
}

stop() {
  local pid
  if ! pid="$(broker_pid)"; then
    rm -f "$PIDFILE"
    say "not running"
    return 0
  fi
  say "stopping pid $pid"
  stop_pid "$pid"
  rm -f "$PIDFILE"
  say "stopped"
}

status() {
  local pid
  if ! pid="$(broker_pid)"; then
    say "not running"
    return 1
  fi
  if ! installed || ! serves_clients; then
    say "pid $pid is running but not answering clients on $BOOTSTRAP"
    return 1
  fi
  say "running (pid $pid) on $BOOTSTRAP"
}

usage() {
  sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

cmd="${1:-}"
[[ $# -gt 0 ]] && shift
case "$cmd" in
  install | start | stop)
    # One at a time per work dir (two test runs starting it at once, say).
    exec 9>"$WORK/.lock"
    flock -w 180 9 || die "another kafka.sh holds $WORK/.lock"
    case "$cmd" in
      install) check_java; install ;;
      start) start ;;
      stop) stop ;;
    esac
    ;;
  status) status ;;
  tool)
    [[ $# -ge 1 ]] || die "usage: kafka.sh tool CLASS [ARGS…]"
    installed || die "not installed: run kafka.sh install"
    [[ -f "$TOOLS_LOG4J" ]] || write_configs
    tool "$@"
    ;;
  -h | --help | help) usage ;;
  *)
    usage >&2
    exit 2
    ;;
esac
