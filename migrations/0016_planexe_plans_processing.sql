-- no-transaction
-- planexe: the reaper (plans::requeue_stale) looks only at processing plans, a handful among
-- millions of finished ones. Partial, so it stays small and costs other writes nothing.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_plans_processing_last_progress_at
    ON plans (last_progress_at) WHERE state = 'processing';
