//! Accounts on both backends: OAuth sign-in and its provider links, the free first plan, the
//! admin account and who pays for a plan, and payments applied exactly once. Each story runs as
//! `accounts::<story>::postgres` and `accounts::<story>::sqlite`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared_db::planexe::payment_record::{NewPayment, PaymentOutcome, PaymentRecord};
use shared_db::planexe::user_account::{OAuthProfile, SignIn, UserAccount, admin_id};
use shared_db::planexe::user_provider::UserProvider;
use shared_db::planexe::{Keyset, MAX_PAGE_ROWS};
use shared_db::{Error, Result};
use uuid::Uuid;

use crate::backend::{Backend, Postgres, Sqlite};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

/// A sign-in as the stories make it (owned, so a story can hand it to concurrent tasks).
#[derive(Debug, Clone, Default)]
pub struct SignInArgs {
    pub provider: String,
    pub provider_user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub raw_profile: Option<Value>,
}

impl SignInArgs {
    fn new(provider: &str, provider_user_id: &str) -> Self {
        SignInArgs {
            provider: provider.to_owned(),
            provider_user_id: provider_user_id.to_owned(),
            ..Default::default()
        }
    }
    fn email(mut self, email: &str) -> Self {
        self.email = Some(email.to_owned());
        self
    }
    fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }
    fn profile(&self) -> OAuthProfile<'_> {
        OAuthProfile {
            provider: &self.provider,
            provider_user_id: &self.provider_user_id,
            email: self.email.as_deref(),
            name: self.name.as_deref(),
            raw_profile: self.raw_profile.as_ref(),
            ..Default::default()
        }
    }
}

/// A payment as the stories make it (owned, for concurrent tasks).
#[derive(Debug, Clone)]
pub struct PaymentArgs {
    pub user: Uuid,
    pub provider: String,
    pub id: String,
    pub credits: Decimal,
    pub amount: i32,
    pub currency: String,
    pub raw_payload: Option<Value>,
}

impl PaymentArgs {
    fn stripe(user: Uuid, id: &str, credits: &str) -> Self {
        PaymentArgs {
            user,
            provider: "stripe".to_owned(),
            id: id.to_owned(),
            credits: d(credits),
            amount: 1000,
            currency: "usd".to_owned(),
            raw_payload: Some(json!({ "id": id, "object": "checkout.session" })),
        }
    }
    fn payment(&self) -> NewPayment<'_> {
        NewPayment {
            user_id: self.user,
            provider: &self.provider,
            provider_payment_id: &self.id,
            credits: self.credits,
            amount: self.amount,
            currency: &self.currency,
            raw_payload: self.raw_payload.as_ref(),
        }
    }
}

/// The account operations of these stories, on one database.
pub trait AccountsBackend: Backend {
    fn sign_in(&self, who: &SignInArgs) -> impl Future<Output = Result<SignIn>> + Send;
    fn user(&self, id: Uuid) -> impl Future<Output = Result<UserAccount>> + Send;
    fn link(
        &self,
        provider: &str,
        provider_user_id: &str,
    ) -> impl Future<Output = Result<UserProvider>> + Send;
    fn links(&self, user: Uuid) -> impl Future<Output = Result<Vec<UserProvider>>> + Send;
    fn claim_free_plan(&self, user: Uuid, key: &str) -> impl Future<Output = Result<bool>> + Send;
    fn ensure_admin(&self, name: &str) -> impl Future<Output = Result<UserAccount>> + Send;
    fn billing_user(
        &self,
        plan_user_id: Option<&str>,
    ) -> impl Future<Output = Result<Option<Uuid>>> + Send;
    fn apply(&self, p: &PaymentArgs) -> impl Future<Output = Result<PaymentOutcome>> + Send;
    fn payment(
        &self,
        provider: &str,
        id: &str,
    ) -> impl Future<Output = Result<PaymentRecord>> + Send;
    fn payments(
        &self,
        user: Uuid,
        page: Keyset<Uuid>,
    ) -> impl Future<Output = Result<Vec<PaymentRecord>>> + Send;
    /// Deletes a user row behind the library's back, as the Python two-commit sign-in can leave
    /// a link without its user.
    fn delete_user_row(&self, id: Uuid) -> impl Future<Output = ()> + Send;
    /// Records a completed payment the way the Python frontend does (its own row, no ledger
    /// outcome to replay), with a `created_at` or (`dated` false) without one; returns its id.
    fn record_payment_as_python(
        &self,
        p: &PaymentArgs,
        dated: bool,
    ) -> impl Future<Output = Uuid> + Send;
}

