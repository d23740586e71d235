-- The compatibility window of one database shared by several releases (migrations/README.md,
-- "Expand and contract").
--
-- Most migrations expand: they add what a newer release needs and keep everything an older
-- release reads and writes, so older binaries keep serving on top of them (`status` reports them
-- `ahead`, and ready). A contract migration drops or renames something that older releases still
-- use. It declares so here, in its own transaction, with the oldest migration a binary must know
-- to run on top of it; a binary that does not know that migration reports `incompatible`, naming
-- `release`, and is never ready, instead of serving half-broken.
--
--   version          the contract migration's own version (its `_sqlx_migrations` row)
--   requires_version a binary must know this migration (have it compiled in) to keep running
--   release          the release to deploy at least, as operators call it ("shared-db 0.3")
--   reason           what the contract step removes, for the operator reading the message
--
-- Python services never read it; it is not one of the planexe tables (reference §4).
SET LOCAL lock_timeout = '5s';

CREATE TABLE IF NOT EXISTS _shared_db_contracts (
    version bigint NOT NULL,
    requires_version bigint NOT NULL,
    release text NOT NULL,
    reason text NOT NULL,
    CONSTRAINT pk__shared_db_contracts PRIMARY KEY (version),
    CONSTRAINT ck__shared_db_contracts_requires_version CHECK (requires_version <= version)
);
