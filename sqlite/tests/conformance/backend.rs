//! The one place where the two backends meet in the tests: [`Backend`], the planexe operations a
//! story uses, implemented once by [`Postgres`] (the library, on a fresh database of the
//! embedded cluster) and once by [`Sqlite`] (this crate, on a fresh file). A story is a generic
//! `async fn(B)`; [`conformance!`] makes one `#[tokio::test]` per backend of it.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use shared_db::Result;
use shared_db::planexe::credit_history::{BalanceChange, Charge};
use shared_db::planexe::events::Event;
use shared_db::planexe::plans::{Attempt, Claimed, NewPlan, Plan, Progress, ProgressAck, Reaped};
use shared_db::planexe::user_api_key::{
    ApiKeySecret, Authenticated, IssuedKey, KeyOptions, RawApiKey,
};
use shared_db::schema::SchemaStatus;
use uuid::Uuid;

/// A charge as the stories make it (owned, so a story can hand it to concurrent tasks).
#[derive(Debug, Clone, Default)]
pub struct ChargeArgs {
    pub user: Uuid,
    pub amount: Decimal,
    pub key: Option<String>,
    pub allow_negative: bool,
}

impl ChargeArgs {
    fn charge(&self) -> Charge<'_> {
        Charge {
            user_id: self.user,
            amount: self.amount,
            reason: "plan_created_with_usage_cost",
            source: "api",
            external_id: None,
            api_key_id: None,
            allow_negative: self.allow_negative,
            idempotency_key: self.key.as_deref(),
        }
    }
}

/// The secret the stories hash keys with.
pub fn secret() -> ApiKeySecret {
    ApiKeySecret::new("conformance-secret")
}

