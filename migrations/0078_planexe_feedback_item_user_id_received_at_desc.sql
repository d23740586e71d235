-- no-transaction
-- planexe (issue 22): a user's feedback in its list order.
-- Keyset pages seek here instead of sorting, or skipping by offset through, the whole history.
-- Built CONCURRENTLY, so Python writers never wait for it.
-- squawk-ignore require-lock-timeout
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_feedback_item_user_id_received_at_desc
    ON feedback_item (user_id, received_at DESC, id DESC);
