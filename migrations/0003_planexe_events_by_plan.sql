-- planexe: serve "events of one plan" (events::list_by_plan, status polling) without scanning the
-- whole event log: an expression index on the plan id every plan event carries in its context.
-- Additive; `->>` on `json` is immutable, so Python writers are unaffected.
CREATE INDEX IF NOT EXISTS ix_events_context_task_id ON events ((context ->> 'task_id'));
