//! Bringing an existing shop in: import the old shop backend's database (its `public` tables,
//! layout of `shop.md` at Alembic head `7890fc217968`) into the hardened `shop` schema.
//!
//! ```no_run
//! # async fn example(old: &mut sqlx::PgConnection, new: &mut sqlx::PgConnection) -> shared_db::Result<()> {
//! use shared_db::shop::import::{self, Options};
//! let report = import::run(old, new, &Options { dry_run: true, shops: vec![] }).await?;
//! print!("{report}"); // or serde_json::to_string(&report)
//! # Ok(()) }
//! ```
//!
//! - **Ids are kept**, so links, orders and licences that name them still resolve.
//! - **Every row the hardened schema would refuse is reported**, never repaired: one
//!   [`Entry`] (table, id, [`Rule`], value) per broken rule, in text and JSON. [`Rule`]
//!   names and explains each rule.
//! - **Every table** of the old backend is read: users, roles, roles_users, faq, early_access
//!   and licences without an order are global rows; the others belong to a shop. The report's
//!   [`TableSummary`] counts, per table, the rows read, imported, refused and skipped, and
//!   `read` always equals `imported + refused + skipped`.
//! - **Row-level refusal.** A refused row is reported and left out, and so is every row that
//!   depends on it (its translations, tag links, attribute values, the orders naming it, the
//!   licences of a refused order …), each with [`Rule::RefusedParent`]; the rest of its shop is
//!   imported. Only a refused `shops` row or a [`Rule::ShopConflict`] (the target holds a
//!   different shop under the id or the name) skips the **whole shop**; its transaction is
//!   rolled back at once, its remaining rows are still checked and reported, and its outcome
//!   names the blocking rule. Rows whose shop is NULL or missing (directly or through their
//!   parent) are reported and belong to no shop. Every shop is written in **its own
//!   transaction**, parents before children.
//! - **One consistent cut, any size.** The old database is read in one
//!   `REPEATABLE READ READ ONLY` transaction with no statement and no idle-in-transaction
//!   timeout, so a live source gives one snapshot and a big shop is never cut off by the pool's
//!   `statement_timeout`. The target's transactions lift both timeouts for themselves only
//!   (`SET LOCAL`); the connections go back to their pools unchanged.
//! - **Progress.** [`run_with_progress`] calls back every [`BATCH`] rows with the current shop,
//!   table, rows so far and refused so far.
//! - **Idempotent.** Every row is inserted with `ON CONFLICT (id) DO NOTHING`: a second run
//!   recognises what the first one wrote and changes nothing, so an operator can fix the old
//!   data and run again. [`Outcome::written`] counts the rows that were new.
//! - **Dry run** takes the same path without a target transaction: the same entries, outcomes
//!   "would import", nothing written.
//! - **Memory** is bounded by one batch ([`BATCH`] rows) of one table plus the report: rows are
//!   streamed from the old database (`fetch`, never `fetch_all`), shops are walked one at a
//!   time, and whatever a rule needs from other rows (parent exists, owner of the category,
//!   second link of a pair, unknown products of an order) is computed by the old database in the
//!   streaming query.
//! - **Same or separate database.** `source` and `target` are two connections; they may be
//!   connections to the same database (old tables in `public`, new ones in `shop`).
//!
//! Old values that change form: naive timestamps (`orders.created_at`, `completed_at`, the
//! discount window) are read as UTC, the old engine's session time zone; `double precision`
//! money becomes the exact decimal it prints as (`19.99`), refused if that has more than two
//! decimals; `accounts.details` (`json`) becomes `jsonb`. The legacy `products.attributes` column
//! (no longer in the backend's model, not read by it) is not imported.
//!
//! The queries against the old database are the crate's only runtime-checked SQL (its tables
//! are not in this crate's migrations): `sqlx::query_as` over explicit column lists into
//! `FromRow` structs (`source.rs`). Everything written into `shop.*` is macro-checked (see `write.rs`).

mod report;
mod rules;
mod source;
mod write;

use std::collections::HashSet;
use std::time::Instant;

use futures_util::TryStreamExt;
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use uuid::Uuid;

pub use report::{Entry, Outcome, Report, Rule, Status, TableSummary};
pub use rules::{LONG_TEXT, MONEY_MAX, MONEY_SCALE, is_bcrypt, money};

use crate::Result;
use rules::{Ctx, OldTable, Problems};
use write::Insert;

/// Rows written per statement.
pub const BATCH: usize = 1000;

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Check and report only; write nothing.
    pub dry_run: bool,
    /// Only these shops (empty: every shop). Global rows and rows without a shop are always
    /// checked and reported.
    pub shops: Vec<Uuid>,
}

