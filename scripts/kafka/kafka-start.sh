#!/bin/sh
# Entry point of the local Apache Kafka image (localhost/kbatch-kafka:<version>, built by
# scripts/setup-testbench.sh from scripts/broker-image/Containerfile.kafka).
#
# Why it exists: the bench machines reach no container registry, so the official apache/kafka
# image cannot be pulled. The local image is FROM scratch (a Java runtime, busybox, the jars), and
# this script gives it the official image's interface, so that tests/common/broker.rs, compose
# files and people configure it exactly as they would apache/kafka:4.x:
#   - every KAFKA_* variable becomes a server property: prefix dropped, lower-cased, then
#     `_` -> `.`, `___` -> `-`, `__` -> `_` (KAFKA_LOG_DIRS -> log.dirs,
#     KAFKA_LISTENER_NAME_X_SASL__ENABLED__MECHANISMS style names as apache/kafka converts them).
#     Not properties: KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS, KAFKA_LOG4J_OPTS,
#     KAFKA_GC_LOG_OPTS, KAFKA_JMX_OPTS, KAFKA_JMX_PORT, KAFKA_JMX_HOSTNAME, KAFKA_VERSION,
#     KAFKA_HOME, KAFKA_LOG4J_ROOT_LOGLEVEL, KAFKA_LOG4J_LOGGERS, KAFKA_TOOLS_LOG4J_LOGLEVEL.
#   - /mnt/shared/config/server.properties, when mounted, is the base the variables add to.
#   - CLUSTER_ID (default MkU3OEVBNTcwNTJENDM2Qk, Kafka's quickstart id) formats the log dirs
#     (KAFKA_LOG_DIRS, default /tmp/kraft-combined-logs) when they hold no meta.properties yet, so
#     a restarted container keeps its data and skips the extra JVM start.
#   - arguments NAME=VALUE are exported first (as apache/kafka's `run` does); any other command
#     line is run instead of the broker (`podman run --rm -it IMAGE sh`).
# Then `exec java` (classpath: the jars of $KAFKA_HOME/libs; $KAFKA_HOME/cds/kafka.jsa, the
# image's class-data archive, when there): the JVM is PID 1, so `podman stop`'s SIGTERM runs
# Kafka's clean shutdown.
#
# Defaults, each only for a property the caller did not set (the caller always wins):
#   single-node KRaft: node.id=1, process.roles=broker,controller, listeners
#   PLAINTEXT://:9092,CONTROLLER://:9093 (or, like apache/kafka, the advertised listeners on
#   0.0.0.0 when only those are given), advertised.listeners=PLAINTEXT://localhost:9092,
#   controller.quorum.voters=<node.id>@localhost:<controller port>, replication factor 1 / min ISR 1
#   for the internal topics, group.initial.rebalance.delay.ms=0;
#   sized for a 2-core machine: 2 network, I/O and background threads, 8 partitions for the
#   offsets, transaction and share-state topics (50 each by default, slow to create);
#   JVM: KAFKA_HEAP_OPTS="-Xms256m -Xmx512m", KAFKA_JVM_PERFORMANCE_OPTS as below, Log4j 2 from
#   $KAFKA_HOME/config/log4j2.properties (KAFKA_LOG4J_ROOT_LOGLEVEL and KAFKA_LOG4J_LOGGERS
#   "logger=LEVEL,..." adjust it).
#
# Plain POSIX sh: the image's shell is busybox. Runs on a host too, e.g.
#   KAFKA_HOME=.kbatch/kafka KAFKA_LOG_DIRS=/tmp/k1 sh scripts/kafka/kafka-start.sh
set -eu

die() { echo "kafka-start: $*" >&2; exit 1; }

if [ $# -gt 0 ]; then
  case $1 in
    [A-Za-z_]*=*)
      for arg in "$@"; do
        case $arg in
          [A-Za-z_]*=*) export "${arg?}" ;;
          *) die "argument '$arg' is not NAME=VALUE (this image is configured by KAFKA_* variables)" ;;
        esac
      done
      ;;
    *)
      command -v "$1" >/dev/null 2>&1 || die "unknown command '$1': this image runs Apache Kafka, \
configured by KAFKA_* environment variables as apache/kafka is (no arguments needed)"
      exec "$@"
      ;;
  esac
fi

KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
CLUSTER_ID=${CLUSTER_ID:-MkU3OEVBNTcwNTJENDM2Qk}
[ -d "$KAFKA_HOME/libs" ] || die "no $KAFKA_HOME/libs (set KAFKA_HOME to the Kafka install)"
if [ -n "${JAVA_HOME:-}" ]; then JAVA=$JAVA_HOME/bin/java; else JAVA=java; fi
# The jars one by one, in glob (sorted) order as kafka-run-class.sh lists them: a class-data
# archive holds only for the classpath it was recorded with, and a `libs/*` wildcard's order is
# the directory's.
classpath=
for jar in "$KAFKA_HOME"/libs/*.jar; do classpath=${classpath:+$classpath:}$jar; done
# From here on, words are split (option strings, as kafka-run-class.sh splits them) but never
# globbed.
set -f

# Generated files go next to the shipped ones when that is writable (the image's own user), else
# to /tmp (another --user, a read-only mount).
CONF=$KAFKA_HOME/config
if ! { mkdir -p "$CONF" && [ -w "$CONF" ]; } 2>/dev/null; then
  CONF=${TMPDIR:-/tmp}/kafka-config
  mkdir -p "$CONF" || die "cannot create $CONF"
fi
PROPS=$CONF/server.properties
TMP=$PROPS.tmp.$$

# --- server.properties ------------------------------------------------------------------------
# Last value of property $1 in the file being built (empty when unset).
prop() {
  sed -n "s/^[[:space:]]*$(printf '%s' "$1" | sed 's/[.]/[.]/g')[[:space:]]*[=:][[:space:]]*//p" "$TMP" | tail -n 1
}
# Set: the key appears in the file (from the mounted base or a variable).
has() {
  grep -q "^[[:space:]]*$(printf '%s' "$1" | sed 's/[.]/[.]/g')[[:space:]]*[=:]" "$TMP"
}
default() { has "$1" || printf '%s=%s\n' "$1" "$2" >>"$TMP"; }

{
  echo "# Written by kafka-start.sh from KAFKA_* variables and its defaults; rewritten at each start."
  if [ -f /mnt/shared/config/server.properties ]; then
    cat /mnt/shared/config/server.properties
    echo
  fi
} >"$TMP"

# Names only: a value may span lines, so values are read from the variables themselves.
for name in $(env | sed -n 's/^\(KAFKA_[A-Za-z0-9_]*\)=.*/\1/p' | sort -u); do
  case $name in
    KAFKA_HEAP_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_OPTS | KAFKA_LOG4J_OPTS | \
      KAFKA_GC_LOG_OPTS | KAFKA_JMX_OPTS | KAFKA_JMX_PORT | KAFKA_JMX_HOSTNAME | KAFKA_VERSION | \
      KAFKA_HOME | KAFKA_LOG4J_ROOT_LOGLEVEL | KAFKA_LOG4J_LOGGERS | KAFKA_TOOLS_LOG4J_LOGLEVEL)
      continue ;;
  esac
  isset='' value=''
  eval "isset=\${$name+x} value=\${$name-}"
  [ -n "$isset" ] || continue
  key=$(printf '%s' "${name#KAFKA_}" | tr '[:upper:]' '[:lower:]' | sed -e 's/_/./g' -e 's/[.][.][.]/-/g' -e 's/[.][.]/_/g')
  printf '%s=%s\n' "$key" "$value" >>"$TMP"
done

default node.id 1
default process.roles broker,controller
roles=$(prop process.roles)
case ",$roles," in *,broker,*) broker=1 ;; *) broker= ;; esac
case ",$roles," in *,controller,*) controller=1 ;; *) controller= ;; esac
default controller.listener.names CONTROLLER
default listener.security.protocol.map \
  CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
if ! has listeners; then
  adv=$(prop advertised.listeners)
  if [ -n "$broker" ] && [ -n "$adv" ]; then
    # apache/kafka's rule: listen on the advertised ports, on every interface.
    listeners=$(printf '%s' "$adv" | sed -e 's|://[^:,]*:|://0.0.0.0:|g')
    cname=$(prop controller.listener.names | cut -d, -f1)
    if [ -n "$controller" ]; then
      case ",$listeners" in *",$cname://"*) ;; *) listeners="$listeners,$cname://0.0.0.0:9093" ;; esac
    fi
  elif [ -n "$broker" ] && [ -n "$controller" ]; then
    listeners=PLAINTEXT://:9092,CONTROLLER://:9093
  elif [ -n "$broker" ]; then
    listeners=PLAINTEXT://:9092
  else
    listeners=CONTROLLER://:9093
  fi
  printf 'listeners=%s\n' "$listeners" >>"$TMP"
fi
[ -z "$broker" ] || default advertised.listeners PLAINTEXT://localhost:9092
if [ -n "$controller" ] && ! has controller.quorum.voters && ! has controller.quorum.bootstrap.servers; then
  # This node is the whole quorum, on its own controller listener's port.
  cname=$(prop controller.listener.names | cut -d, -f1)
  cport=$(prop listeners | tr ',' '\n' | sed -n "s|^$cname://.*:\([0-9][0-9]*\)\$|\1|p" | head -n 1)
  printf 'controller.quorum.voters=%s@localhost:%s\n' "$(prop node.id)" "${cport:-9093}" >>"$TMP"
fi
has log.dir || default log.dirs /tmp/kraft-combined-logs
default offsets.topic.replication.factor 1
default offsets.topic.num.partitions 8
default transaction.state.log.replication.factor 1
default transaction.state.log.min.isr 1
default transaction.state.log.num.partitions 8
default share.coordinator.state.topic.replication.factor 1
default share.coordinator.state.topic.min.isr 1
default share.coordinator.state.topic.num.partitions 8
default group.initial.rebalance.delay.ms 0
default num.network.threads 2
default num.io.threads 2
default background.threads 2
mv "$TMP" "$PROPS"
TMP=$PROPS

