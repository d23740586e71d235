-- no-transaction
-- The reaper (plans::requeue_stale) looks for processing plans; `state` has no index in the
-- PlanExe schema, so each pass scanned every plan (growth benchmark: BENCHMARKS.md). Partial:
-- only the few plans being processed are in it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_plans_processing
    ON plans (id) WHERE state = 'processing';
