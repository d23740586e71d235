-- no-transaction
-- planexe: feedback of one user (feedback_item::list_for_user, summary_for_user).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_feedback_item_user_id ON feedback_item (user_id);