use shared_db::planexe as pg;

impl AccountsBackend for Postgres {
    async fn sign_in(&self, who: &SignInArgs) -> Result<SignIn> {
        pg::user_account::sign_in(self.0.pool(), &who.profile()).await
    }
    async fn user(&self, id: Uuid) -> Result<UserAccount> {
        pg::user_account::get(self.0.pool(), id).await
    }
    async fn link(&self, provider: &str, provider_user_id: &str) -> Result<UserProvider> {
        pg::user_provider::get_by_identity(self.0.pool(), provider, provider_user_id).await
    }
    async fn links(&self, user: Uuid) -> Result<Vec<UserProvider>> {
        pg::user_provider::list_for_user(self.0.pool(), user).await
    }
    async fn claim_free_plan(&self, user: Uuid, key: &str) -> Result<bool> {
        pg::user_account::claim_free_plan(self.0.pool(), user, key).await
    }
    async fn ensure_admin(&self, name: &str) -> Result<UserAccount> {
        pg::user_account::ensure_admin(self.0.pool(), name).await
    }
    async fn billing_user(&self, plan_user_id: Option<&str>) -> Result<Option<Uuid>> {
        pg::user_account::billing_user_for_plan(self.0.pool(), plan_user_id).await
    }
    async fn apply(&self, p: &PaymentArgs) -> Result<PaymentOutcome> {
        let mut c = self.0.db().acquire().await?;
        pg::payment_record::apply(&mut c, &p.payment()).await
    }
    async fn payment(&self, provider: &str, id: &str) -> Result<PaymentRecord> {
        pg::payment_record::get_by_provider_id(self.0.pool(), provider, id).await
    }
    async fn payments(&self, user: Uuid, page: Keyset<Uuid>) -> Result<Vec<PaymentRecord>> {
        pg::payment_record::list_for_user(self.0.pool(), user, page).await
    }
    async fn delete_user_row(&self, id: Uuid) {
        // Runtime queries: this crate's query macros check against the SQLite schema.
        sqlx::query("DELETE FROM user_account WHERE id = $1")
            .bind(id)
            .execute(self.0.pool())
            .await
            .unwrap();
    }
    async fn record_payment_as_python(&self, p: &PaymentArgs, dated: bool) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO payment_record (id, user_id, provider, provider_payment_id, credits,
                                         amount, currency, status, raw_payload, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'completed', NULL,
                     CASE WHEN $8 THEN now() AT TIME ZONE 'utc' END)",
        )
        .bind(id)
        .bind(p.user)
        .bind(&p.provider)
        .bind(&p.id)
        .bind(p.credits)
        .bind(p.amount)
        .bind(&p.currency)
        .bind(dated)
        .execute(self.0.pool())
        .await
        .unwrap();
        id
    }
}

use shared_db_sqlite::planexe as lite;

