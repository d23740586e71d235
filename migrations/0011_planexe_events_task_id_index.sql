-- no-transaction
-- planexe: events of one plan (events::list_by_plan) through planexe_event_task_id (0010), which
-- accepts every context the `json` column accepts. Built without blocking writers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_events_task_id ON events (planexe_event_task_id(context));
