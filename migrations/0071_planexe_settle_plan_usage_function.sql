-- planexe: the settle rule in one place (issue 22). Which ledger rows close a plan attempt's usage
-- billing, so that the next attempt is billed afresh: every open usage row of the plan, the
-- incremental ones (`usage_billing_progress`) and the final one (`usage_billing`), become
-- `usage_billing_settled`. Retry, resume, the reaper's re-queue and `settle_plan_usage` all call
-- this function; none repeats the rule. A catalog change only (no table is touched).
--
-- The caller must hold the plan row locked (`FOR UPDATE`), so no billing of the attempt (which
-- holds it `FOR SHARE`) runs beside it. Returns the number of rows settled.
SET LOCAL lock_timeout = '5s';

CREATE OR REPLACE FUNCTION planexe_settle_plan_usage(plan_id text) RETURNS bigint
    LANGUAGE sql
    VOLATILE
AS $$
    WITH settled AS (
        UPDATE credit_history SET source = 'usage_billing_settled'
        WHERE external_id = plan_id AND source IN ('usage_billing_progress', 'usage_billing')
        RETURNING 1)
    SELECT count(*) FROM settled
$$;
