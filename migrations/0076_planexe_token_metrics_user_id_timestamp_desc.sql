-- no-transaction
-- planexe (issue 22): a user's LLM calls in their list order.
-- Keyset pages seek here instead of sorting, or skipping by offset through, the whole history.
-- Built CONCURRENTLY, so Python writers never wait for it.
-- squawk-ignore require-lock-timeout
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_token_metrics_user_id_timestamp_desc
    ON token_metrics (user_id, "timestamp" DESC, id DESC);
