-- no-transaction
-- planexe: the idempotency gate of 0005. Built CONCURRENTLY: credit_history is written by every
-- pipeline step of the Python workers, which must not wait for the build. Partial on non-NULL keys,
-- so Python rows (always NULL) are neither indexed nor ever in conflict.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS uq_credit_history_idempotency_key
    ON credit_history (idempotency_key) WHERE idempotency_key IS NOT NULL;
