-- planexe: the schema shared with the PlanExe Python services (database_api).
--
-- Wire-compatible with a database created by the current Python code (reference: planexe.md §4, §5):
-- same table and column names, same types (`json` not `jsonb`, `timestamp without time zone` holding UTC,
-- numeric(18,9) credits), same index names (SQLAlchemy defaults `ix_<table>_<column>`, PK `<table>_pkey`,
-- inline unique `<table>_<column>_key`), enum types named after the Python classes with the member NAMES
-- as labels. No foreign keys (the Python package's policy) and no server defaults except
-- `user_account.credits_balance DEFAULT 0`, which the Python services set at every start anyway.
--
-- Index pairs: for plans.api_key_id and credit_history.api_key_id only the frontend's `idx_*` names are
-- created (not the `ix_*` twins), so the frontend's `CREATE INDEX IF NOT EXISTS IF NOT EXISTS idx_*` finds them and no
-- duplicate index is maintained (reference §11 #14). The frontend's composite plans index is created here too.
--
-- Adopting a database the Python services already manage: every statement is idempotent (IF NOT EXISTS,
-- guarded enum creation, SET DEFAULT), so on a database created by `db.create_all()` this migration only
-- adds what is missing (e.g. the ix_token_metrics_* indexes that legacy databases lack, §7) and records
-- itself. It does not alter existing tables: a live database must already have been brought to the
-- current Python shape by the services' own startup DDL (task_item renamed to plans, columns added,
-- numeric(18,9) conversions) before shared-db migrates it.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                   WHERE n.nspname = current_schema() AND t.typname = 'eventtype') THEN
        CREATE TYPE eventtype AS ENUM (
            'GENERIC_ERROR', 'GENERIC_EVENT', 'TASK_PENDING', 'TASK_PROCESSING', 'TASK_FAILED',
            'TASK_COMPLETED');
    END IF;
    -- A legacy database calls this type `taskstate` (created before the TaskState -> PlanState
    -- rename); it is used as is.
    IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                   WHERE n.nspname = current_schema() AND t.typname IN ('planstate', 'taskstate')) THEN
        CREATE TYPE planstate AS ENUM ('pending', 'processing', 'completed', 'failed', 'stopped');
    END IF;
END
$$;

