-- planexe: an incremental ledger check (issue 23). `credit_history::reconcile` re-read the whole
-- ledger on every run (8.9 s at 20M rows); it now adds only the rows written since its last run
-- to per-user sums it checkpointed then.
--
-- credit_history.xact_id: the id of the transaction that wrote the row (`pg_current_xact_id()`,
--     64-bit, never wraps), filled in by the default for every writer, the Python services
--     included (they do not name the column). Rows written before this migration keep NULL and
--     count as older than every checkpoint. Ledger ids (random UUIDs) and `created_at` (the
--     transaction's start) cannot order rows by commit; a transaction id can be compared with a
--     snapshot's xmin: every transaction below it has ended, so no row below it can still appear.
--     Adding a nullable column and then its default is a catalog change only (no rewrite; old rows
--     stay NULL).
--
-- credit_reconcile_checkpoint: per user, the sum of the deltas of every ledger row whose
--     xact_id is NULL or below the watermark (all of them committed and checked).
-- credit_reconcile_watermark: one row; `below` is that watermark (NULL: no run yet, the next
--     run reads the whole ledger). Its row lock serialises reconcile runs.
SET LOCAL lock_timeout = '5s';

ALTER TABLE credit_history ADD COLUMN IF NOT EXISTS xact_id xid8;
ALTER TABLE credit_history ALTER COLUMN xact_id SET DEFAULT pg_current_xact_id();

CREATE TABLE IF NOT EXISTS credit_reconcile_checkpoint (
    user_id    uuid PRIMARY KEY,
    ledger_sum numeric NOT NULL,
    checked_at timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS credit_reconcile_watermark (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    below      xid8,
    full_at    timestamptz,
    checked_at timestamptz
);