impl AccountsBackend for Sqlite {
    async fn sign_in(&self, who: &SignInArgs) -> Result<SignIn> {
        let mut c = self.db.acquire().await?;
        lite::user_account::sign_in(&mut c, &who.profile()).await
    }
    async fn user(&self, id: Uuid) -> Result<UserAccount> {
        let mut c = self.db.acquire().await?;
        lite::user_account::get(&mut c, id).await
    }
    async fn link(&self, provider: &str, provider_user_id: &str) -> Result<UserProvider> {
        let mut c = self.db.acquire().await?;
        lite::user_provider::get_by_identity(&mut c, provider, provider_user_id).await
    }
    async fn links(&self, user: Uuid) -> Result<Vec<UserProvider>> {
        let mut c = self.db.acquire().await?;
        lite::user_provider::list_for_user(&mut c, user).await
    }
    async fn claim_free_plan(&self, user: Uuid, key: &str) -> Result<bool> {
        let mut c = self.db.acquire().await?;
        lite::user_account::claim_free_plan(&mut c, user, key).await
    }
    async fn ensure_admin(&self, name: &str) -> Result<UserAccount> {
        let mut c = self.db.acquire().await?;
        lite::user_account::ensure_admin(&mut c, name).await
    }
    async fn billing_user(&self, plan_user_id: Option<&str>) -> Result<Option<Uuid>> {
        let mut c = self.db.acquire().await?;
        lite::user_account::billing_user_for_plan(&mut c, plan_user_id).await
    }
    async fn apply(&self, p: &PaymentArgs) -> Result<PaymentOutcome> {
        let mut c = self.db.acquire().await?;
        lite::payment_record::apply(&mut c, &p.payment()).await
    }
    async fn payment(&self, provider: &str, id: &str) -> Result<PaymentRecord> {
        let mut c = self.db.acquire().await?;
        lite::payment_record::get_by_provider_id(&mut c, provider, id).await
    }
    async fn payments(&self, user: Uuid, page: Keyset<Uuid>) -> Result<Vec<PaymentRecord>> {
        let mut c = self.db.acquire().await?;
        lite::payment_record::list_for_user(&mut c, user, page).await
    }
    async fn delete_user_row(&self, id: Uuid) {
        sqlx::query("DELETE FROM user_account WHERE id = ?1")
            .bind(lite::hex(id))
            .execute(self.db.pool())
            .await
            .unwrap();
    }
    async fn record_payment_as_python(&self, p: &PaymentArgs, dated: bool) -> Uuid {
        let id = Uuid::new_v4();
        // SQLAlchemy binds the Numeric as a float.
        let credits: f64 = p.credits.to_string().parse().unwrap();
        sqlx::query(
            "INSERT INTO payment_record (id, user_id, provider, provider_payment_id, credits,
                                         amount, currency, status, raw_payload, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'completed', NULL,
                     CASE WHEN ?8 THEN strftime('%Y-%m-%d %H:%M:%f000', 'now') END)",
        )
        .bind(lite::hex(id))
        .bind(lite::hex(p.user))
        .bind(&p.provider)
        .bind(&p.id)
        .bind(credits)
        .bind(p.amount)
        .bind(&p.currency)
        .bind(dated)
        .execute(self.db.pool())
        .await
        .unwrap();
        id
    }
}

conformance!(
    a_first_sign_in_creates_the_user_and_later_sign_ins_find_it,
    concurrent_first_sign_ins_of_one_identity_make_one_user,
    a_link_whose_user_row_is_missing_gets_its_user_back,
    the_free_plan_is_used_once_even_by_concurrent_claims,
    the_admin_account_is_made_once_and_pays_for_plans_without_an_owner,
    a_replayed_payment_credits_once_and_answers_the_first_outcome,
    concurrent_deliveries_of_payments_credit_each_once,
    a_payment_python_recorded_is_a_duplicate_and_credits_nothing,
    payments_are_listed_newest_first_in_bounded_pages,
    account_input_rules_refuse_what_they_refuse_on_both_backends,
);

