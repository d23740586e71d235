-- no-transaction
-- planexe (issue 22): a user's ledger in its list order (newest first, NULLs last, ties by id).
-- Keyset pages seek here instead of sorting, or skipping by offset through, the whole history.
-- Built CONCURRENTLY, so Python writers never wait for it.
-- squawk-ignore require-lock-timeout
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_credit_history_user_id_created_at_desc
    ON credit_history (user_id, created_at DESC NULLS LAST, id DESC);