/// Where a running import is, passed to the callback of [`run_with_progress`].
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// The unit being imported: a shop's name, or `(global)`.
    pub unit: &'a str,
    /// The old table being read.
    pub table: &'static str,
    /// Rows read so far, all tables and units.
    pub rows: u64,
    /// Rows refused so far.
    pub refused: u64,
    /// Since the import started.
    pub elapsed: std::time::Duration,
}

/// Imports the old database behind `source` into `shop.*` behind `target` and reports every
/// refused row, each shop's outcome and a per-table summary.
///
/// Errors are the ones neither database can be asked past: a connection lost, the old tables
/// missing or of another shape (a decode error naming the column), or the global rows refused
/// by the target. A shop whose write the target refuses is [`Status::Failed`] in the report
/// and the import goes on with the next shop.
pub async fn run(
    source: &mut PgConnection,
    target: &mut PgConnection,
    options: &Options,
) -> Result<Report> {
    run_with_progress(source, target, options, &mut |_| {}).await
}

/// [`run`], calling `progress` when a table starts and every [`BATCH`] rows.
#[tracing::instrument(skip_all, fields(dry_run = options.dry_run))]
pub async fn run_with_progress(
    source: &mut PgConnection,
    target: &mut PgConnection,
    options: &Options,
    progress: &mut (dyn FnMut(&Progress<'_>) + Send),
) -> Result<Report> {
    let mut snapshot = source
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    // runtime-checked like every query of the old database (see source.rs)
    sqlx::query(
        "SELECT set_config('statement_timeout', '0', true),
                set_config('idle_in_transaction_session_timeout', '0', true)",
    )
    .execute(&mut *snapshot)
    .await?;
    let mut run = Run {
        source: &mut snapshot,
        report: Report {
            dry_run: options.dry_run,
            ..Report::default()
        },
        progress,
        started: Instant::now(),
        rows: 0,
        refused: 0,
    };
    let rejected = run.global(target, options.dry_run).await?;
    run.homeless().await?;

    let mut after = Uuid::nil();
    while let Some((shop, name)) = sqlx::query_as::<_, (Uuid, String)>(source::NEXT_SHOP)
        .bind(after)
        .fetch_optional(&mut *run.source)
        .await?
    {
        after = shop;
        if !options.shops.is_empty() && !options.shops.contains(&shop) {
            continue;
        }
        run.shop(target, options.dry_run, shop, name, &rejected)
            .await?;
    }
    let report = run.report;
    snapshot.rollback().await?;
    Ok(report)
}

/// One import under way.
struct Run<'s, 'p> {
    source: &'s mut PgConnection,
    report: Report,
    progress: &'p mut (dyn FnMut(&Progress<'_>) + Send),
    started: Instant,
    rows: u64,
    refused: u64,
}

/// Progress of one unit (a shop, or the global rows).
struct Unit {
    shop: Option<Uuid>,
    name: String,
    /// Ids of the unit's refused rows, for the rows that depend on them.
    refused: HashSet<Uuid>,
    /// Good rows per table (moved into the summary as imported or skipped at the end).
    good: Vec<(&'static str, u64)>,
    written: u64,
    /// The blocking entry's rule and value, when the whole shop is skipped.
    blocked: Option<String>,
}

impl Unit {
    fn new(shop: Option<Uuid>, name: String) -> Unit {
        Unit {
            shop,
            name,
            refused: HashSet::new(),
            good: Vec::new(),
            written: 0,
            blocked: None,
        }
    }
}

async fn begin(
    target: &mut PgConnection,
    write: bool,
) -> Result<Option<Transaction<'_, Postgres>>> {
    if !write {
        return Ok(None);
    }
    let mut tx = Connection::begin(target).await?;
    write::no_timeouts(&mut tx).await?;
    Ok(Some(tx))
}

impl Run<'_, '_> {
    /// Users, roles and their links, FAQ, early access, licences without an order: imported
    /// row by row in one transaction. Returns the ids refused (for the shops' rows naming them).
    async fn global(&mut self, target: &mut PgConnection, dry_run: bool) -> Result<HashSet<Uuid>> {
        use source::*;
        let none = HashSet::new();
        let mut unit = Unit::new(None, "(global)".into());
        let mut tx = begin(target, !dry_run).await?;
        self.copy::<User>(&mut tx, &none, &mut unit).await?;
        self.copy::<Role>(&mut tx, &none, &mut unit).await?;
        let refused = unit.refused.clone();
        self.copy::<RoleUser>(&mut tx, &refused, &mut unit).await?;
        self.copy::<Faq>(&mut tx, &none, &mut unit).await?;
        self.copy::<EarlyAccess>(&mut tx, &none, &mut unit).await?;
        self.copy::<UnorderedLicense>(&mut tx, &none, &mut unit)
            .await?;
        if let Some(tx) = tx {
            tx.commit().await?;
        }
        let rejected = unit.refused.clone();
        self.finish(unit, dry_run, None);
        Ok(rejected)
    }

