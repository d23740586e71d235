-- planexe: exactly-once money movements (issue 10 #2). Two nullable columns on credit_history;
-- a catalog change only. The Python services never write them (their rows leave NULL).
--
-- idempotency_key: set by shared-db on rows it writes for a repeatable request (a charge or grant
--                  with a caller's key, usage billing per run attempt). Unique among non-NULL
--                  values (index in 0006), so a repeated request finds its first row instead of
--                  writing a second one.
-- balance_after:   the user's balance right after this row was applied, so a repeated request can
--                  return the first outcome. NULL on rows written by others.
SET LOCAL lock_timeout = '5s';

ALTER TABLE credit_history
    ADD COLUMN IF NOT EXISTS idempotency_key text,
    ADD COLUMN IF NOT EXISTS balance_after numeric(18, 9);
