//! Rows another writer left (the Python services, a newer release) never make a read fail, and
//! read the same on both backends: an unknown enum label is the `Unknown` variant carrying it,
//! SQL NULL in a nullable column is `None` (`stop_requested` NULL is `false`), the JSON text
//! `null` is absent like SQL NULL, a lone surrogate Python wrote for a cut-off emoji reads as
//! U+FFFD, reference columns hold whatever id text was written (hyphenated or hex), and
//! timestamps at the ends of Python's range (`datetime.min`, `datetime.max`) read back exactly.
//!
//! Each backend writes the rows the way that writer does on it, with raw SQL (test-only): on
//! PostgreSQL a new label is added to the enum type first (`ALTER TYPE … ADD VALUE`, what a newer
//! release does); on SQLite, where this release's CHECK names the labels it knows, the insert runs
//! with `ignore_check_constraints` standing in for a newer release's wider CHECK. Uuid columns
//! hold 32 hex digits on SQLite (SQLAlchemy's `UUIDType` there), `uuid` on PostgreSQL; money is
//! bound as the float SQLAlchemy's `Numeric` binds on SQLite.

use std::future::Future;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use shared_db::planexe::user_api_key::RawApiKey;
use shared_db::planexe::{EventType, PlanState};
use uuid::Uuid;

use crate::backend::{Backend, ChargeArgs, Postgres, Sqlite, secret};

