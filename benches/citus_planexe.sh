#!/usr/bin/env bash
# The planexe queue on one PostgreSQL server and on the 3-node Citus test cluster of this
# machine (BENCHMARKS.md, "Citus: planexe"). pgbench runs the library's claim statement
# (`plans::claim_next`, its four steps: pick, claim, worker heartbeat, event) followed by a
# finish, one transaction per claimed plan. Usage: bash benches/citus_planexe.sh
#
# Sides:
#   plain       one server, the queue as planexe has it
#   citus-local the Citus coordinator, planexe as local tables beside the distributed shop
#   citus-user  the only queue Citus can distribute: plans keyed (user_id, id) and spread by
#               user over 32 shards; the global claim is refused there (tests/citus/planexe.rs),
#               so each claim names a user (16 users, picked at random): the routed claim
#   plain-user  that per-user claim on one server, for the routing cost alone
# Env: BENCH_SECS (10), BENCH_CLIENTS (4), BENCH_PLANS (pending plans per side, 400000: a
# user whose plans run out ends the run; 16 users share them).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECS:-10}
clients=${BENCH_CLIENTS:-4}
plans=${BENCH_PLANS:-400000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

plain_url=$(cargo run -q -p shared-db-embedded -- url "bench_planexe_plain_$$")
citus_url=$(cargo run -q -p shared-db-embedded -- citus url "bench_planexe_citus_$$")
cargo build -q -p shared-db-cli

for url in "$plain_url" "$citus_url"; do
  DATABASE_URL=$url sqlx migrate run >/dev/null
done
DATABASE_URL=$citus_url target/debug/shared-db shop distribute >/dev/null

queue() { # url: the pending queue, and its per-user twin (distributed on Citus when $2 = citus)
  psql -q -v ON_ERROR_STOP=1 "$1" <<SQL
INSERT INTO plans (id, timestamp_created, state, prompt, stop_requested, user_id)
SELECT gen_random_uuid(), now() - make_interval(secs => g), 'pending', 'bench', false,
       'user-' || (g % 16)
FROM generate_series(1, $plans) g;
CREATE TABLE plans_by_user (LIKE plans INCLUDING DEFAULTS);
ALTER TABLE plans_by_user ALTER COLUMN user_id SET NOT NULL, ADD PRIMARY KEY (user_id, id);
CREATE INDEX ON plans_by_user (user_id, timestamp_created) WHERE state = 'pending';
$( [ "$2" = citus ] && echo "SELECT create_distributed_table('plans_by_user', 'user_id');" )
INSERT INTO plans_by_user (id, timestamp_created, state, prompt, stop_requested, user_id)
SELECT id, timestamp_created, state, prompt, stop_requested, user_id FROM plans;
ANALYZE;
SQL
}
queue "$plain_url" plain
queue "$citus_url" citus

# The claim of plans::claim_next, then the finish (state completed) of the plan claimed.
# The run token is a bind parameter in the library (a uuid made by the client): here one made
# from a random number, since Citus refuses a volatile gen_random_uuid() in a distributed UPDATE.
cat > "$work/global.sql" <<'SQL'
\set token random(1, 9223372036854775807)
WITH next AS (
    SELECT id, timestamp_created AS queued_at FROM plans
    WHERE state = 'pending' AND stop_requested IS NOT TRUE
    ORDER BY timestamp_created LIMIT 1
    FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE plans p
       SET state = 'processing', progress_message = 'Picked up by server',
           progress_percentage = 0.0, run_attempt = lpad(to_hex(:token::bigint), 32, '0')::uuid,
           last_progress_at = now() AT TIME ZONE 'utc'
    FROM next WHERE p.id = next.id
    RETURNING p.id, p.user_id, next.queued_at),
beat AS (
    INSERT INTO workers (id, started_at, last_heartbeat_at, current_task_id)
    SELECT 'bench-' || :client_id::text, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', claimed.id::text
    FROM claimed
    ON CONFLICT (id) DO UPDATE
       SET last_heartbeat_at = EXCLUDED.last_heartbeat_at,
           current_task_id = EXCLUDED.current_task_id),
event AS (
    INSERT INTO events ("timestamp", event_type, message, context)
    SELECT now() AT TIME ZONE 'utc', 'TASK_PROCESSING', 'Pending -> Processing',
           json_build_object('task_id', claimed.id::text, 'user_id', claimed.user_id)
    FROM claimed)
SELECT id FROM claimed \gset
UPDATE plans SET state = 'completed', progress_percentage = 100.0 WHERE id = :id;
SQL

# The routed claim: the same four steps on one user's oldest plan, then the finish.
cat > "$work/user.sql" <<'SQL'
\set u random(0, 15)
\set token random(1, 9223372036854775807)
WITH next AS (
    SELECT user_id, id, timestamp_created AS queued_at FROM plans_by_user
    WHERE user_id = 'user-' || :u::text AND state = 'pending' AND stop_requested IS NOT TRUE
    ORDER BY timestamp_created LIMIT 1
    FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE plans_by_user p
       SET state = 'processing', progress_message = 'Picked up by server',
           progress_percentage = 0.0, run_attempt = lpad(to_hex(:token::bigint), 32, '0')::uuid,
           last_progress_at = now() AT TIME ZONE 'utc'
    FROM next WHERE p.user_id = 'user-' || :u::text AND p.id = next.id
    RETURNING p.id, p.user_id, next.queued_at),
beat AS (
    INSERT INTO workers (id, started_at, last_heartbeat_at, current_task_id)
    SELECT 'bench-' || :client_id::text, now() AT TIME ZONE 'utc', now() AT TIME ZONE 'utc', claimed.id::text
    FROM claimed
    ON CONFLICT (id) DO UPDATE
       SET last_heartbeat_at = EXCLUDED.last_heartbeat_at,
           current_task_id = EXCLUDED.current_task_id),
event AS (
    INSERT INTO events ("timestamp", event_type, message, context)
    SELECT now() AT TIME ZONE 'utc', 'TASK_PROCESSING', 'Pending -> Processing',
           json_build_object('task_id', claimed.id::text, 'user_id', claimed.user_id)
    FROM claimed)
SELECT id FROM claimed \gset
UPDATE plans_by_user SET state = 'completed', progress_percentage = 100.0
WHERE user_id = 'user-' || :u::text AND id = :id;
SQL

run() { # label url script clients
  pgbench -n -M prepared -c "$4" -j 2 -T "$secs" -f "$work/$3.sql" "$2" 2>&1 |
    awk -v side="$1" -v c="$4" '/^tps/ {tps=$3} /latency average/ {for (i = 1; i < NF; i++) if ($i == "=") lat = $(i + 1)}
      /^pgbench: error/ {err=$0}
      END {if (err) print side " clients=" c "  " err; else printf "%-12s clients=%s  tps=%8.1f  latency=%s ms\n", side, c, tps, lat}'
}

echo "# load before: $(uptime)"
for c in "$clients" 1; do
  run plain "$plain_url" global "$c"
  run citus-local "$citus_url" global "$c"
  run plain-user "$plain_url" user "$c"
  run citus-user "$citus_url" user "$c"
done
echo "# load after: $(uptime)"
psql -q "$(cargo run -q -p shared-db-embedded -- url postgres)" -c "DROP DATABASE bench_planexe_plain_$$ WITH (FORCE)"
