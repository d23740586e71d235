-- no-transaction
-- planexe: the incremental ledger check reads the rows written since its watermark by this index
-- (migration 0080).
-- squawk-ignore require-lock-timeout
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_credit_history_xact_id ON credit_history (xact_id);
