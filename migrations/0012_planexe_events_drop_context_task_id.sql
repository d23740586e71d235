-- no-transaction
-- planexe: 0003's expression index goes; while it exists, a Python insert of an event whose context
-- holds a lone surrogate fails. ix_events_task_id (0011) serves its queries. On a database that
-- migrated through the guard (src/planexe/events.rs) this drops the empty placeholder instead.
DROP INDEX CONCURRENTLY IF EXISTS ix_events_context_task_id;
