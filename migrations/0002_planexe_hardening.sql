-- planexe: invariants the Python code assumed but never enforced (reference §11 #4, #5/#6, #8, #13).
-- Additive only: unique/partial indexes that a Python writer following its own rules never violates.
-- Each unique index is preceded by a check that names the offending rows, so a database that already
-- holds duplicates (possible on a legacy database, see §11) fails with a readable message instead of a
-- bare unique-violation; the duplicates then have to be reconciled by hand before re-running.

DO $$
DECLARE dup text;
BEGIN
    SELECT string_agg(provider || '/' || provider_payment_id, ', ') INTO dup FROM (
        SELECT provider, provider_payment_id FROM payment_record
        GROUP BY provider, provider_payment_id HAVING count(*) > 1 LIMIT 20) d;
    IF dup IS NOT NULL THEN
        RAISE EXCEPTION 'payment_record holds duplicate (provider, provider_payment_id): %', dup;
    END IF;
    SELECT string_agg(provider || '/' || provider_user_id, ', ') INTO dup FROM (
        SELECT provider, provider_user_id FROM user_provider
        GROUP BY provider, provider_user_id HAVING count(*) > 1 LIMIT 20) d;
    IF dup IS NOT NULL THEN
        RAISE EXCEPTION 'user_provider holds duplicate (provider, provider_user_id): %', dup;
    END IF;
    SELECT string_agg(external_id, ', ') INTO dup FROM (
        SELECT external_id FROM credit_history WHERE source = 'usage_billing'
        GROUP BY external_id HAVING count(*) > 1 LIMIT 20) d;
    IF dup IS NOT NULL THEN
        RAISE EXCEPTION 'credit_history holds several final usage_billing rows for plans: %', dup;
    END IF;
END
$$;

-- A provider payment is applied once (the idempotency gate of payment_record::apply_payment).
CREATE UNIQUE INDEX uq_payment_record_provider_payment_id
    ON payment_record (provider, provider_payment_id);

-- One OAuth identity links to one user (the conflict target of user_account::sign_in).
CREATE UNIQUE INDEX uq_user_provider_provider_user_id
    ON user_provider (provider, provider_user_id);

-- At most one open final usage-billing row per plan. Final billing is per run attempt: retry and resume
-- settle the previous attempt's rows (source -> 'usage_billing_settled'), which takes them out of this
-- index, so the next attempt can be billed once again (§11 #6). A Python guard keyed on
-- (source='usage_billing', external_id) keeps working unchanged.
CREATE UNIQUE INDEX uq_credit_history_usage_billing_final
    ON credit_history (external_id) WHERE source = 'usage_billing';

-- Serves the queue claim: pending plans in FIFO order (§11 #13). Also used by the duplicate lookup.
CREATE INDEX ix_plans_pending_fifo
    ON plans (timestamp_created) WHERE state = 'pending';
