-- planexe on SQLite: the 11 tables of the PostgreSQL schema (top-level migrations/0001..0078), in
-- the shapes the Python services' SQLAlchemy models give them on SQLite (reference planexe.md
-- §2.4, §2.7, §2.8), so a Python process and the Rust services can share one file:
--
-- * UUID columns (plans.id, user_*.id, *.user_id of the user-side tables) are CHAR(32): 32
--   lowercase hex digits without hyphens, what sqlalchemy-utils' UUIDType(binary=False) writes on
--   SQLite. Varchar references to them (plans.user_id, *.api_key_id, credit_history.external_id,
--   workers.current_task_id, ...) hold the hyphenated lowercase string, as on PostgreSQL.
-- * Enums are text holding the member NAME ('pending', 'TASK_PENDING'); the CHECKs name the labels
--   (Python adds none; the labels it writes pass them).
-- * Timestamps are text 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, SQLAlchemy's SQLite DATETIME format),
--   so they sort and compare as text. Booleans are 0/1.
-- * JSON is text (TEXT affinity: a JSON scalar such as `5` stays text, which SQLAlchemy's JSON type
--   needs), checked with json_valid. SQL NULL and the JSON text `null` both mean absent.
-- * Money (credits_balance, delta, balance_after, credits) is NUMERIC with values stored as
--   INTEGER/REAL: SQLAlchemy's Numeric on SQLite binds a float and reads one back into a Decimal
--   ("%.9f"), and fails on a TEXT value (TypeError), so a text column would break the Python side.
--   Exactness comes from the range: every 9-place decimal of magnitude below 10^6 (at most 15
--   significant digits) is the unique decimal its nearest double rounds back to, so Python's
--   quantize and Rust's text round trip (CAST(x AS TEXT), 15 significant digits) both recover it
--   exactly. The CHECKs keep every amount in that range and out of TEXT; no arithmetic on money is
--   done in SQL (Rust adds exact Decimals and writes the result).
-- * No foreign keys and no server defaults (§2.2, §2.3): every writer supplies every value.

CREATE TABLE events (
    id          INTEGER NOT NULL PRIMARY KEY,
    "timestamp" DATETIME NOT NULL,
    event_type  VARCHAR(15) NOT NULL
        CONSTRAINT ck_events_event_type CHECK (event_type IN ('GENERIC_ERROR', 'GENERIC_EVENT',
            'TASK_PENDING', 'TASK_PROCESSING', 'TASK_FAILED', 'TASK_COMPLETED')),
    message     TEXT NOT NULL,
    context     TEXT CONSTRAINT ck_events_context CHECK (context IS NULL OR json_valid(context))
);
CREATE INDEX ix_events_event_type ON events (event_type);
CREATE INDEX ix_events_timestamp ON events ("timestamp");
-- A plan's events (the PostgreSQL ix_events_task_id): the task_id key of the context.
CREATE INDEX ix_events_task_id ON events (json_extract(context, '$.task_id'));

CREATE TABLE plans (
    id                          CHAR(32) NOT NULL PRIMARY KEY
        CONSTRAINT ck_plans_id CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
    timestamp_created           DATETIME,
    state                       VARCHAR(10)
        CONSTRAINT ck_plans_state
            CHECK (state IN ('pending', 'processing', 'completed', 'failed', 'stopped')),
    prompt                      TEXT,
    progress_percentage         NUMERIC(5, 2),
    progress_message            VARCHAR(128),
    steps_completed             INTEGER,
    steps_total                 INTEGER,
    current_step                VARCHAR(128),
    last_seen_timestamp         DATETIME,
    stop_requested              BOOLEAN CONSTRAINT ck_plans_stop_requested CHECK (stop_requested IN (0, 1)),
    stop_requested_timestamp    DATETIME,
    user_id                     VARCHAR(256),
    api_key_id                  VARCHAR(36),
    parameters                  TEXT CONSTRAINT ck_plans_parameters CHECK (parameters IS NULL OR json_valid(parameters)),
    generated_report_html       TEXT,
    run_zip_snapshot            BLOB,
    run_track_activity_jsonl    TEXT,
    run_track_activity_bytes    INTEGER,
    run_activity_overview_json  TEXT
        CONSTRAINT ck_plans_run_activity_overview_json CHECK (run_activity_overview_json IS NULL OR json_valid(run_activity_overview_json)),
    run_artifact_layout_version INTEGER,
    failure_reason              VARCHAR(64),
    failed_step                 VARCHAR(128),
    error_message               VARCHAR(256),
    recoverable                 BOOLEAN CONSTRAINT ck_plans_recoverable CHECK (recoverable IN (0, 1)),
    last_progress_at            DATETIME,
    -- Rust-only (PostgreSQL 0004): the run's owner token (hex like the ids) and the reaper's count.
    run_attempt                 CHAR(32),
    reaped_count                INTEGER
);
CREATE INDEX idx_plans_user_id_timestamp_created ON plans (user_id, timestamp_created);
CREATE INDEX idx_plans_api_key_id ON plans (api_key_id);
-- The claim: pending plans in FIFO order (rowid breaks ties between plans of the same instant).
CREATE INDEX ix_plans_pending_fifo ON plans (timestamp_created) WHERE state = 'pending';
-- The reaper: running plans by their stall clock.
CREATE INDEX ix_plans_processing_last_progress_at ON plans (last_progress_at)
    WHERE state = 'processing';

