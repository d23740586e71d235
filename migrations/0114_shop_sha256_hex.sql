-- shop.sha256_hex(text): the SHA-256 of a text's UTF-8 bytes, in lower-case hex, for
-- accounts::anonymise. `convert_to` is only STABLE (a conversion could be redefined), and Citus
-- refuses a non-IMMUTABLE function inside COALESCE in a distributed UPDATE; with the target
-- encoding named, the result depends on the argument alone, so this wrapper says IMMUTABLE.
-- A new function, no table touched; the lock wait is bounded all the same.
SET LOCAL lock_timeout = '5s';
CREATE OR REPLACE FUNCTION shop.sha256_hex(value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT encode(sha256(convert_to(value, 'UTF8')), 'hex') $$;