async fn a_first_sign_in_creates_the_user_and_later_sign_ins_find_it<B: AccountsBackend>(b: B) {
    let mut octocat = SignInArgs::new("github", "583231")
        .email("octocat@example.com")
        .name("Octo Cat");
    octocat.raw_profile = Some(json!({ "login": "octocat", "id": 583231 }));
    let first = b.sign_in(&octocat).await.unwrap();
    assert!(first.created, "the first sign-in makes the user");
    let user = first.user;
    assert_eq!(user.email.as_deref(), Some("octocat@example.com"));
    assert_eq!(user.name.as_deref(), Some("Octo Cat"));
    assert!(!user.is_admin);
    assert!(!user.free_plan_used);
    assert_eq!(user.credits_balance, Decimal::ZERO);
    assert!(user.last_login_at.is_some());
    assert_eq!(
        b.user(user.id).await.unwrap(),
        user,
        "read back as returned"
    );

    // A later sign-in finds the user; an empty e-mail keeps the stored one, a new name replaces it.
    let again = SignInArgs::new("github", "583231")
        .email("")
        .name("The Octocat");
    let later = b.sign_in(&again).await.unwrap();
    assert!(!later.created);
    assert_eq!(later.user.id, user.id);
    assert_eq!(later.user.email.as_deref(), Some("octocat@example.com"));
    assert_eq!(later.user.name.as_deref(), Some("The Octocat"));
    assert!(later.user.last_login_at >= user.last_login_at);

    // The link names the user, keeps the e-mail and the profile of the first sign-in (the
    // second brought none).
    let link = b.link("github", "583231").await.unwrap();
    assert_eq!(link.user_id, user.id);
    assert_eq!(link.email.as_deref(), Some("octocat@example.com"));
    assert_eq!(
        link.raw_profile.as_deref(),
        Some(&json!({ "login": "octocat", "id": 583231 }))
    );
    assert_eq!(
        link.last_login_at, later.user.last_login_at,
        "both rows, one login time"
    );

    // Another provider's identity is another user, even with the same e-mail.
    let google = SignInArgs::new("google", "1029384756").email("octocat@example.com");
    let other = b.sign_in(&google).await.unwrap();
    assert!(other.created);
    assert_ne!(other.user.id, user.id);
    let mine = b.links(user.id).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].id, link.id);
    let theirs = b.links(other.user.id).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].provider, "google");
    assert!(b.links(Uuid::new_v4()).await.unwrap().is_empty());
    assert!(matches!(
        b.link("github", "nobody").await,
        Err(Error::NotFound)
    ));
}

async fn concurrent_first_sign_ins_of_one_identity_make_one_user<B: AccountsBackend>(b: B) {
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let b = b.clone();
            let who = SignInArgs::new("discord", "80351110224678912").name(&format!("tab {i}"));
            tokio::spawn(async move { b.sign_in(&who).await })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut created = 0;
    for t in tasks {
        let s = t.await.unwrap().unwrap();
        ids.insert(s.user.id);
        created += usize::from(s.created);
    }
    assert_eq!(ids.len(), 1, "one user for one identity");
    assert_eq!(created, 1, "exactly one sign-in made it");
    let user = *ids.iter().next().unwrap();
    assert_eq!(b.links(user).await.unwrap().len(), 1, "one link");
    assert_eq!(
        b.link("discord", "80351110224678912")
            .await
            .unwrap()
            .user_id,
        user
    );
}

async fn a_link_whose_user_row_is_missing_gets_its_user_back<B: AccountsBackend>(b: B) {
    let who = SignInArgs::new("google", "117").email("half@example.com");
    let first = b.sign_in(&who).await.unwrap();
    b.delete_user_row(first.user.id).await;
    assert!(matches!(b.user(first.user.id).await, Err(Error::NotFound)));

    let back = b.sign_in(&SignInArgs::new("google", "117")).await.unwrap();
    assert!(back.created, "the user row is made again");
    assert_eq!(
        back.user.id, first.user.id,
        "under the link's user id, not a second user"
    );
    assert_eq!(back.user.email, None, "this sign-in brought no e-mail");
    assert_eq!(b.user(first.user.id).await.unwrap(), back.user);
}

