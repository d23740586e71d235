#!/usr/bin/env bash
# Order placement, catalog page and one-row read throughput on one PostgreSQL server (the
# embedded cluster) and on the 3-node Citus test cluster on the same machine, with pgbench
# running the library's SQL text (BENCHMARKS.md, "Citus"). Usage: bash benches/citus.sh
#
# Data: 20 shops × 1,000 products (translation, 3 of the shop's 10 tags each), 10 accounts per
# shop; on Citus the shop is distributed with `shared-db shop distribute` (32 shards).
# Workloads (one script per shop, pgbench picks one per transaction):
#   order    the two statements of shop::orders::create in one transaction (counter upsert,
#            order insert), like the library
#   catalog  shop::products::catalog_page, 20 rows at a random offset below 500
#   point    one product by (shop_id, id): the routing cost of one statement
# Env: BENCH_SECS (10), BENCH_CLIENTS (4).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${BENCH_SECS:-10}
clients=${BENCH_CLIENTS:-4}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

plain_url=$(cargo run -q -p shared-db-embedded -- url "bench_citus_plain_$$")
citus_url=$(cargo run -q -p shared-db-embedded -- citus url "bench_citus_$$")
cargo build -q -p shared-db-cli

shop() { printf '00000000-0000-0000-0000-%012d' "$1"; }

seed() { # url
  DATABASE_URL=$1 sqlx migrate run >/dev/null
  psql -q -v ON_ERROR_STOP=1 "$1" <<'SQL'
INSERT INTO shop.shops (id, name)
SELECT ('00000000-0000-0000-0000-' || lpad(s::text, 12, '0'))::uuid, 'shop ' || s
FROM generate_series(1, 20) s;
SQL
}

fill() { # url (after distribution on Citus: rows go to the shards)
  psql -q -v ON_ERROR_STOP=1 "$1" <<'SQL'
SET citus.multi_shard_modify_mode = 'sequential';
INSERT INTO shop.tags (shop_id, name)
SELECT id, 'tag ' || g FROM shop.shops, generate_series(1, 10) g;
INSERT INTO shop.tag_translations (shop_id, tag_id, main_name)
SELECT shop_id, id, 'Tag ' || name FROM shop.tags;
INSERT INTO shop.products (shop_id, price, order_number)
SELECT id, 9.99, g FROM shop.shops, generate_series(1, 1000) g;
INSERT INTO shop.product_translations (shop_id, product_id, main_name, main_description,
                                       main_description_short)
SELECT shop_id, id, 'Product ' || order_number, 'A fine product', 'Fine' FROM shop.products;
INSERT INTO shop.products_to_tags (shop_id, product_id, tag_id)
SELECT p.shop_id, p.id, t.id FROM shop.products p
JOIN LATERAL (SELECT id FROM shop.tags t WHERE t.shop_id = p.shop_id
              ORDER BY hashtext(t.id::text || p.id::text) LIMIT 3) t ON true;
INSERT INTO shop.accounts (shop_id, name) SELECT id, 'customer ' || g FROM shop.shops, generate_series(1, 10) g;
ANALYZE;
SQL
}

seed "$plain_url"
fill "$plain_url"
seed "$citus_url"
DATABASE_URL=$citus_url target/debug/shared-db shop distribute
fill "$citus_url"

# One script per shop and workload; the account and product ids are looked up once here.
for s in $(seq 1 20); do
  id=$(shop "$s")
  for side in plain citus; do
    url_var="${side}_url"
    account=$(psql -Atq "${!url_var}" -c "SELECT id FROM shop.accounts WHERE shop_id = '$id' ORDER BY id LIMIT 1")
    product=$(psql -Atq "${!url_var}" -c "SELECT id FROM shop.products WHERE shop_id = '$id' ORDER BY id LIMIT 1")
    cat > "$work/$side-order-$s.sql" <<SQL
BEGIN;
INSERT INTO shop.order_counters AS c (shop_id, last_customer_order_id) VALUES ('$id', 1)
ON CONFLICT (shop_id) DO UPDATE SET last_customer_order_id = c.last_customer_order_id + 1
RETURNING last_customer_order_id AS n \gset
INSERT INTO shop.orders (customer_order_id, notes, shop_id, account_id, order_info, total, idempotency_key)
VALUES (:n, NULL, '$id', '$account', '[{"product_id": "$product", "quantity": 1, "price": "9.99"}]', 9.99, NULL)
RETURNING id, customer_order_id, notes, shop_id, account_id, order_info, created_at, total, status, completed_by, completed_at, idempotency_key;
COMMIT;
SQL
    cat > "$work/$side-catalog-$s.sql" <<SQL
\set skip random(0, 480)
WITH page AS (
    SELECT id, order_number, price FROM shop.products
    WHERE shop_id = '$id'
    ORDER BY order_number, id
    LIMIT 20 OFFSET :skip)
SELECT page.id, page.order_number, t.main_name, page.price,
       array(SELECT coalesce(tt.main_name, g.name, '')
             FROM shop.products_to_tags pt
             JOIN shop.tags g ON g.shop_id = pt.shop_id AND g.id = pt.tag_id
             LEFT JOIN shop.tag_translations tt ON tt.shop_id = g.shop_id AND tt.tag_id = g.id
             WHERE pt.shop_id = '$id' AND pt.product_id = page.id
             ORDER BY 1) AS tag_names
FROM page LEFT JOIN shop.product_translations t ON t.shop_id = '$id' AND t.product_id = page.id
ORDER BY page.order_number, page.id;
SQL
    cat > "$work/$side-point-$s.sql" <<SQL
SELECT id, price, stock FROM shop.products WHERE shop_id = '$id' AND id = '$product';
SQL
  done
done

run() { # side workload clients
  local url_var="$1_url" files=()
  for s in $(seq 1 20); do files+=(-f "$work/$1-$2-$s.sql"); done
  pgbench -n -M prepared -c "$3" -j 2 -T "$secs" "${files[@]}" "${!url_var}" 2>&1 |
    awk -v side="$1" -v w="$2" -v c="$3" '/^tps/ {tps=$3} /latency average/ {for (i = 1; i < NF; i++) if ($i == "=") lat = $(i + 1)}
      END {printf "%-6s %-8s clients=%s  tps=%8.1f  latency=%s ms\n", side, w, c, tps, lat}'
}

echo "# load before: $(uptime)"
for w in order catalog point; do
  for side in plain citus; do
    run "$side" "$w" "$clients"
    run "$side" "$w" 1
  done
done
echo "# load after: $(uptime)"
psql -q "$(cargo run -q -p shared-db-embedded -- url postgres)" -c "DROP DATABASE bench_citus_plain_$$ WITH (FORCE)"
