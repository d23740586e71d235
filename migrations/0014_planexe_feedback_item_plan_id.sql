-- no-transaction
-- planexe: feedback of one plan (feedback_item::list_for_plan, summary_for_plan).
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_feedback_item_plan_id ON feedback_item (plan_id);
