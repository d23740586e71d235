-- no-transaction
-- Billing (bill_usage_progress / bill_usage_final sum a plan's usage rows) and the settle step of
-- retry, resume and the reaper filter credit_history by (external_id, source) while the user's
-- row is locked; without this index each call scanned the whole ledger (growth benchmark:
-- BENCHMARKS.md). IF NOT EXISTS: the same index may already be there.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_credit_history_external_id_source
    ON credit_history (external_id, source);