CREATE TABLE workers (
    id                VARCHAR(255) NOT NULL PRIMARY KEY,
    started_at        DATETIME NOT NULL,
    last_heartbeat_at DATETIME NOT NULL,
    current_task_id   VARCHAR(255)
);
CREATE INDEX ix_workers_current_task_id ON workers (current_task_id);
CREATE INDEX ix_workers_last_heartbeat_at ON workers (last_heartbeat_at);

CREATE TABLE nonces (
    id               INTEGER NOT NULL PRIMARY KEY,
    nonce_key        VARCHAR(255) NOT NULL,
    created_at       DATETIME NOT NULL,
    last_accessed_at DATETIME NOT NULL,
    request_count    INTEGER NOT NULL,
    context          TEXT CONSTRAINT ck_nonces_context CHECK (context IS NULL OR json_valid(context))
);
CREATE UNIQUE INDEX ix_nonces_nonce_key ON nonces (nonce_key);
CREATE INDEX ix_nonces_created_at ON nonces (created_at);
CREATE INDEX ix_nonces_last_accessed_at ON nonces (last_accessed_at);

CREATE TABLE user_account (
    id                         CHAR(32) NOT NULL PRIMARY KEY
        CONSTRAINT ck_user_account_id CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
    created_at                 DATETIME,
    updated_at                 DATETIME,
    email                      VARCHAR(256),
    name                       VARCHAR(256),
    given_name                 VARCHAR(128),
    family_name                VARCHAR(128),
    locale                     VARCHAR(64),
    avatar_url                 VARCHAR(512),
    is_admin                   BOOLEAN NOT NULL CONSTRAINT ck_user_account_is_admin CHECK (is_admin IN (0, 1)),
    free_plan_used             BOOLEAN NOT NULL
        CONSTRAINT ck_user_account_free_plan_used CHECK (free_plan_used IN (0, 1)),
    credits_balance            NUMERIC(18, 9) NOT NULL DEFAULT 0
        CONSTRAINT ck_user_account_credits_balance CHECK (
            typeof(credits_balance) IN ('integer', 'real')
            AND credits_balance BETWEEN -999999.999999999 AND 999999.999999999),
    last_login_at              DATETIME,
    frontend_multi_user_config TEXT
        CONSTRAINT ck_user_account_frontend_multi_user_config
            CHECK (frontend_multi_user_config IS NULL OR json_valid(frontend_multi_user_config)),
    -- Rust-only (PostgreSQL 0070): the caller's key of the claim that used the free plan.
    free_plan_claim_key        TEXT
);
CREATE INDEX ix_user_account_email ON user_account (email);

CREATE TABLE user_provider (
    id               CHAR(32) NOT NULL PRIMARY KEY
        CONSTRAINT ck_user_provider_id CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
    user_id          CHAR(32) NOT NULL,
    provider         VARCHAR(32) NOT NULL,
    provider_user_id VARCHAR(256) NOT NULL,
    email            VARCHAR(256),
    raw_profile      TEXT CONSTRAINT ck_user_provider_raw_profile CHECK (raw_profile IS NULL OR json_valid(raw_profile)),
    created_at       DATETIME,
    last_login_at    DATETIME
);
CREATE INDEX ix_user_provider_provider ON user_provider (provider);
CREATE INDEX ix_user_provider_provider_user_id ON user_provider (provider_user_id);
CREATE INDEX ix_user_provider_user_id ON user_provider (user_id);
CREATE UNIQUE INDEX uq_user_provider_provider_user_id ON user_provider (provider, provider_user_id);

CREATE TABLE user_api_key (
    id            CHAR(32) NOT NULL PRIMARY KEY
        CONSTRAINT ck_user_api_key_id CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
    user_id       CHAR(32) NOT NULL,
    key_hash      VARCHAR(128) NOT NULL CONSTRAINT user_api_key_key_hash_key UNIQUE,
    key_prefix    VARCHAR(16) NOT NULL,
    label         VARCHAR(128),
    key_plaintext VARCHAR(64),
    created_at    DATETIME,
    last_used_at  DATETIME,
    revoked_at    DATETIME
);
CREATE INDEX ix_user_api_key_key_prefix ON user_api_key (key_prefix);
CREATE INDEX ix_user_api_key_user_id_created_at_desc ON user_api_key (user_id, created_at DESC, id DESC);

