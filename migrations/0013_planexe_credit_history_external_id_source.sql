-- no-transaction
-- planexe: usage billing sums, the settle step of retry/resume/reaper and `settle_plan_usage`
-- filter the ledger by (external_id, source) while the user's row is locked; without this index
-- each of them scans the whole ledger.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_credit_history_external_id_source
    ON credit_history (external_id, source);
