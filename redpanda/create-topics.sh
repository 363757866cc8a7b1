#!/usr/bin/env bash
# Compose's one-shot topic-init, run in the Redpanda image (it has rpk, not Bun). Creates every topic of the plan
# that scripts/topics.ts wrote from shared/topics.ts, so the broker holds exactly the topics the code uses. Topics
# that already exist are left as they are, so `docker compose up` can run it any number of times.
# It also sets the two cluster properties the local stack sets in stack/kafka.properties, so the pipeline behaves
# the same on both: no auto-creation (a topic missing from shared/topics.ts fails loudly instead of appearing
# with the wrong partitions) and the same largest record batch.
set -euo pipefail

plan=${1:?usage: create-topics.sh PLAN_FILE}
rpk=(rpk -X "brokers=${RPK_BROKERS:?}" -X "admin.hosts=${RPK_ADMIN_HOSTS:?}")

"${rpk[@]}" cluster config set auto_create_topics_enabled false
"${rpk[@]}" cluster config set kafka_batch_max_bytes "${KAFKA_BATCH_MAX_BYTES:?}"

count=0
while read -r name partitions; do
  [[ -n $name ]] || continue
  # --if-not-exists makes a topic that exists a success; the grep covers a topic created meanwhile by someone else.
  if ! out=$("${rpk[@]}" topic create "$name" --partitions "$partitions" --if-not-exists 2>&1); then
    grep -q TOPIC_ALREADY_EXISTS <<<"$out" || { echo "$out" >&2; exit 1; }
  fi
  echo "$out" | tail -n +2
  count=$((count + 1))
done <"$plan"

((count > 0)) || { echo "topic plan $plan is empty" >&2; exit 1; }
echo "topic-init: $count topics present"
