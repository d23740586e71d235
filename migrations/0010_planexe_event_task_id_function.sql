-- planexe: the plan id an event belongs to, for the index that replaces 0003's
-- `ix_events_context_task_id ON events ((context ->> 'task_id'))`.
--
-- `->>` on `json` de-escapes the whole document, and PostgreSQL refuses a lone UTF-16 surrogate
-- (`"\ud83d"`, what Python's json.dumps writes for a cut-off emoji) or `\u0000` there, although
-- the `json` type stores both. With 0003's expression index, a Python insert of such an event
-- fails, and building that index fails on a table that already holds one. This function returns
-- the same text for every context `->>` can read; for the others it reads `task_id` from the text
-- with every surrogate and `\u0000` escape replaced by `\ufffd` (same shape, so the JSON stays
-- valid); it never raises for a value the `json` type accepted.
-- PARALLEL UNSAFE: its exception block starts a subtransaction, which PostgreSQL refuses inside a
-- parallel operation, and a parallel index build on a big `events` table would be one.
CREATE OR REPLACE FUNCTION planexe_event_task_id(context json) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL UNSAFE
AS $$
BEGIN
    RETURN context ->> 'task_id';
EXCEPTION WHEN invalid_text_representation OR untranslatable_character THEN
    BEGIN
        RETURN regexp_replace(context::text, '\\u(d[89a-f][0-9a-f]{2}|0000)', '\\ufffd', 'gi')::json
               ->> 'task_id';
    EXCEPTION WHEN invalid_text_representation OR untranslatable_character THEN
        RETURN NULL;
    END;
END
$$;
