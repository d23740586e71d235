-- planexe: the free-plan claim made safe to retry (issue 22). One nullable column on user_account,
-- a catalog change only; the Python services neither map nor write it (their claims leave NULL).
--
-- free_plan_claim_key: the caller's key of the request that used the free plan (e.g. its request
--                      or plan id), so that a repeat of that request (a retry after a lost COMMIT)
--                      learns it was the one that used it, while any other request learns it was not.
SET LOCAL lock_timeout = '5s';

ALTER TABLE user_account ADD COLUMN IF NOT EXISTS free_plan_claim_key text;
