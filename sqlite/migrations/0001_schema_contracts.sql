-- The compatibility window on SQLite, as on PostgreSQL (top-level migrations/0046): a contract
-- migration records here, in its own transaction, the oldest migration a binary must know to run
-- on top of it; older binaries then report `incompatible` naming `release` and are never ready.
CREATE TABLE IF NOT EXISTS _shared_db_contracts (
    version INTEGER NOT NULL PRIMARY KEY,
    requires_version INTEGER NOT NULL,
    release TEXT NOT NULL,
    reason TEXT NOT NULL,
    CONSTRAINT ck__shared_db_contracts_requires_version CHECK (requires_version <= version)
);
