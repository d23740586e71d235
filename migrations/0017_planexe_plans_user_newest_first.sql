-- no-transaction
-- planexe: a user's plan list (plans::list_by_user) is ordered newest first, plans without a
-- creation time last, ties by id. PlanExe's idx_plans_user_id_timestamp_created is ascending and
-- cannot give that order (a backward scan puts NULLs first), so every page read and sorted all of
-- the user's plans: cost linear in the user's history. In the list's own order, a page reads its
-- offset and its rows, nothing else.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_plans_user_id_timestamp_created_desc
    ON plans (user_id, timestamp_created DESC NULLS LAST, id DESC);
