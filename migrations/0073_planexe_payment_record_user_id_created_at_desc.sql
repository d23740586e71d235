-- no-transaction
-- planexe (issue 22): a user's payments in their list order.
-- Keyset pages seek here instead of sorting, or skipping by offset through, the whole history.
-- Built CONCURRENTLY, so Python writers never wait for it.
-- squawk-ignore require-lock-timeout
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_payment_record_user_id_created_at_desc
    ON payment_record (user_id, created_at DESC NULLS LAST, id DESC);
