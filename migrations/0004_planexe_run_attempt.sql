-- planexe: run ownership (issue 10 #1). Two nullable columns on plans, without defaults, so adding
-- them is a catalog change only (no rewrite; the table lock is held for milliseconds, and waited
-- for at most 5 s). The Python services neither map nor write them: their inserts leave NULL.
--
-- run_attempt:  stamped with a fresh uuid by every claim (plans::claim_next) and cleared when the
--               plan is re-queued (retry, resume, reaper). Every worker write names it, so a worker
--               whose run was taken from it writes and bills nothing.
-- reaped_count: how often the reaper re-queued the current run (NULL = never); the reaper fails the
--               plan with failure_reason 'worker_lost' once it reaches the caller's bound.
SET LOCAL lock_timeout = '5s';

ALTER TABLE plans
    ADD COLUMN IF NOT EXISTS run_attempt uuid,
    ADD COLUMN IF NOT EXISTS reaped_count integer;