CREATE TABLE IF NOT EXISTS events (
    id         SERIAL NOT NULL,
    "timestamp" TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    event_type eventtype NOT NULL,
    message    TEXT NOT NULL,
    context    JSON,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_events_event_type ON events (event_type);
CREATE INDEX IF NOT EXISTS ix_events_timestamp ON events ("timestamp");

CREATE TABLE IF NOT EXISTS plans (
    id                          UUID NOT NULL,
    timestamp_created           TIMESTAMP WITHOUT TIME ZONE,
    state                       planstate,
    prompt                      TEXT,
    progress_percentage         NUMERIC(5, 2),
    progress_message            VARCHAR(128),
    steps_completed             INTEGER,
    steps_total                 INTEGER,
    current_step                VARCHAR(128),
    last_seen_timestamp         TIMESTAMP WITHOUT TIME ZONE,
    stop_requested              BOOLEAN,
    stop_requested_timestamp    TIMESTAMP WITHOUT TIME ZONE,
    user_id                     VARCHAR(256),
    api_key_id                  VARCHAR(36),
    parameters                  JSON,
    generated_report_html       TEXT,
    run_zip_snapshot            BYTEA,
    run_track_activity_jsonl    TEXT,
    run_track_activity_bytes    INTEGER,
    run_activity_overview_json  JSON,
    run_artifact_layout_version INTEGER,
    failure_reason              VARCHAR(64),
    failed_step                 VARCHAR(128),
    error_message               VARCHAR(256),
    recoverable                 BOOLEAN,
    last_progress_at            TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS idx_plans_user_id_timestamp_created ON plans (user_id, timestamp_created);
CREATE INDEX IF NOT EXISTS idx_plans_api_key_id ON plans (api_key_id);

CREATE TABLE IF NOT EXISTS workers (
    id                VARCHAR(255) NOT NULL,
    started_at        TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    last_heartbeat_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    current_task_id   VARCHAR(255),
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_workers_current_task_id ON workers (current_task_id);
CREATE INDEX IF NOT EXISTS ix_workers_last_heartbeat_at ON workers (last_heartbeat_at);

CREATE TABLE IF NOT EXISTS nonces (
    id               SERIAL NOT NULL,
    nonce_key        VARCHAR(255) NOT NULL,
    created_at       TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    last_accessed_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    request_count    INTEGER NOT NULL,
    context          JSON,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_nonces_created_at ON nonces (created_at);
CREATE INDEX IF NOT EXISTS ix_nonces_last_accessed_at ON nonces (last_accessed_at);
CREATE UNIQUE INDEX IF NOT EXISTS ix_nonces_nonce_key ON nonces (nonce_key);

CREATE TABLE IF NOT EXISTS user_account (
    id                         UUID NOT NULL,
    created_at                 TIMESTAMP WITHOUT TIME ZONE,
    updated_at                 TIMESTAMP WITHOUT TIME ZONE,
    email                      VARCHAR(256),
    name                       VARCHAR(256),
    given_name                 VARCHAR(128),
    family_name                VARCHAR(128),
    locale                     VARCHAR(64),
    avatar_url                 VARCHAR(512),
    is_admin                   BOOLEAN NOT NULL,
    free_plan_used             BOOLEAN NOT NULL,
    credits_balance            NUMERIC(18, 9) NOT NULL DEFAULT 0,
    last_login_at              TIMESTAMP WITHOUT TIME ZONE,
    frontend_multi_user_config JSON,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_user_account_email ON user_account (email);
ALTER TABLE user_account ALTER COLUMN credits_balance SET DEFAULT 0;

CREATE TABLE IF NOT EXISTS user_provider (
    id               UUID NOT NULL,
    user_id          UUID NOT NULL,
    provider         VARCHAR(32) NOT NULL,
    provider_user_id VARCHAR(256) NOT NULL,
    email            VARCHAR(256),
    raw_profile      JSON,
    created_at       TIMESTAMP WITHOUT TIME ZONE,
    last_login_at    TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_user_provider_provider ON user_provider (provider);
CREATE INDEX IF NOT EXISTS ix_user_provider_provider_user_id ON user_provider (provider_user_id);
CREATE INDEX IF NOT EXISTS ix_user_provider_user_id ON user_provider (user_id);

CREATE TABLE IF NOT EXISTS user_api_key (
    id            UUID NOT NULL,
    user_id       UUID NOT NULL,
    key_hash      VARCHAR(128) NOT NULL,
    key_prefix    VARCHAR(16) NOT NULL,
    label         VARCHAR(128),
    key_plaintext VARCHAR(64),
    created_at    TIMESTAMP WITHOUT TIME ZONE,
    last_used_at  TIMESTAMP WITHOUT TIME ZONE,
    revoked_at    TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (id),
    UNIQUE (key_hash)
);
CREATE INDEX IF NOT EXISTS ix_user_api_key_key_prefix ON user_api_key (key_prefix);
CREATE INDEX IF NOT EXISTS ix_user_api_key_user_id ON user_api_key (user_id);

CREATE TABLE IF NOT EXISTS credit_history (
    id          UUID NOT NULL,
    user_id     UUID NOT NULL,
    delta       NUMERIC(18, 9) NOT NULL,
    reason      VARCHAR(128) NOT NULL,
    source      VARCHAR(32) NOT NULL,
    external_id VARCHAR(256),
    api_key_id  VARCHAR(36),
    created_at  TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS idx_credit_history_api_key_id ON credit_history (api_key_id);
CREATE INDEX IF NOT EXISTS ix_credit_history_user_id ON credit_history (user_id);

CREATE TABLE IF NOT EXISTS payment_record (
    id                  UUID NOT NULL,
    user_id             UUID NOT NULL,
    provider            VARCHAR(32) NOT NULL,
    provider_payment_id VARCHAR(256) NOT NULL,
    credits             NUMERIC(18, 9) NOT NULL,
    amount              INTEGER NOT NULL,
    currency            VARCHAR(16) NOT NULL,
    status              VARCHAR(32) NOT NULL,
    raw_payload         JSON,
    created_at          TIMESTAMP WITHOUT TIME ZONE,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_payment_record_provider ON payment_record (provider);
CREATE INDEX IF NOT EXISTS ix_payment_record_provider_payment_id ON payment_record (provider_payment_id);
CREATE INDEX IF NOT EXISTS ix_payment_record_user_id ON payment_record (user_id);

CREATE TABLE IF NOT EXISTS token_metrics (
    id                SERIAL NOT NULL,
    "timestamp"       TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    llm_model         VARCHAR(255) NOT NULL,
    task_id           VARCHAR(255),
    user_id           VARCHAR(255),
    api_key_id        VARCHAR(36),
    upstream_provider VARCHAR(255),
    upstream_model    VARCHAR(255),
    input_tokens      INTEGER,
    output_tokens     INTEGER,
    thinking_tokens   INTEGER,
    cost_usd          DOUBLE PRECISION,
    duration_seconds  DOUBLE PRECISION,
    success           BOOLEAN NOT NULL,
    error_message     TEXT,
    raw_usage_data    JSON,
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_token_metrics_api_key_id ON token_metrics (api_key_id);
CREATE INDEX IF NOT EXISTS ix_token_metrics_llm_model ON token_metrics (llm_model);
CREATE INDEX IF NOT EXISTS ix_token_metrics_task_id ON token_metrics (task_id);
CREATE INDEX IF NOT EXISTS ix_token_metrics_timestamp ON token_metrics ("timestamp");
CREATE INDEX IF NOT EXISTS ix_token_metrics_upstream_model ON token_metrics (upstream_model);
CREATE INDEX IF NOT EXISTS ix_token_metrics_upstream_provider ON token_metrics (upstream_provider);
CREATE INDEX IF NOT EXISTS ix_token_metrics_user_id ON token_metrics (user_id);

CREATE TABLE IF NOT EXISTS feedback_item (
    id                VARCHAR(36) NOT NULL,
    received_at       TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    category          VARCHAR(32) NOT NULL,
    message           TEXT NOT NULL,
    plan_id           VARCHAR(36),
    rating            INTEGER,
    user_id           VARCHAR(36),
    plan_progress_pct DOUBLE PRECISION,
    plan_state        VARCHAR(16),
    plan_current_step VARCHAR(128),
    PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_feedback_item_received_at ON feedback_item (received_at);
