-- planexe: run ownership enforced by the database, whoever writes (issue 19 #3).
--
-- Every worker write names the run's token (`plans.run_attempt`, 0004), and our own re-queues
-- (retry, resume, reaper) clear it. The Python services do not know the column: their retry,
-- resume and claim move a plan into `pending` or `processing` and leave the token as it was, so
-- a Rust worker whose run was taken would still match and keep writing, billing and finishing a
-- plan that now belongs to someone else.
--
-- This trigger clears the token on any UPDATE that moves a plan into `pending` or `processing`
-- from another state without setting a new token (`plans::claim_next` sets a fresh one, so its
-- claim keeps it). The stale worker's next write then matches nothing and is `Superseded`.
-- The WHEN clause keeps the trigger off every other update (progress, heartbeats, artifacts).
-- States are compared as text, so the legacy type name `taskstate` works the same.
SET LOCAL lock_timeout = '5s';

CREATE OR REPLACE FUNCTION planexe_plans_clear_stale_run_attempt() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.run_attempt := NULL;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS tr_plans_clear_stale_run_attempt ON plans;
CREATE TRIGGER tr_plans_clear_stale_run_attempt
    BEFORE UPDATE OF state ON plans
    FOR EACH ROW
    WHEN (NEW.state::text IN ('pending', 'processing')
          AND NEW.state::text IS DISTINCT FROM OLD.state::text
          AND NEW.run_attempt IS NOT DISTINCT FROM OLD.run_attempt
          AND NEW.run_attempt IS NOT NULL)
    EXECUTE FUNCTION planexe_plans_clear_stale_run_attempt();