async fn the_free_plan_is_used_once_even_by_concurrent_claims<B: AccountsBackend>(b: B) {
    let user = b.new_user().await.unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                let key = format!("plan-{i}");
                (b.claim_free_plan(user, &key).await.unwrap(), key)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (won, key) = t.await.unwrap();
        if won {
            winners.push(key);
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one claim used the free plan: {winners:?}"
    );
    let winner = &winners[0];
    assert!(b.user(user).await.unwrap().free_plan_used);

    // The winning request retried is still the one that used it (its key, NUL stripped, is
    // the same key); another request is not.
    assert!(b.claim_free_plan(user, winner).await.unwrap());
    let with_nul = format!("{}\0{}", &winner[..2], &winner[2..]);
    assert!(b.claim_free_plan(user, &with_nul).await.unwrap());
    assert!(!b.claim_free_plan(user, "a-later-plan").await.unwrap());

    // Another user's free plan is untouched; a missing user is not found.
    let other = b.new_user().await.unwrap();
    assert!(!b.user(other).await.unwrap().free_plan_used);
    assert!(b.claim_free_plan(other, winner).await.unwrap());
    assert!(matches!(
        b.claim_free_plan(Uuid::new_v4(), "plan-x").await,
        Err(Error::NotFound)
    ));
}

async fn the_admin_account_is_made_once_and_pays_for_plans_without_an_owner<B: AccountsBackend>(
    b: B,
) {
    // No admin yet: a plan without a known owner has nobody to bill.
    assert_eq!(b.billing_user(None).await.unwrap(), None);
    assert_eq!(b.billing_user(Some("demo_user_1")).await.unwrap(), None);

    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.ensure_admin("admin").await.unwrap() })
        })
        .collect();
    let mut admins = Vec::new();
    for t in tasks {
        admins.push(t.await.unwrap());
    }
    let admin = admins[0].clone();
    assert!(admins.iter().all(|a| a.id == admin.id), "one admin account");
    assert_eq!(admin.id, admin_id("admin"), "the Python frontend's id");
    assert!(admin.is_admin);
    assert_eq!(admin.name.as_deref(), Some("Admin"));
    assert_eq!(admin.credits_balance, Decimal::ZERO);
    assert_eq!(b.user(admin.id).await.unwrap(), admin);

    // A plan's owner pays when the owner id is a user's (hyphenated or hex); else the admin.
    let user = b.new_user().await.unwrap();
    assert_eq!(
        b.billing_user(Some(&user.to_string())).await.unwrap(),
        Some(user)
    );
    assert_eq!(
        b.billing_user(Some(&user.simple().to_string()))
            .await
            .unwrap(),
        Some(user)
    );
    for owner in [
        None,
        Some("demo_user_1"),
        Some(Uuid::new_v4().to_string().as_str()),
    ] {
        assert_eq!(
            b.billing_user(owner).await.unwrap(),
            Some(admin.id),
            "{owner:?}"
        );
    }
}

