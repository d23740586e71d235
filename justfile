# shared-db tasks. `just --list` shows them. Nothing here is needed for the README's two
# commands (`cargo run -- demo`, `cargo test`); these are conveniences.

# Schema status of the database (embedded cluster when DATABASE_URL is unset)
status:
    cargo run -q -- status

# Apply pending migrations
migrate:
    cargo run -q -- migrate

# Run the test suite (one fresh database per test)
test:
    cargo test --workspace

# The multi-service demo
demo:
    cargo run -q -- demo

# Regenerate .sqlx against a freshly migrated, empty database (after changing SQL or migrations)
prepare:
    .ci/prepare

# Verify .sqlx is current
prepare-check:
    .ci/prepare --check

# Start the embedded PostgreSQL cluster and print where it is
db-start:
    cargo run -q -p shared-db-embedded -- start

# Stop the embedded PostgreSQL cluster
db-stop:
    cargo run -q -p shared-db-embedded -- stop

# Print a URL for a database on the embedded cluster (created if missing)
db-url database="shared_db":
    cargo run -q -p shared-db-embedded -- url {{database}}

# Benchmarks: shared-db vs pgbench -M prepared on five workloads (BENCHMARKS.md; ~2 min)
# (knobs: BENCH_SECS, BENCH_ONLY=w1,w5,mem, BENCH_EXPLAIN=1, DATABASE_URL; see BENCHMARKS.md)
bench:
    cargo bench --bench workloads

# What CI runs
ci:
    bash .ci/run