    /// The rows whose shop is NULL or missing, directly or through their parent.
    async fn homeless(&mut self) -> Result<()> {
        let mut homeless =
            sqlx::query_as::<_, source::Homeless>(source::HOMELESS).fetch(&mut *self.source);
        while let Some(h) = homeless.try_next().await? {
            let table = table_name(&h.table_name);
            self.report.entries.push(Entry {
                table,
                id: h.id,
                rule: Rule::from_name(&h.rule).unwrap_or(Rule::DanglingReference),
                value: h.value,
                shop: None,
            });
            let t = self.report.table(table);
            t.read += 1;
            t.refused += 1;
            self.rows += 1;
            self.refused += 1;
        }
        Ok(())
    }

    /// One shop, in its own transaction, parents before children.
    async fn shop(
        &mut self,
        target: &mut PgConnection,
        dry_run: bool,
        shop: Uuid,
        name: String,
        rejected: &HashSet<Uuid>,
    ) -> Result<()> {
        let mut unit = Unit::new(Some(shop), name);
        if let Some((other, other_name)) = write::shop_conflict(target, shop, &unit.name).await? {
            let value = format!("the target holds shop {other} {other_name:?}");
            self.report.entries.push(Entry {
                table: "shops",
                id: shop,
                rule: Rule::ShopConflict,
                value: value.clone(),
                shop: Some(shop),
            });
            unit.blocked = Some(format!("{}: {value}", Rule::ShopConflict));
        }
        let mut tx = begin(target, !dry_run && unit.blocked.is_none()).await?;
        let copied = self.shop_tables(&mut tx, rejected, &mut unit).await;
        let failure = match copied {
            Err(e) => Some(e.to_string()),
            Ok(()) => match tx.take() {
                Some(tx) => tx.commit().await.err().map(|e| e.to_string()),
                None => None,
            },
        };
        drop(tx);
        self.finish(unit, dry_run, failure);
        Ok(())
    }

    async fn shop_tables(
        &mut self,
        tx: &mut Option<Transaction<'_, Postgres>>,
        rejected: &HashSet<Uuid>,
        unit: &mut Unit,
    ) -> Result<()> {
        use source::*;
        let shop_ok = unit.blocked.is_none();
        if shop_ok {
            self.copy::<Shop>(tx, rejected, unit).await?;
        } else {
            // the conflicting shop row is already reported: count it, write nothing
            self.copy::<Shop>(&mut None, rejected, unit).await?;
        }
        if unit.blocked.is_none() && unit.refused.contains(&unit.shop.unwrap_or_default()) {
            let rules: Vec<_> = self
                .report
                .entries
                .iter()
                .filter(|e| e.table == "shops" && Some(e.id) == unit.shop)
                .map(|e| e.rule.name())
                .collect();
            unit.blocked = Some(format!("the shop row is refused ({})", rules.join(", ")));
        }
        if unit.blocked.is_some()
            && let Some(t) = tx.take()
        {
            // nothing of a blocked shop is written: give the transaction back at once
            t.rollback().await?;
        }
        self.copy::<ShopUser>(tx, rejected, unit).await?;
        self.copy::<Category>(tx, rejected, unit).await?;
        self.copy::<CategoryTranslation>(tx, rejected, unit).await?;
        self.copy::<Tag>(tx, rejected, unit).await?;
        self.copy::<TagTranslation>(tx, rejected, unit).await?;
        self.copy::<Attribute>(tx, rejected, unit).await?;
        self.copy::<AttributeTranslation>(tx, rejected, unit)
            .await?;
        self.copy::<AttributeOption>(tx, rejected, unit).await?;
        self.copy::<Product>(tx, rejected, unit).await?;
        self.copy::<ProductTranslation>(tx, rejected, unit).await?;
        self.copy::<ProductTag>(tx, rejected, unit).await?;
        self.copy::<AttributeValue>(tx, rejected, unit).await?;
        self.copy::<InfoRequest>(tx, rejected, unit).await?;
        self.copy::<Account>(tx, rejected, unit).await?;
        self.copy::<Order>(tx, rejected, unit).await?;
        self.copy::<License>(tx, rejected, unit).await?;
        Ok(())
    }