async fn a_replayed_payment_credits_once_and_answers_the_first_outcome<B: AccountsBackend>(b: B) {
    let user = b.new_user().await.unwrap();
    b.grant(user, d("5"), None).await.unwrap();
    let pay = PaymentArgs::stripe(user, "cs_test_a1B2c3", "10.5");
    let first = b.apply(&pay).await.unwrap();
    let PaymentOutcome::Applied {
        payment_id,
        new_balance,
    } = first.clone()
    else {
        panic!("{first:?}")
    };
    assert_eq!(new_balance, d("15.5"));
    assert_eq!(
        new_balance.to_string(),
        "15.500000000",
        "nine places, as numeric(18,9) gives it"
    );

    // The webhook delivered again, later: the first outcome, nothing credited.
    assert_eq!(b.apply(&pay).await.unwrap(), first);
    assert_eq!(b.balance(user).await.unwrap(), d("15.5"));
    assert_eq!(b.ledger(user).await.unwrap(), (2, d("15.5")));

    let record = b.payment("stripe", "cs_test_a1B2c3").await.unwrap();
    assert_eq!(record.id, payment_id);
    assert_eq!(record.user_id, user);
    assert_eq!(record.credits, d("10.5"));
    assert_eq!(record.amount, 1000);
    assert_eq!(record.currency, "usd");
    assert_eq!(record.status, "completed");
    assert_eq!(record.raw_payload.as_deref(), pay.raw_payload.as_ref());

    // The same payment id with another request is refused naming the field; nothing moves.
    let stranger = b.new_user().await.unwrap();
    for (field, changed) in [
        (
            "user",
            PaymentArgs {
                user: stranger,
                ..pay.clone()
            },
        ),
        (
            "credits",
            PaymentArgs {
                credits: d("11"),
                ..pay.clone()
            },
        ),
        (
            "amount",
            PaymentArgs {
                amount: 999,
                ..pay.clone()
            },
        ),
        (
            "currency",
            PaymentArgs {
                currency: "eur".into(),
                ..pay.clone()
            },
        ),
    ] {
        let err = b.apply(&changed).await.unwrap_err();
        assert!(
            matches!(err, Error::IdempotencyKeyReused { field: f } if f == field),
            "{field}: {err:?}"
        );
    }
    assert_eq!(b.balance(user).await.unwrap(), d("15.5"));
    assert_eq!(b.balance(stranger).await.unwrap(), Decimal::ZERO);

    // The id is scoped to its provider: Telegram's payment of the same id is another payment.
    let telegram = PaymentArgs {
        provider: "telegram".into(),
        credits: d("0.000000001"),
        amount: 50,
        currency: "XTR".into(),
        ..pay.clone()
    };
    let t = b.apply(&telegram).await.unwrap();
    assert!(
        matches!(t, PaymentOutcome::Applied { payment_id: p, new_balance } if p != payment_id && new_balance == d("15.500000001")),
        "{t:?}"
    );
    assert_eq!(b.ledger(user).await.unwrap(), (3, d("15.500000001")));
    assert_eq!(b.balance(user).await.unwrap(), d("15.500000001"));
}

async fn concurrent_deliveries_of_payments_credit_each_once<B: AccountsBackend>(b: B) {
    // Eight payments, each delivered three times at once (webhook, success page, a retry).
    let user = b.new_user().await.unwrap();
    let tasks: Vec<_> = (0..8)
        .flat_map(|p| (0..3).map(move |_| p))
        .map(|p| {
            let b = b.clone();
            let pay = PaymentArgs::stripe(user, &format!("cs_live_{p}"), "1.000000005");
            tokio::spawn(async move { (p, b.apply(&pay).await.unwrap()) })
        })
        .collect();
    let mut outcomes: HashMap<i32, Vec<PaymentOutcome>> = HashMap::new();
    for t in tasks {
        let (p, outcome) = t.await.unwrap();
        outcomes.entry(p).or_default().push(outcome);
    }
    let mut balances = Vec::new();
    for (p, answers) in &outcomes {
        assert_eq!(answers.len(), 3);
        // Equal, and serialised alike (a replay reads the balance back from the row).
        let json = |a: &PaymentOutcome| serde_json::to_string(a).unwrap();
        assert!(
            answers
                .iter()
                .all(|a| a == &answers[0] && json(a) == json(&answers[0])),
            "payment {p}: {answers:?}"
        );
        let PaymentOutcome::Applied { new_balance, .. } = answers[0] else {
            panic!("{answers:?}")
        };
        balances.push(new_balance);
    }
    // Each payment was credited once, one after the other: the balances after them are
    // 1..=8 times the credits, exactly.
    balances.sort();
    let expected: Vec<_> = (1..=8)
        .map(|k| Decimal::from(k) * d("1.000000005"))
        .collect();
    assert_eq!(balances, expected);
    assert_eq!(b.balance(user).await.unwrap(), d("8.00000004"));
    assert_eq!(b.ledger(user).await.unwrap(), (8, d("8.00000004")));
    let listed = b.payments(user, Keyset::first(50)).await.unwrap();
    assert_eq!(listed.len(), 8, "one payment row each");
}