# --- Log4j 2 ----------------------------------------------------------------------------------
if [ -z "${KAFKA_LOG4J_OPTS:-}" ]; then
  log4j=$KAFKA_HOME/config/log4j2.properties
  if [ -n "${KAFKA_LOG4J_ROOT_LOGLEVEL:-}${KAFKA_LOG4J_LOGGERS:-}" ]; then
    # A properties file keeps the last value of a key: append the overrides to a copy.
    run_log4j=$CONF/log4j2-run.properties
    {
      cat "$log4j"
      [ -z "${KAFKA_LOG4J_ROOT_LOGLEVEL:-}" ] || echo "rootLogger.level = $KAFKA_LOG4J_ROOT_LOGLEVEL"
      n=0
      old_ifs=$IFS
      IFS=,
      for l in ${KAFKA_LOG4J_LOGGERS:-}; do
        n=$((n + 1))
        echo "logger.env$n.name = ${l%%=*}"
        echo "logger.env$n.level = ${l#*=}"
      done
      IFS=$old_ifs
    } >"$run_log4j"
    log4j=$run_log4j
  fi
  # Log4j's own shutdown hook would stop logging while Kafka's hook is still shutting down (the
  # rest of the shutdown then logs nothing); the console appender needs no hook.
  KAFKA_LOG4J_OPTS="-Dlog4j2.configurationFile=$log4j -Dlog4j2.shutdownHookEnabled=false"
fi

# --- class-data archive -----------------------------------------------------------------------
# The image's archive of the broker's classes (recorded at build time), unless the caller handles
# CDS itself. An archive that does not match is ignored by the JVM (with a warning).
cds=
case " ${KAFKA_JVM_PERFORMANCE_OPTS:-} ${KAFKA_OPTS:-} " in
  *SharedArchiveFile* | *ArchiveClassesAtExit* | *-Xshare:*) ;;
  *) [ ! -f "$KAFKA_HOME/cds/kafka.jsa" ] || cds=-XX:SharedArchiveFile=$KAFKA_HOME/cds/kafka.jsa ;;
esac

# --- storage ----------------------------------------------------------------------------------
dirs="$(prop log.dirs)"
[ -n "$dirs" ] || dirs="$(prop log.dir)"
md=$(prop metadata.log.dir)
unformatted=
for d in $(printf '%s,%s' "$dirs" "$md" | tr ',' ' '); do
  [ -f "$d/meta.properties" ] || unformatted=1
done
if [ -n "$unformatted" ]; then
  # A static quorum (controller.quorum.voters) is formatted as is; a dynamic one whose only
  # controller is this node is bootstrapped with --standalone.
  standalone=
  if [ -n "$controller" ] && ! has controller.quorum.voters; then standalone=--standalone; fi
  echo "kafka-start: formatting $dirs${md:+,$md} for cluster $CLUSTER_ID"
  # A short-lived tool: a small heap and no optimising JIT start it faster.
  # shellcheck disable=SC2086
  "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 $cds $KAFKA_LOG4J_OPTS \
    -cp "$classpath" kafka.tools.StorageTool format --ignore-formatted \
    --cluster-id "$CLUSTER_ID" --config "$PROPS" $standalone \
    || die "formatting the storage failed (kafka.tools.StorageTool format, config $PROPS)"
fi

# --- JVM --------------------------------------------------------------------------------------
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
# Kafka's own defaults (G1, short pauses), with the GC and JIT thread counts of a 2-core machine.
KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
-XX:InitiatingHeapOccupancyPercent=35 -XX:ParallelGCThreads=2 -XX:ConcGCThreads=1 \
-XX:CICompilerCount=2 -Djava.awt.headless=true}
jmx=${KAFKA_JMX_OPTS:-}
if [ -n "${KAFKA_JMX_PORT:-}" ]; then
  jmx_host=${KAFKA_JMX_HOSTNAME:-$(hostname -i 2>/dev/null | cut -d' ' -f1)}
  jmx="${jmx:--Dcom.sun.management.jmxremote=true -Dcom.sun.management.jmxremote.authenticate=false \
-Dcom.sun.management.jmxremote.ssl=false} -Djava.rmi.server.hostname=${jmx_host:-127.0.0.1} \
-Dcom.sun.management.jmxremote.local.only=false -Dcom.sun.management.jmxremote.rmi.port=$KAFKA_JMX_PORT \
-Dcom.sun.management.jmxremote.port=$KAFKA_JMX_PORT"
fi

# shellcheck disable=SC2086
exec "$JAVA" $KAFKA_HEAP_OPTS $KAFKA_JVM_PERFORMANCE_OPTS $cds ${KAFKA_GC_LOG_OPTS:-} $jmx \
  $KAFKA_LOG4J_OPTS ${KAFKA_OPTS:-} -cp "$classpath" kafka.Kafka "$PROPS"