CREATE TABLE credit_history (
    id              CHAR(32) NOT NULL PRIMARY KEY
        CONSTRAINT ck_credit_history_id CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
    user_id         CHAR(32) NOT NULL,
    delta           NUMERIC(18, 9) NOT NULL
        CONSTRAINT ck_credit_history_delta CHECK (
            typeof(delta) IN ('integer', 'real')
            AND delta BETWEEN -999999.999999999 AND 999999.999999999),
    reason          VARCHAR(128) NOT NULL,
    source          VARCHAR(32) NOT NULL,
    external_id     VARCHAR(256),
    api_key_id      VARCHAR(36),
    created_at      DATETIME,
    -- Rust-only (PostgreSQL 0005): the caller's idempotency key, and the balance right after the row.
    idempotency_key TEXT,
    balance_after   NUMERIC(18, 9)
        CONSTRAINT ck_credit_history_balance_after CHECK (
            balance_after IS NULL OR (typeof(balance_after) IN ('integer', 'real')
            AND balance_after BETWEEN -999999.999999999 AND 999999.999999999))
);
CREATE INDEX idx_credit_history_api_key_id ON credit_history (api_key_id);
CREATE INDEX ix_credit_history_user_id_created_at_desc
    ON credit_history (user_id, created_at DESC, id DESC);
CREATE INDEX ix_credit_history_external_id_source ON credit_history (external_id, source);
CREATE UNIQUE INDEX uq_credit_history_usage_billing_final
    ON credit_history (external_id) WHERE source = 'usage_billing';
CREATE UNIQUE INDEX uq_credit_history_idempotency_key
    ON credit_history (idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE payment_record (
    id                  CHAR(32) NOT NULL PRIMARY KEY
        CONSTRAINT ck_payment_record_id CHECK (length(id) = 32 AND id NOT GLOB '*[^0-9a-f]*'),
    user_id             CHAR(32) NOT NULL,
    provider            VARCHAR(32) NOT NULL,
    provider_payment_id VARCHAR(256) NOT NULL,
    credits             NUMERIC(18, 9) NOT NULL
        CONSTRAINT ck_payment_record_credits CHECK (
            typeof(credits) IN ('integer', 'real')
            AND credits BETWEEN -999999.999999999 AND 999999.999999999),
    amount              INTEGER NOT NULL,
    currency            VARCHAR(16) NOT NULL,
    status              VARCHAR(32) NOT NULL,
    raw_payload         TEXT CONSTRAINT ck_payment_record_raw_payload CHECK (raw_payload IS NULL OR json_valid(raw_payload)),
    created_at          DATETIME
);
CREATE INDEX ix_payment_record_provider ON payment_record (provider);
CREATE INDEX ix_payment_record_provider_payment_id ON payment_record (provider_payment_id);
CREATE INDEX ix_payment_record_user_id_created_at_desc
    ON payment_record (user_id, created_at DESC, id DESC);
CREATE UNIQUE INDEX uq_payment_record_provider_payment_id
    ON payment_record (provider, provider_payment_id);

CREATE TABLE token_metrics (
    id                INTEGER NOT NULL PRIMARY KEY,
    "timestamp"       DATETIME NOT NULL,
    llm_model         VARCHAR(255) NOT NULL,
    task_id           VARCHAR(255),
    user_id           VARCHAR(255),
    api_key_id        VARCHAR(36),
    upstream_provider VARCHAR(255),
    upstream_model    VARCHAR(255),
    input_tokens      INTEGER,
    output_tokens     INTEGER,
    thinking_tokens   INTEGER,
    cost_usd          FLOAT,
    duration_seconds  FLOAT,
    success           BOOLEAN NOT NULL CONSTRAINT ck_token_metrics_success CHECK (success IN (0, 1)),
    error_message     TEXT,
    raw_usage_data    TEXT CONSTRAINT ck_token_metrics_raw_usage_data CHECK (raw_usage_data IS NULL OR json_valid(raw_usage_data))
);
CREATE INDEX ix_token_metrics_api_key_id ON token_metrics (api_key_id);
CREATE INDEX ix_token_metrics_llm_model ON token_metrics (llm_model);
CREATE INDEX ix_token_metrics_timestamp ON token_metrics ("timestamp");
CREATE INDEX ix_token_metrics_upstream_model ON token_metrics (upstream_model);
CREATE INDEX ix_token_metrics_upstream_provider ON token_metrics (upstream_provider);
CREATE INDEX ix_token_metrics_task_id_timestamp_desc ON token_metrics (task_id, "timestamp" DESC, id DESC);
CREATE INDEX ix_token_metrics_user_id_timestamp_desc ON token_metrics (user_id, "timestamp" DESC, id DESC);

CREATE TABLE feedback_item (
    id                VARCHAR(36) NOT NULL PRIMARY KEY,
    received_at       DATETIME NOT NULL,
    category          VARCHAR(32) NOT NULL,
    message           TEXT NOT NULL,
    plan_id           VARCHAR(36),
    rating            INTEGER,
    user_id           VARCHAR(36),
    plan_progress_pct FLOAT,
    plan_state        VARCHAR(16),
    plan_current_step VARCHAR(128)
);
CREATE INDEX ix_feedback_item_received_at ON feedback_item (received_at);
CREATE INDEX ix_feedback_item_plan_id_received_at_desc ON feedback_item (plan_id, received_at DESC, id DESC);
CREATE INDEX ix_feedback_item_user_id_received_at_desc ON feedback_item (user_id, received_at DESC, id DESC);