    /// Moves the unit's counts into the report and records its outcome.
    fn finish(&mut self, unit: Unit, dry_run: bool, failure: Option<String>) {
        let refused = unit.refused.len() as u64;
        let (status, reason) = if let Some(error) = failure {
            (Status::Failed, Some(error))
        } else if let Some(blocked) = unit.blocked {
            (Status::Skipped, Some(blocked))
        } else if dry_run {
            (Status::WouldImport, None)
        } else {
            (Status::Imported, None)
        };
        let taken = matches!(status, Status::Imported | Status::WouldImport);
        let mut rows = 0;
        for (table, good) in unit.good {
            rows += good;
            let t = self.report.table(table);
            if taken {
                t.imported += good;
            } else {
                t.skipped += good;
            }
        }
        self.report.outcomes.push(Outcome {
            shop: unit.shop,
            name: unit.name,
            status,
            rows,
            refused,
            written: if status == Status::Imported {
                unit.written
            } else {
                0
            },
            reason,
        });
    }

    fn tick(&mut self, unit: &str, table: &'static str) {
        (self.progress)(&Progress {
            unit,
            table,
            rows: self.rows,
            refused: self.refused,
            elapsed: self.started.elapsed(),
        });
    }

    /// Streams one table of the unit's scope, checks every row against the rules and the rows
    /// refused before it, and writes the good ones in batches while `tx` is there.
    async fn copy<T: OldTable>(
        &mut self,
        tx: &mut Option<Transaction<'_, Postgres>>,
        rejected: &HashSet<Uuid>,
        unit: &mut Unit,
    ) -> Result<()> {
        self.tick(&unit.name, T::TABLE);
        let query = sqlx::query_as::<_, T>(T::SQL);
        let query = if T::SCOPED {
            query.bind(unit.shop)
        } else {
            query
        };
        let mut rows = query.fetch(&mut *self.source);
        let mut batch: Vec<T::Out> = Vec::with_capacity(BATCH);
        let mut newly_refused = Vec::new();
        let (mut read, mut good) = (0u64, 0u64);
        let ctx = Ctx {
            shop: unit.shop,
            rejected_users: rejected,
            refused: &unit.refused,
        };
        while let Some(row) = rows.try_next().await? {
            let id = row.id();
            read += 1;
            let mut problems = Problems::default();
            match row.check(&ctx, &mut problems) {
                Some(out) => {
                    good += 1;
                    if let Some(tx) = tx.as_deref_mut() {
                        batch.push(out);
                        if batch.len() == BATCH {
                            unit.written += T::Out::insert(tx, unit.shop, &batch).await?;
                            batch.clear();
                        }
                    }
                }
                None => {
                    newly_refused.push(id);
                    self.report
                        .entries
                        .extend(problems.0.into_iter().map(|(rule, value)| Entry {
                            table: T::TABLE,
                            id,
                            rule,
                            value,
                            shop: unit.shop,
                        }));
                }
            }
            if read % BATCH as u64 == 0 {
                (self.progress)(&Progress {
                    unit: &unit.name,
                    table: T::TABLE,
                    rows: self.rows + read,
                    refused: self.refused + newly_refused.len() as u64,
                    elapsed: self.started.elapsed(),
                });
            }
        }
        drop(rows);
        if let Some(tx) = tx.as_deref_mut()
            && !batch.is_empty()
        {
            unit.written += T::Out::insert(tx, unit.shop, &batch).await?;
        }
        let refused = newly_refused.len() as u64;
        self.rows += read;
        self.refused += refused;
        let t = self.report.table(T::TABLE);
        t.read += read;
        t.refused += refused;
        unit.refused.extend(newly_refused);
        match unit.good.iter_mut().find(|(name, _)| *name == T::TABLE) {
            Some((_, n)) => *n += good,
            None => unit.good.push((T::TABLE, good)),
        }
        Ok(())
    }
}

/// The `&'static` name of an old table named by the homeless query.
fn table_name(name: &str) -> &'static str {
    const TABLES: [&str; 16] = [
        "shops_users",
        "categories",
        "category_translations",
        "tags",
        "tag_translations",
        "attributes",
        "attribute_translations",
        "attribute_options",
        "products",
        "product_translations",
        "products_to_tags",
        "product_attribute_values",
        "accounts",
        "orders",
        "licenses",
        "info_requests",
    ];
    TABLES.iter().copied().find(|t| *t == name).unwrap_or("?")
}
