-- planexe: wake idle workers when a plan becomes claimable (issue 23). A trigger on plans sends
-- `NOTIFY planexe_plan_pending` whenever a row enters `pending`: a new plan (whoever inserts it:
-- shared-db's `enqueue`, a Python service, plain SQL) and a plan put back in the queue (retry,
-- resume, the reaper). Workers that LISTEN on the channel claim at once instead of waiting for
-- their next poll.
--
-- The payload is empty, so PostgreSQL folds all the notifications of one transaction into one
-- (a bulk enqueue of 10,000 plans wakes each listener once). A notification is sent at COMMIT
-- and is lost when it is rolled back, so a listener never wakes for a plan it cannot see.
-- Notifications are a hint only: they are not kept for a listener that was disconnected (a
-- failover, a restart) and never reach a LISTEN made through a pooler in transaction mode, so
-- workers keep polling as a fallback. The trigger writes nothing and fails on nothing the
-- Python writers do (pg_notify only fails when the queue of undelivered notifications, 8 GB,
-- is full).
SET LOCAL lock_timeout = '5s';

CREATE OR REPLACE FUNCTION planexe_notify_plan_pending() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('planexe_plan_pending', '');
    RETURN NULL;
END
$$;

-- a new pending plan
DROP TRIGGER IF EXISTS trg_plans_pending_notify_insert ON plans;
CREATE TRIGGER trg_plans_pending_notify_insert
    AFTER INSERT ON plans
    FOR EACH ROW
    WHEN (NEW.state = 'pending')
    EXECUTE FUNCTION planexe_notify_plan_pending();

-- a plan back in the queue (retry, resume, the reaper), or a stop request withdrawn
DROP TRIGGER IF EXISTS trg_plans_pending_notify_update ON plans;
CREATE TRIGGER trg_plans_pending_notify_update
    AFTER UPDATE OF state, stop_requested ON plans
    FOR EACH ROW
    WHEN (NEW.state = 'pending' AND NEW.stop_requested IS NOT TRUE
          AND (OLD.state IS DISTINCT FROM NEW.state
               OR OLD.stop_requested IS DISTINCT FROM NEW.stop_requested))
    EXECUTE FUNCTION planexe_notify_plan_pending();