/// A `plans` row as another writer leaves it: every column not named here is NULL.
#[derive(Debug, Clone, Default)]
pub struct ForeignPlan {
    pub id: Uuid,
    /// The label as stored.
    pub state: Option<String>,
    pub prompt: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS.ffffff`, UTC.
    pub timestamp_created: Option<String>,
    pub last_progress_at: Option<String>,
    pub progress_percentage: Option<f64>,
    pub user_id: Option<String>,
    pub api_key_id: Option<String>,
    /// JSON text as written.
    pub parameters: Option<String>,
    pub run_activity_overview_json: Option<String>,
}

/// An `events` row as another writer leaves it.
#[derive(Debug, Clone)]
pub struct ForeignEvent {
    pub label: String,
    pub message: String,
    pub timestamp: String,
    pub context: Option<String>,
}

/// Raw writes of another service, per backend.
pub trait OtherWriterBackend: Backend {
    fn insert_plan(&self, row: &ForeignPlan) -> impl Future<Output = ()> + Send;
    fn insert_event(&self, row: &ForeignEvent) -> impl Future<Output = ()> + Send;
    /// A user as the frontend's sign-up leaves it: the required columns, every other one NULL.
    fn insert_user(&self, id: Uuid, balance: f64) -> impl Future<Output = ()> + Send;
    /// A ledger row as the Python services write it (no idempotency key, no `balance_after`).
    fn insert_ledger_row(
        &self,
        user: Uuid,
        delta: f64,
        external_id: Option<String>,
        created_at: Option<&str>,
    ) -> impl Future<Output = ()> + Send;
    /// An API key as the frontend issues it: the hash of the one scheme, the prefix, and NULL
    /// label, plaintext and creation time.
    fn insert_key(
        &self,
        id: Uuid,
        user: Uuid,
        raw: &RawApiKey,
        last_used_at: Option<&str>,
        revoked_at: Option<&str>,
    ) -> impl Future<Output = ()> + Send;
    /// A ledger row whose owner id was bound as the string `owner` (any spelling of a uuid).
    fn insert_ledger_row_owned_by(
        &self,
        owner: &str,
        delta: f64,
    ) -> impl Future<Output = ()> + Send;
    /// An API key whose owner id was bound as the string `owner`.
    fn insert_key_owned_by(
        &self,
        id: Uuid,
        owner: &str,
        raw: &RawApiKey,
    ) -> impl Future<Output = ()> + Send;
}

const OLDEST: &str = "0001-01-01 00:00:00.000000";
const NEWEST: &str = "9999-12-31 23:59:59.999999";

fn oldest() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(1, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

fn newest() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .unwrap()
        .and_hms_micro_opt(23, 59, 59, 999_999)
        .unwrap()
        .and_utc()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

conformance!(
    a_plan_another_service_wrote_reads_with_the_documented_fallbacks,
    events_another_service_wrote_list_with_unknown_kinds_and_repaired_text,
    money_another_service_wrote_keeps_balance_and_ledger_exact,
    api_keys_another_service_issued_authenticate,
    owner_ids_spelled_another_way_still_belong_to_their_owner,
);

async fn a_plan_another_service_wrote_reads_with_the_documented_fallbacks<B: OtherWriterBackend>(
    b: B,
) {
    // A newer release's state, and nothing else: every nullable column NULL.
    let archived = Uuid::new_v4();
    b.insert_plan(&ForeignPlan {
        id: archived,
        state: Some("archived".into()),
        ..Default::default()
    })
    .await;
    let plan = b.plan(archived).await.expect("an unknown label reads");
    assert!(
        matches!(&plan.state, Some(PlanState::Unknown(l)) if l == "archived"),
        "{:?}",
        plan.state
    );
    assert_eq!(plan.id, archived);
    assert_eq!(plan.prompt, None);
    assert_eq!(plan.timestamp_created, None);
    assert_eq!(plan.progress_percentage, None);
    assert!(!plan.stop_requested, "NULL stop_requested is no stop");
    assert_eq!(plan.parameters, None);
    assert_eq!(plan.run_activity_overview_json, None);
    assert_eq!(plan.recoverable, None);
    assert!(!plan.has_generated_report_html);

    // No state at all, JSON `null` parameters, a cut-off emoji in the overview, ids as text in
    // both forms, and the ends of Python's datetime range.
    let owner = Uuid::new_v4();
    let key = Uuid::new_v4();
    let odd = Uuid::new_v4();
    b.insert_plan(&ForeignPlan {
        id: odd,
        state: None,
        prompt: Some("written by Python".into()),
        timestamp_created: Some(OLDEST.into()),
        last_progress_at: Some(NEWEST.into()),
        progress_percentage: Some(33.33),
        user_id: Some(owner.simple().to_string()),
        api_key_id: Some(key.to_string()),
        parameters: Some("null".into()),
        run_activity_overview_json: Some(r#"{"note": "cut \ud83d", "steps": 3}"#.into()),
    })
    .await;
    let plan = b.plan(odd).await.expect("reads");
    assert_eq!(plan.state, None);
    assert_eq!(plan.prompt.as_deref(), Some("written by Python"));
    assert_eq!(plan.timestamp_created, Some(oldest()));
    assert_eq!(plan.last_progress_at, Some(newest()));
    assert_eq!(plan.progress_percentage, Some(d("33.33")));
    assert_eq!(
        plan.user_id.as_deref(),
        Some(owner.simple().to_string().as_str())
    );
    assert_eq!(plan.api_key_id.as_deref(), Some(key.to_string().as_str()));
    assert_eq!(plan.parameters, None, "JSON null is absent");
    assert_eq!(
        plan.run_activity_overview_json.as_deref(),
        Some(&json!({"note": "cut \u{fffd}", "steps": 3}))
    );

    // Neither is a queued plan: the queue hands out neither.
    assert_eq!(b.count_pending().await.unwrap(), 0);
    assert!(b.claim("w").await.unwrap().is_none());
    assert_eq!(
        b.plan(archived).await.unwrap().state,
        plan_state("archived")
    );
}

fn plan_state(label: &str) -> Option<PlanState> {
    Some(PlanState::from_label(label))
}

async fn events_another_service_wrote_list_with_unknown_kinds_and_repaired_text<
    B: OtherWriterBackend,
>(
    b: B,
) {
    let plan = Uuid::new_v4();
    let task = plan.to_string();
    b.insert_event(&ForeignEvent {
        label: "TASK_ARCHIVED".into(),
        message: "archived by a newer release".into(),
        timestamp: OLDEST.into(),
        context: Some(format!(r#"{{"task_id": "{task}", "by": "cleanup"}}"#)),
    })
    .await;
    b.insert_event(&ForeignEvent {
        label: "GENERIC_EVENT".into(),
        message: "progress".into(),
        timestamp: NEWEST.into(),
        context: Some(format!(r#"{{"task_id": "{task}", "text": "cut \ud83d"}}"#)),
    })
    .await;
    // Another plan's event, by its hex id: not this plan's (the reference is the hyphenated id).
    b.insert_event(&ForeignEvent {
        label: "GENERIC_EVENT".into(),
        message: "someone else's".into(),
        timestamp: NEWEST.into(),
        context: Some(format!(r#"{{"task_id": "{}"}}"#, plan.simple())),
    })
    .await;

    let events = b
        .events(plan)
        .await
        .expect("an event list never fails on a row");
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        matches!(&events[0].event_type, EventType::Unknown(l) if l == "TASK_ARCHIVED"),
        "{:?}",
        events[0].event_type
    );
    assert_eq!(events[0].timestamp, oldest());
    assert_eq!(
        events[0].context.as_deref(),
        Some(&json!({"task_id": task, "by": "cleanup"}))
    );
    assert_eq!(events[1].event_type, EventType::GenericEvent);
    assert_eq!(events[1].timestamp, newest());
    assert_eq!(
        events[1].context.as_deref(),
        Some(&json!({"task_id": task, "text": "cut \u{fffd}"}))
    );
}

async fn money_another_service_wrote_keeps_balance_and_ledger_exact<B: OtherWriterBackend>(b: B) {
    let user = Uuid::new_v4();
    b.insert_user(user, 12.500000001).await;
    let plan = Uuid::new_v4();
    b.insert_ledger_row(user, 20.0, None, None).await;
    b.insert_ledger_row(user, -7.5, Some(plan.to_string()), Some(NEWEST))
        .await;
    // The smallest credit (SQLite prints that double in exponent form: 1.0e-09).
    b.insert_ledger_row(user, 0.000000001, None, Some(OLDEST))
        .await;

    assert_eq!(b.balance(user).await.unwrap(), d("12.500000001"));
    assert_eq!(b.ledger(user).await.unwrap(), (3, d("12.500000001")));

    // The library's own writes carry on from those rows.
    let charged = b
        .charge(&ChargeArgs {
            user,
            amount: d("2.5"),
            key: Some("after-python".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(charged.new_balance, d("10.000000001"));
    b.grant(user, d("0.1"), None).await.unwrap();
    assert_eq!(b.balance(user).await.unwrap(), d("10.100000001"));
    assert_eq!(b.ledger(user).await.unwrap(), (5, d("10.100000001")));
}

async fn api_keys_another_service_issued_authenticate<B: OtherWriterBackend>(b: B) {
    let user = Uuid::new_v4();
    b.insert_user(user, 3.0).await;

    let fresh = RawApiKey::generate().unwrap();
    let fresh_id = Uuid::new_v4();
    b.insert_key(fresh_id, user, &fresh, None, None).await;
    let auth = b
        .authenticate(&fresh)
        .await
        .unwrap()
        .expect("authenticated");
    assert_eq!(auth.user_id, user);
    assert_eq!(auth.api_key_id, fresh_id);
    assert_eq!(auth.credits_balance, d("3"));

    // Last used at the end of time (a clock gone wrong): still authenticates.
    let future = RawApiKey::generate().unwrap();
    let future_id = Uuid::new_v4();
    b.insert_key(future_id, user, &future, Some(NEWEST), None)
        .await;
    let auth = b
        .authenticate(&future)
        .await
        .unwrap()
        .expect("authenticated");
    assert_eq!(auth.api_key_id, future_id);

    // Revoked by the frontend: refused.
    let revoked = RawApiKey::generate().unwrap();
    b.insert_key(Uuid::new_v4(), user, &revoked, None, Some(OLDEST))
        .await;
    assert_eq!(b.authenticate(&revoked).await.unwrap(), None);

    // A key whose user row is gone (no foreign keys): refused, not an error.
    let orphan = RawApiKey::generate().unwrap();
    b.insert_key(Uuid::new_v4(), Uuid::new_v4(), &orphan, None, None)
        .await;
    assert_eq!(b.authenticate(&orphan).await.unwrap(), None);
}

/// A writer that binds owner ids as strings (hyphenated, in capitals) still writes the owner's
/// rows: PostgreSQL's uuid type reads every spelling as one value, and SQLite rewrites them to
/// its one spelling as they are written (migration 0003). Before that, such a ledger row was left
/// out of the owner's sum and such a key never authenticated on SQLite.
async fn owner_ids_spelled_another_way_still_belong_to_their_owner<B: OtherWriterBackend>(b: B) {
    let user = Uuid::new_v4();
    b.insert_user(user, 6.0).await;
    let hyphenated = user.hyphenated().to_string();
    b.insert_ledger_row_owned_by(&hyphenated, 2.0).await;
    b.insert_ledger_row_owned_by(&user.simple().to_string().to_uppercase(), 3.0)
        .await;
    b.insert_ledger_row_owned_by(&hyphenated.to_uppercase(), 1.0)
        .await;
    assert_eq!(b.ledger(user).await.unwrap(), (3, d("6")));

    let raw = RawApiKey::generate().unwrap();
    let key = Uuid::new_v4();
    b.insert_key_owned_by(key, &hyphenated, &raw).await;
    let auth = b
        .authenticate(&raw)
        .await
        .unwrap()
        .expect("the key of its owner");
    assert_eq!((auth.user_id, auth.api_key_id), (user, key));

    // The library's own writes carry on from those rows.
    let charged = b
        .charge(&ChargeArgs {
            user,
            amount: d("6"),
            key: Some("spelled".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(charged.new_balance, Decimal::ZERO);
    assert_eq!(b.ledger(user).await.unwrap(), (4, Decimal::ZERO));
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: uuid columns, the enum types, json, numeric, timestamp.

impl OtherWriterBackend for Postgres {
    async fn insert_plan(&self, row: &ForeignPlan) {
        if let Some(label) = &row.state {
            // What a newer release's migration does; a no-op for a label the type has.
            let add = format!("ALTER TYPE planstate ADD VALUE IF NOT EXISTS '{label}'");
            sqlx::raw_sql(sqlx::AssertSqlSafe(add))
                .execute(self.0.pool())
                .await
                .unwrap();
        }
        sqlx::query(
            "INSERT INTO plans (id, state, prompt, timestamp_created, last_progress_at,
                                progress_percentage, user_id, api_key_id, parameters,
                                run_activity_overview_json)
             VALUES ($1, $2::text::planstate, $3, $4::timestamp, $5::timestamp,
                     $6::float8::numeric, $7, $8, $9::json, $10::json)",
        )
        .bind(row.id)
        .bind(&row.state)
        .bind(&row.prompt)
        .bind(&row.timestamp_created)
        .bind(&row.last_progress_at)
        .bind(row.progress_percentage)
        .bind(&row.user_id)
        .bind(&row.api_key_id)
        .bind(&row.parameters)
        .bind(&row.run_activity_overview_json)
        .execute(self.0.pool())
        .await
        .unwrap();
    }
    async fn insert_event(&self, row: &ForeignEvent) {
        let add = format!(
            "ALTER TYPE eventtype ADD VALUE IF NOT EXISTS '{}'",
            row.label
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(add))
            .execute(self.0.pool())
            .await
            .unwrap();
        sqlx::query(
            r#"INSERT INTO events ("timestamp", event_type, message, context)
               VALUES ($1::timestamp, $2::text::eventtype, $3, $4::json)"#,
        )
        .bind(&row.timestamp)
        .bind(&row.label)
        .bind(&row.message)
        .bind(&row.context)
        .execute(self.0.pool())
        .await
        .unwrap();
    }
    async fn insert_user(&self, id: Uuid, balance: f64) {
        sqlx::query(
            "INSERT INTO user_account (id, is_admin, free_plan_used, credits_balance)
             VALUES ($1, false, false, $2::float8::numeric)",
        )
        .bind(id)
        .bind(balance)
        .execute(self.0.pool())
        .await
        .unwrap();
    }
    async fn insert_ledger_row(
        &self,
        user: Uuid,
        delta: f64,
        external_id: Option<String>,
        created_at: Option<&str>,
    ) {
        sqlx::query(
            "INSERT INTO credit_history (id, user_id, delta, reason, source, external_id,
                                         created_at)
             VALUES ($1, $2, $3::float8::numeric, 'python', 'web', $4, $5::timestamp)",
        )
        .bind(Uuid::new_v4())
        .bind(user)
        .bind(delta)
        .bind(external_id)
        .bind(created_at)
        .execute(self.0.pool())
        .await
        .unwrap();
    }
    async fn insert_key(
        &self,
        id: Uuid,
        user: Uuid,
        raw: &RawApiKey,
        last_used_at: Option<&str>,
        revoked_at: Option<&str>,
    ) {
        sqlx::query(
            "INSERT INTO user_api_key (id, user_id, key_hash, key_prefix, last_used_at,
                                       revoked_at)
             VALUES ($1, $2, $3, $4, $5::timestamp, $6::timestamp)",
        )
        .bind(id)
        .bind(user)
        .bind(raw.hash(&secret()))
        .bind(&raw.expose()[..10])
        .bind(last_used_at)
        .bind(revoked_at)
        .execute(self.0.pool())
        .await
        .unwrap();
    }
    async fn insert_ledger_row_owned_by(&self, owner: &str, delta: f64) {
        sqlx::query(
            "INSERT INTO credit_history (id, user_id, delta, reason, source)
             VALUES ($1, $2::uuid, $3::float8::numeric, 'python', 'web')",
        )
        .bind(Uuid::new_v4())
        .bind(owner)
        .bind(delta)
        .execute(self.0.pool())
        .await
        .unwrap();
    }
    async fn insert_key_owned_by(&self, id: Uuid, owner: &str, raw: &RawApiKey) {
        sqlx::query(
            "INSERT INTO user_api_key (id, user_id, key_hash, key_prefix)
             VALUES ($1, $2::uuid, $3, $4)",
        )
        .bind(id)
        .bind(owner)
        .bind(raw.hash(&secret()))
        .bind(&raw.expose()[..10])
        .execute(self.0.pool())
        .await
        .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite: CHAR(32) hex ids, enum names as text, JSON as text, money as a float.

impl Sqlite {
    /// Runs `sql` (bound by `bind`) on one connection with this release's CHECKs off, as a
    /// newer release's wider CHECK would let it through.
    async fn insert_unchecked(
        &self,
        query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) {
        let mut conn = self.db.acquire().await.unwrap();
        sqlx::raw_sql("PRAGMA ignore_check_constraints = ON")
            .execute(&mut *conn)
            .await
            .unwrap();
        let done = query.execute(&mut *conn).await;
        sqlx::raw_sql("PRAGMA ignore_check_constraints = OFF")
            .execute(&mut *conn)
            .await
            .unwrap();
        done.unwrap();
    }
}

use shared_db_sqlite::planexe::hex;

impl OtherWriterBackend for Sqlite {
    async fn insert_plan(&self, row: &ForeignPlan) {
        self.insert_unchecked(
            sqlx::query(
                "INSERT INTO plans (id, state, prompt, timestamp_created, last_progress_at,
                                    progress_percentage, user_id, api_key_id, parameters,
                                    run_activity_overview_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .bind(hex(row.id))
            .bind(row.state.clone())
            .bind(row.prompt.clone())
            .bind(row.timestamp_created.clone())
            .bind(row.last_progress_at.clone())
            .bind(row.progress_percentage)
            .bind(row.user_id.clone())
            .bind(row.api_key_id.clone())
            .bind(row.parameters.clone())
            .bind(row.run_activity_overview_json.clone()),
        )
        .await;
    }
    async fn insert_event(&self, row: &ForeignEvent) {
        self.insert_unchecked(
            sqlx::query(
                r#"INSERT INTO events ("timestamp", event_type, message, context)
                   VALUES (?1, ?2, ?3, ?4)"#,
            )
            .bind(row.timestamp.clone())
            .bind(row.label.clone())
            .bind(row.message.clone())
            .bind(row.context.clone()),
        )
        .await;
    }
    async fn insert_user(&self, id: Uuid, balance: f64) {
        sqlx::query(
            "INSERT INTO user_account (id, is_admin, free_plan_used, credits_balance)
             VALUES (?1, 0, 0, ?2)",
        )
        .bind(hex(id))
        .bind(balance)
        .execute(self.db.pool())
        .await
        .unwrap();
    }
    async fn insert_ledger_row(
        &self,
        user: Uuid,
        delta: f64,
        external_id: Option<String>,
        created_at: Option<&str>,
    ) {
        sqlx::query(
            "INSERT INTO credit_history (id, user_id, delta, reason, source, external_id,
                                         created_at)
             VALUES (?1, ?2, ?3, 'python', 'web', ?4, ?5)",
        )
        .bind(hex(Uuid::new_v4()))
        .bind(hex(user))
        .bind(delta)
        .bind(external_id)
        .bind(created_at.map(str::to_owned))
        .execute(self.db.pool())
        .await
        .unwrap();
    }
    async fn insert_key(
        &self,
        id: Uuid,
        user: Uuid,
        raw: &RawApiKey,
        last_used_at: Option<&str>,
        revoked_at: Option<&str>,
    ) {
        sqlx::query(
            "INSERT INTO user_api_key (id, user_id, key_hash, key_prefix, last_used_at,
                                       revoked_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(hex(id))
        .bind(hex(user))
        .bind(raw.hash(&secret()))
        .bind(raw.expose()[..10].to_owned())
        .bind(last_used_at.map(str::to_owned))
        .bind(revoked_at.map(str::to_owned))
        .execute(self.db.pool())
        .await
        .unwrap();
    }
    async fn insert_ledger_row_owned_by(&self, owner: &str, delta: f64) {
        sqlx::query(
            "INSERT INTO credit_history (id, user_id, delta, reason, source)
             VALUES (?1, ?2, ?3, 'python', 'web')",
        )
        .bind(hex(Uuid::new_v4()))
        .bind(owner.to_owned())
        .bind(delta)
        .execute(self.db.pool())
        .await
        .unwrap();
    }
    async fn insert_key_owned_by(&self, id: Uuid, owner: &str, raw: &RawApiKey) {
        sqlx::query(
            "INSERT INTO user_api_key (id, user_id, key_hash, key_prefix)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(hex(id))
        .bind(owner.to_owned())
        .bind(raw.hash(&secret()))
        .bind(raw.expose()[..10].to_owned())
        .execute(self.db.pool())
        .await
        .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite only: text that PostgreSQL's column types would refuse at the write, so only a SQLite
// file can hold it.

/// JSON text that does not parse (possible past this release's `json_valid` CHECK, e.g. a
/// newer release that dropped it) reads as absent, like SQL NULL; every text form of a time the
/// SQLite writers use (no fraction, ISO `T` with `Z`) reads as that instant. Neither fails a read
/// or the claim.
#[tokio::test]
async fn on_sqlite_unparseable_json_reads_as_absent_and_each_written_time_form_reads() {
    let b = Sqlite::fresh().await;
    let id = Uuid::new_v4();
    b.insert_plan(&ForeignPlan {
        id,
        state: Some("pending".into()),
        prompt: Some("odd text".into()),
        timestamp_created: Some("2026-01-02 03:04:05".into()),
        last_progress_at: Some("2026-01-02T03:04:05.5Z".into()),
        parameters: Some("{not json".into()),
        run_activity_overview_json: Some("[1, 2".into()),
        ..Default::default()
    })
    .await;
    let at = NaiveDate::from_ymd_opt(2026, 1, 2)
        .unwrap()
        .and_hms_opt(3, 4, 5)
        .unwrap()
        .and_utc();

    let plan = b.plan(id).await.expect("reads");
    assert_eq!(plan.parameters, None);
    assert_eq!(plan.run_activity_overview_json, None);
    assert_eq!(plan.timestamp_created, Some(at));
    assert_eq!(
        plan.last_progress_at,
        Some(at + chrono::Duration::milliseconds(500))
    );
    let claimed = b.claim("w").await.unwrap().expect("claimed like any plan");
    assert_eq!(claimed.plan.id, id);
    assert_eq!(claimed.plan.parameters, None);
}