/// The planexe operations of the conformance stories, on one database.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Where the database stands (a fresh one is up to date).
    fn status(&self) -> impl Future<Output = SchemaStatus> + Send;
    fn enqueue(
        &self,
        prompt: &str,
        user: Option<&str>,
    ) -> impl Future<Output = Result<Uuid>> + Send;
    fn claim(&self, worker: &str) -> impl Future<Output = Result<Option<Claimed>>> + Send;
    fn count_pending(&self) -> impl Future<Output = Result<i64>> + Send;
    fn progress(
        &self,
        attempt: Attempt,
        percentage: Decimal,
    ) -> impl Future<Output = Result<ProgressAck>> + Send;
    fn complete(&self, attempt: Attempt) -> impl Future<Output = Result<()>> + Send;
    fn heartbeat(
        &self,
        worker: &str,
        current: Option<Attempt>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn reap(
        &self,
        threshold: Duration,
        max_requeues: u32,
    ) -> impl Future<Output = Result<Reaped>> + Send;
    fn plan(&self, id: Uuid) -> impl Future<Output = Result<Plan>> + Send;
    fn store_report(&self, attempt: Attempt, html: &str)
    -> impl Future<Output = Result<()>> + Send;
    fn report(&self, id: Uuid) -> impl Future<Output = Result<Option<String>>> + Send;
    fn events(&self, plan: Uuid) -> impl Future<Output = Result<Vec<Event>>> + Send;
    /// A user with a zero balance.
    fn new_user(&self) -> impl Future<Output = Result<Uuid>> + Send;
    fn grant(
        &self,
        user: Uuid,
        amount: Decimal,
        key: Option<&str>,
    ) -> impl Future<Output = Result<BalanceChange>> + Send;
    fn charge(&self, args: &ChargeArgs) -> impl Future<Output = Result<BalanceChange>> + Send;
    fn balance(&self, user: Uuid) -> impl Future<Output = Result<Decimal>> + Send;
    /// The user's ledger rows and the exact sum of their deltas.
    fn ledger(&self, user: Uuid) -> impl Future<Output = Result<(i64, Decimal)>> + Send;
    fn create_key(
        &self,
        user: Uuid,
        raw: &RawApiKey,
        label: Option<&str>,
    ) -> impl Future<Output = Result<IssuedKey>> + Send;
    fn authenticate(
        &self,
        raw: &RawApiKey,
    ) -> impl Future<Output = Result<Option<Authenticated>>> + Send;
    fn revoke(&self, user: Uuid, key: Uuid) -> impl Future<Output = Result<()>> + Send;
    /// Stored key columns as the table holds them: (key_hash, key_plaintext).
    fn stored_key(&self, key: Uuid) -> impl Future<Output = (String, Option<String>)> + Send;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: the library itself.

/// The library on a fresh database of the embedded cluster (`.0.pool()`, `.0.db()` for stories that
/// need more than [`Backend`]).
#[derive(Clone)]
pub struct Postgres(pub Arc<shared_db::testing::TestDatabase>);

impl Postgres {
    pub async fn fresh() -> Self {
        Postgres(Arc::new(
            shared_db::testing::TestDatabase::new().await.unwrap(),
        ))
    }
}

use shared_db::planexe as pg;

impl Backend for Postgres {
    async fn status(&self) -> SchemaStatus {
        self.0.db().status().await
    }
    async fn enqueue(&self, prompt: &str, user: Option<&str>) -> Result<Uuid> {
        let new = NewPlan {
            prompt,
            user_id: user,
            ..Default::default()
        };
        Ok(pg::plans::enqueue(self.0.pool(), &new).await?.id)
    }
    async fn claim(&self, worker: &str) -> Result<Option<Claimed>> {
        pg::plans::claim_next(self.0.pool(), worker).await
    }
    async fn count_pending(&self) -> Result<i64> {
        pg::plans::count_pending(self.0.pool()).await
    }
    async fn progress(&self, attempt: Attempt, percentage: Decimal) -> Result<ProgressAck> {
        let p = Progress {
            percentage,
            message: "working",
            ..Default::default()
        };
        pg::plans::update_progress(self.0.pool(), attempt, &p).await
    }
    async fn complete(&self, attempt: Attempt) -> Result<()> {
        pg::plans::finish_completed(self.0.pool(), attempt, None).await
    }
    async fn heartbeat(&self, worker: &str, current: Option<Attempt>) -> Result<()> {
        pg::workers::heartbeat(self.0.pool(), worker, current)
            .await
            .map(|_| ())
    }
    async fn reap(&self, threshold: Duration, max_requeues: u32) -> Result<Reaped> {
        pg::plans::requeue_stale(self.0.pool(), threshold, max_requeues).await
    }
    async fn plan(&self, id: Uuid) -> Result<Plan> {
        pg::plans::get(self.0.pool(), id).await
    }
    async fn store_report(&self, attempt: Attempt, html: &str) -> Result<()> {
        let a = pg::plans::Artifacts {
            report_html: Some(html),
            ..Default::default()
        };
        pg::plans::store_artifacts(self.0.pool(), attempt, &a).await
    }
    async fn report(&self, id: Uuid) -> Result<Option<String>> {
        pg::plans::fetch_report_html(self.0.pool(), id).await
    }
    async fn events(&self, plan: Uuid) -> Result<Vec<Event>> {
        pg::events::list_by_plan(self.0.pool(), plan, 200).await
    }
    async fn new_user(&self) -> Result<Uuid> {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!("user-{}", N.fetch_add(1, Ordering::Relaxed));
        let profile = pg::user_account::OAuthProfile {
            provider: "github",
            provider_user_id: &name,
            ..Default::default()
        };
        Ok(pg::user_account::sign_in(self.0.pool(), &profile)
            .await?
            .user
            .id)
    }
    async fn grant(&self, user: Uuid, amount: Decimal, key: Option<&str>) -> Result<BalanceChange> {
        let mut c = self.0.db().acquire().await?;
        pg::credit_history::grant(&mut c, user, amount, None, key).await
    }
    async fn charge(&self, args: &ChargeArgs) -> Result<BalanceChange> {
        let mut c = self.0.db().acquire().await?;
        pg::credit_history::charge(&mut c, &args.charge()).await
    }
    async fn balance(&self, user: Uuid) -> Result<Decimal> {
        Ok(pg::user_account::get(self.0.pool(), user)
            .await?
            .credits_balance)
    }
    async fn ledger(&self, user: Uuid) -> Result<(i64, Decimal)> {
        // A runtime query: this crate's query macros check against the SQLite schema.
        Ok(sqlx::query_as(
            "SELECT count(*), coalesce(sum(delta), 0) FROM credit_history WHERE user_id = $1",
        )
        .bind(user)
        .fetch_one(self.0.pool())
        .await?)
    }
    async fn create_key(
        &self,
        user: Uuid,
        raw: &RawApiKey,
        label: Option<&str>,
    ) -> Result<IssuedKey> {
        let mut c = self.0.db().acquire().await?;
        pg::user_api_key::create(&mut c, &secret(), user, raw, label, KeyOptions::default()).await
    }
    async fn authenticate(&self, raw: &RawApiKey) -> Result<Option<Authenticated>> {
        pg::user_api_key::authenticate(self.0.pool(), &secret(), raw).await
    }
    async fn revoke(&self, user: Uuid, key: Uuid) -> Result<()> {
        pg::user_api_key::revoke(self.0.pool(), user, key)
            .await
            .map(|_| ())
    }
    async fn stored_key(&self, key: Uuid) -> (String, Option<String>) {
        sqlx::query_as("SELECT key_hash, key_plaintext FROM user_api_key WHERE id = $1")
            .bind(key)
            .fetch_one(self.0.pool())
            .await
            .unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite: this crate, on a file of its own.

#[derive(Clone)]
pub struct Sqlite {
    pub db: shared_db_sqlite::Database,
}

/// A fresh file path under the target directory (leftovers of an earlier run removed).
pub fn fresh_file(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sqlite-conformance");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!(
        "{name}-{}-{}.db",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    for suffix in ["", "-wal", "-shm", ".migrate-lock"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    path
}

impl Sqlite {
    pub async fn fresh() -> Self {
        let path = fresh_file("story");
        let db = Self::open(&path, 8).await;
        db.db.migrate().await.unwrap();
        db
    }

    /// The file at `path`, with a pool of `connections`.
    pub async fn open(path: &std::path::Path, connections: u32) -> Self {
        let config = shared_db::Config {
            max_connections: connections,
            sqlite_busy_timeout: Duration::from_secs(30),
            ..shared_db::Config::new(format!("sqlite://{}", path.display()))
        };
        Sqlite {
            db: shared_db_sqlite::Database::connect(&config).await.unwrap(),
        }
    }
}

use shared_db_sqlite::planexe as lite;

impl Backend for Sqlite {
    async fn status(&self) -> SchemaStatus {
        self.db.status().await
    }
    async fn enqueue(&self, prompt: &str, user: Option<&str>) -> Result<Uuid> {
        let new = NewPlan {
            prompt,
            user_id: user,
            ..Default::default()
        };
        let mut c = self.db.acquire().await?;
        Ok(lite::plans::enqueue(&mut c, &new).await?.id)
    }
    async fn claim(&self, worker: &str) -> Result<Option<Claimed>> {
        let mut c = self.db.acquire().await?;
        lite::plans::claim_next(&mut c, worker).await
    }
    async fn count_pending(&self) -> Result<i64> {
        let mut c = self.db.acquire().await?;
        lite::plans::count_pending(&mut c).await
    }
    async fn progress(&self, attempt: Attempt, percentage: Decimal) -> Result<ProgressAck> {
        let p = Progress {
            percentage,
            message: "working",
            ..Default::default()
        };
        let mut c = self.db.acquire().await?;
        lite::plans::update_progress(&mut c, attempt, &p).await
    }
    async fn complete(&self, attempt: Attempt) -> Result<()> {
        let mut c = self.db.acquire().await?;
        lite::plans::finish_completed(&mut c, attempt, None).await
    }
    async fn heartbeat(&self, worker: &str, current: Option<Attempt>) -> Result<()> {
        let mut c = self.db.acquire().await?;
        lite::workers::heartbeat(&mut c, worker, current)
            .await
            .map(|_| ())
    }
    async fn reap(&self, threshold: Duration, max_requeues: u32) -> Result<Reaped> {
        let mut c = self.db.acquire().await?;
        lite::plans::requeue_stale(&mut c, threshold, max_requeues).await
    }
    async fn plan(&self, id: Uuid) -> Result<Plan> {
        let mut c = self.db.acquire().await?;
        lite::plans::get(&mut c, id).await
    }
    async fn store_report(&self, attempt: Attempt, html: &str) -> Result<()> {
        let mut c = self.db.acquire().await?;
        lite::plans::store_report_html(&mut c, attempt, html).await
    }
    async fn report(&self, id: Uuid) -> Result<Option<String>> {
        let mut c = self.db.acquire().await?;
        lite::plans::fetch_report_html(&mut c, id).await
    }
    async fn events(&self, plan: Uuid) -> Result<Vec<Event>> {
        let mut c = self.db.acquire().await?;
        lite::events::list_by_plan(&mut c, plan, 200).await
    }
    async fn new_user(&self) -> Result<Uuid> {
        let mut c = self.db.acquire().await?;
        lite::user_account::create(&mut c, None).await
    }
    async fn grant(&self, user: Uuid, amount: Decimal, key: Option<&str>) -> Result<BalanceChange> {
        let mut c = self.db.acquire().await?;
        lite::credit_history::grant(&mut c, user, amount, None, key).await
    }
    async fn charge(&self, args: &ChargeArgs) -> Result<BalanceChange> {
        let mut c = self.db.acquire().await?;
        lite::credit_history::charge(&mut c, &args.charge()).await
    }
    async fn balance(&self, user: Uuid) -> Result<Decimal> {
        let mut c = self.db.acquire().await?;
        lite::user_account::balance(&mut c, user).await
    }
    async fn ledger(&self, user: Uuid) -> Result<(i64, Decimal)> {
        let mut c = self.db.acquire().await?;
        lite::credit_history::ledger_sum(&mut c, user).await
    }
    async fn create_key(
        &self,
        user: Uuid,
        raw: &RawApiKey,
        label: Option<&str>,
    ) -> Result<IssuedKey> {
        let mut c = self.db.acquire().await?;
        lite::user_api_key::create(&mut c, &secret(), user, raw, label, KeyOptions::default()).await
    }
    async fn authenticate(&self, raw: &RawApiKey) -> Result<Option<Authenticated>> {
        let mut c = self.db.acquire().await?;
        lite::user_api_key::authenticate(&mut c, &secret(), raw).await
    }
    async fn revoke(&self, user: Uuid, key: Uuid) -> Result<()> {
        let mut c = self.db.acquire().await?;
        lite::user_api_key::revoke(&mut c, user, key).await
    }
    async fn stored_key(&self, key: Uuid) -> (String, Option<String>) {
        sqlx::query_as("SELECT key_hash, key_plaintext FROM user_api_key WHERE id = ?1")
            .bind(lite::hex(key))
            .fetch_one(self.db.pool())
            .await
            .unwrap()
    }
}

/// One `#[tokio::test]` per backend for each story: `conformance!(story_fn)` makes
/// `story_fn::postgres` and `story_fn::sqlite`.
#[macro_export]
macro_rules! conformance {
    ($($story:ident),* $(,)?) => {$(
        mod $story {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$story($crate::backend::Postgres::fresh().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$story($crate::backend::Sqlite::fresh().await).await;
            }
        }
    )*};
}
