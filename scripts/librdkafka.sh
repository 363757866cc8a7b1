#!/usr/bin/env bash
# Puts librdkafka.so.1 into the directory $1 (KAFKA_CLIENT=librdkafka loads it through bun:ffi): the shared
# library inside PyPI's confluent-kafka wheel for this machine, self-contained (OpenSSL, SASL and the codecs
# are linked in). Debian bookworm's librdkafka1 is 2.0.2, whose SCRAM Kafka 4 brokers reject whatever the
# password (fixed in 2.6.1). Idempotent: a library already there for this version is kept.
set -euo pipefail

# The confluent-kafka release whose wheel is taken; it carries librdkafka 2.16.0.
version=2.16.1
dir=${1:?usage: scripts/librdkafka.sh DIRECTORY}
stamp="$dir/confluent-kafka-$version"
if [[ -f $dir/librdkafka.so.1 && -f $stamp ]]; then
  echo "librdkafka from confluent-kafka $version is in $dir"
  exit 0
fi

download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
# Any CPython's wheel carries the same library; pip only has to be told one to fetch a wheel, not build one.
timeout 300 python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
  --platform "manylinux_2_28_$(uname -m)" -d "$download" "confluent-kafka==$version"
mkdir -p "$dir"
python3 - "$download"/confluent_kafka-*.whl "$dir/librdkafka.so.1" <<'PY'
import re, shutil, sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    [member] = [n for n in archive.namelist() if re.fullmatch(r"confluent_kafka\.libs/librdkafka-[0-9a-f]+\.so\.1", n)]
    with archive.open(member) as source, open(target + ".part", "wb") as out:
        shutil.copyfileobj(source, out)
shutil.move(target + ".part", target)
PY
rm -f "$dir"/confluent-kafka-*
touch "$stamp"
echo "librdkafka from confluent-kafka $version in $dir"
