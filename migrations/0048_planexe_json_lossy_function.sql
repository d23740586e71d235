-- planexe: a `json` value as `jsonb` that never raises, for the SQL that looks inside
-- `plans.parameters` (plans::find_duplicate reads `model_profile`, plans::resume reads
-- `pipeline_version` and rewrites the object).
--
-- `->>`, `->` and a cast to `jsonb` de-escape the whole document, and PostgreSQL refuses a lone
-- UTF-16 surrogate escape (`"\ud83d"`, what Python's json.dumps writes for a cut-off emoji) or a
-- `\u0000` there, although the `json` type stores both (0010 solved the same problem for
-- `events.context`). So one such plan made find_duplicate fail for its owner and made the plan
-- impossible to resume.
--
-- The function returns `doc::jsonb` for every document that cast accepts. For the others it casts
-- the text repaired the way the library reads such JSON (src/planexe/json.rs, LossyJson): each
-- lone surrogate escape becomes `\ufffd` (U+FFFD), and each `\u0000` is removed (the library's one
-- NUL rule); well-formed surrogate pairs and escaped backslashes (`\\ud83d` is text, not an
-- escape) are kept. If even that fails it returns NULL: it never raises for a value the `json`
-- type accepted. Costs nothing beyond the cast unless the cast fails.
-- PARALLEL UNSAFE: its exception block starts a subtransaction, which PostgreSQL refuses inside a
-- parallel operation.
SET LOCAL lock_timeout = '5s';

CREATE OR REPLACE FUNCTION planexe_json_lossy(doc json) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL UNSAFE
AS $$
DECLARE
    -- Stands in for an escaped backslash `\\` while the escapes are repaired, so that only real
    -- `\u` escapes are matched. JSON text cannot hold a raw U+0001, and the `json` type checked it.
    escaped_backslash CONSTANT text := chr(1);
    repaired text;
BEGIN
    RETURN doc::jsonb;
EXCEPTION WHEN data_exception THEN
    repaired := replace(doc::text, '\\', escaped_backslash);
    -- a high surrogate not followed by a low one
    repaired := regexp_replace(repaired, '\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})',
                               '\\ufffd', 'gi');
    -- a low surrogate not preceded by a high one
    repaired := regexp_replace(repaired, '(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}',
                               '\\ufffd', 'gi');
    repaired := replace(repaired, '\u0000', '');
    repaired := replace(repaired, escaped_backslash, '\\');
    BEGIN
        RETURN repaired::jsonb;
    EXCEPTION WHEN data_exception THEN
        RETURN NULL;
    END;
END
$$;
