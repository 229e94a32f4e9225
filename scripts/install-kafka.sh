#!/usr/bin/env bash
# Installs the Apache Kafka broker that kbatch's tests, demo and benchmarks run on: the version
# pinned in scripts/kafka/pom.xml and its runtime dependencies, from Maven Central through Maven,
# into .kbatch/kafka/libs (the layout of a Kafka distribution's libs/), plus the Log4j 2 settings
# in .kbatch/kafka/config. Java 17 or newer runs it (`kbatch broker`, `kbatch demo`, the broker
# image of scripts/setup-testbench.sh).
#
# Idempotent: when .kbatch/kafka/VERSION already names the pinned version and the pom is
# unchanged, it only prints the folder (no Maven run). Installs Maven and a JDK from Debian's
# packages when they are missing (root or sudo).
#
# Overridable: KBATCH_DIR (default $REPO/.kbatch). Prints the install folder on success.
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KDIR="${KBATCH_DIR:-$REPO/.kbatch}"
DEST="$KDIR/kafka"
POM="$REPO/scripts/kafka/pom.xml"

die() { printf 'install-kafka: %s\n' "$*" >&2; exit 1; }

version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
[[ -n $version ]] || die "no <kafka.version> in $POM"
# The stamp holds the version and the pom's hash, so editing the pom (another version, another
# dependency) reinstalls, and nothing else does.
stamp="$version $(sha256sum "$POM" | cut -d' ' -f1)"
if [[ -f $DEST/VERSION && $(cat "$DEST/VERSION") == "$stamp" ]] \
  && cmp -s "$REPO/scripts/kafka/log4j2.properties" "$DEST/config/log4j2.properties"; then
  echo "$DEST"
  exit 0
fi

if ! command -v mvn >/dev/null || ! command -v java >/dev/null; then
  SUDO=()
  ((EUID == 0)) || SUDO=(sudo)
  echo "==> installing maven and a JDK (apt)" >&2
  if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven openjdk-17-jdk-headless >&2; then
    "${SUDO[@]}" apt-get update -q >&2
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q maven openjdk-17-jdk-headless >&2 \
      || die "apt-get install maven openjdk-17-jdk-headless failed"
  fi
fi
java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
((${java_major:-0} >= 17)) || die "Kafka $version needs Java 17 or newer; java on PATH is ${java_major:-unknown}"

echo "==> resolving Apache Kafka $version and its runtime dependencies (Maven Central)" >&2
stage="$DEST.partial.$$"
rm -rf "$stage"
trap 'rm -rf "$stage"' EXIT
mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
  -DoutputDirectory="$stage/libs" >&2 || die "mvn dependency:copy-dependencies failed (is Maven Central reachable?)"
ls "$stage/libs/kafka_2.13-$version.jar" >/dev/null 2>&1 || die "Maven did not fetch kafka_2.13-$version.jar"
mkdir -p "$stage/config"
cp "$REPO/scripts/kafka/log4j2.properties" "$stage/config/"
printf '%s\n' "$stamp" >"$stage/VERSION"
# Swap in whole: a reader never sees a half-filled libs/ (and an old version's jars never mix in).
rm -rf "$DEST"
mv "$stage" "$DEST"
trap - EXIT
echo "$DEST"