async fn a_payment_python_recorded_is_a_duplicate_and_credits_nothing<B: AccountsBackend>(b: B) {
    let user = b.new_user().await.unwrap();
    let pay = PaymentArgs {
        provider: "telegram".into(),
        currency: "XTR".into(),
        amount: 250,
        ..PaymentArgs::stripe(user, "tg_charge_77", "2.5")
    };
    let recorded = b.record_payment_as_python(&pay, true).await;
    assert_eq!(
        b.apply(&pay).await.unwrap(),
        PaymentOutcome::Duplicate {
            payment_id: recorded
        }
    );
    assert_eq!(b.balance(user).await.unwrap(), Decimal::ZERO);
    assert_eq!(b.ledger(user).await.unwrap(), (0, Decimal::ZERO));
    let record = b.payment("telegram", "tg_charge_77").await.unwrap();
    assert_eq!(record.credits, d("2.5"));
    assert_eq!(record.raw_payload, None);
}

async fn payments_are_listed_newest_first_in_bounded_pages<B: AccountsBackend>(b: B) {
    let user = b.new_user().await.unwrap();
    let other = b.new_user().await.unwrap();
    for i in 0..5 {
        b.apply(&PaymentArgs::stripe(user, &format!("cs_{i}"), "1"))
            .await
            .unwrap();
        // Apart in time on both backends (SQLite's clock has milliseconds).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.apply(&PaymentArgs::stripe(other, "cs_other", "1"))
        .await
        .unwrap();
    // Two rows another writer left without a time: listed last, by id descending.
    let mut undated = Vec::new();
    for i in 0..2 {
        let pay = PaymentArgs::stripe(user, &format!("py_undated_{i}"), "1");
        undated.push((b.record_payment_as_python(&pay, false).await, pay.id));
    }
    undated.sort();
    let (newer_id, older_id) = (undated[1].1.clone(), undated[0].1.clone());

    let mut seen = Vec::new();
    let mut page = Keyset::first(2);
    // At most as many pages as it takes (a page that repeats rows would never end).
    for _ in 0..5 {
        let rows = b.payments(user, page.clone()).await.unwrap();
        assert!(rows.len() <= 2, "a page holds at most its limit");
        let Some(last) = rows.last() else { break };
        page = Keyset::after(2, last.cursor());
        seen.extend(rows.iter().map(|r| r.provider_payment_id.clone()));
    }
    // Pages of two: the last dated row and the first undated one share a page, and the next
    // page starts after an undated row.
    assert_eq!(
        seen,
        ["cs_4", "cs_3", "cs_2", "cs_1", "cs_0", &newer_id, &older_id]
    );
    let all = b
        .payments(user, Keyset::first(MAX_PAGE_ROWS * 10))
        .await
        .unwrap();
    assert_eq!(all.len(), 7, "a too-large limit is clamped, not refused");
    assert_eq!(all[6].created_at, None);
    assert_eq!(b.payments(user, Keyset::first(0)).await.unwrap().len(), 1);
    assert!(
        b.payments(Uuid::new_v4(), Keyset::default())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn account_input_rules_refuse_what_they_refuse_on_both_backends<B: AccountsBackend>(b: B) {
    let invalid = |e: Error| assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    let long = |n: usize| "x".repeat(n);

    // Sign-in: the identity is never cut; profile text is.
    invalid(
        b.sign_in(&SignInArgs::new(&long(33), "1"))
            .await
            .unwrap_err(),
    );
    invalid(
        b.sign_in(&SignInArgs::new("github", &long(257)))
            .await
            .unwrap_err(),
    );
    invalid(b.sign_in(&SignInArgs::new("github", "")).await.unwrap_err());
    invalid(b.sign_in(&SignInArgs::new("", "1")).await.unwrap_err());
    invalid(
        b.sign_in(&SignInArgs::new("github", "\0"))
            .await
            .unwrap_err(),
    );
    invalid(b.link("github", &long(257)).await.unwrap_err());
    let edge = b
        .sign_in(
            &SignInArgs::new("github", &long(256))
                .name(&"n".repeat(300))
                .email(&format!("{}@example.com", "e".repeat(300))),
        )
        .await
        .unwrap();
    assert_eq!(
        edge.user.name.as_ref().map(|n| n.chars().count()),
        Some(256)
    );
    assert_eq!(
        edge.user.email.as_ref().map(|n| n.chars().count()),
        Some(256)
    );
    // NUL bytes are stripped from identity and content: a lookup with them finds the link.
    let nul = b
        .sign_in(&SignInArgs::new("github", "nu\0l").name("A\0da"))
        .await
        .unwrap();
    assert_eq!(nul.user.name.as_deref(), Some("Ada"));
    assert_eq!(b.link("github", "nul").await.unwrap().user_id, nul.user.id);
    assert_eq!(
        b.link("github", "n\0ul").await.unwrap().user_id,
        nul.user.id
    );

    // The free plan's claim key: 1..=128 characters after NUL bytes are stripped.
    let user = b.new_user().await.unwrap();
    invalid(b.claim_free_plan(user, "").await.unwrap_err());
    invalid(b.claim_free_plan(user, "\0").await.unwrap_err());
    invalid(b.claim_free_plan(user, &long(129)).await.unwrap_err());
    assert!(
        !b.user(user).await.unwrap().free_plan_used,
        "refused claims use nothing"
    );
    assert!(b.claim_free_plan(user, &long(128)).await.unwrap());

    // Payments: nothing is written for refused input.
    let ok = PaymentArgs::stripe(user, "cs_rules", "3");
    for bad in [
        PaymentArgs {
            credits: d("0"),
            ..ok.clone()
        },
        PaymentArgs {
            credits: d("-1"),
            ..ok.clone()
        },
        PaymentArgs {
            credits: d("0.0000000001"),
            ..ok.clone()
        },
        PaymentArgs {
            amount: -1,
            ..ok.clone()
        },
        PaymentArgs {
            currency: long(17),
            ..ok.clone()
        },
        PaymentArgs {
            provider: long(33),
            ..ok.clone()
        },
        PaymentArgs {
            provider: String::new(),
            ..ok.clone()
        },
        PaymentArgs {
            id: long(257),
            ..ok.clone()
        },
        PaymentArgs {
            id: "\0".into(),
            ..ok.clone()
        },
    ] {
        invalid(b.apply(&bad).await.unwrap_err());
    }
    invalid(b.payment("stripe", &long(257)).await.unwrap_err());
    assert!(
        b.payments(user, Keyset::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(b.ledger(user).await.unwrap(), (0, Decimal::ZERO));
    // An id with a NUL is the id without it.
    b.apply(&PaymentArgs {
        id: "cs_\0nul".into(),
        ..ok.clone()
    })
    .await
    .unwrap();
    assert_eq!(b.payment("stripe", "cs_nul").await.unwrap().credits, d("3"));

    // A user that does not exist is not found, and nothing is recorded for it.
    let ghost = Uuid::new_v4();
    assert!(matches!(b.user(ghost).await, Err(Error::NotFound)));
    let err = b
        .apply(&PaymentArgs::stripe(ghost, "cs_ghost", "1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound), "{err:?}");
    assert!(matches!(
        b.payment("stripe", "cs_ghost").await,
        Err(Error::NotFound)
    ));
}
