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
//! - **Units.** Users and licences without an order are global rows: each good one is imported,
//!   each refused one is reported (and a shop that needs a refused user is blocked by a
//!   [`Rule::RejectedUser`] entry). Rows whose shop is NULL or missing (directly or through
//!   their parent) are reported and belong to no shop. Every shop is then imported in **its own
//!   transaction**, parents before children; a shop with any refused row is skipped whole and
//!   its outcome says why; the others are committed.
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
//! (no longer in the backend's model) and the tables roles, roles_users, faq, early_access and
//! info_requests are not imported.
//!
//! The queries against the old database are the crate's only runtime-checked SQL (its tables
//! are not in this crate's migrations): `sqlx::query_as` over explicit column lists into
//! `FromRow` structs (`source.rs`). Everything written into `shop.*` is macro-checked (see `write.rs`).

mod report;
mod rules;
mod source;
mod write;

use std::collections::HashSet;

use futures_util::TryStreamExt;
use sqlx::{Acquire, PgConnection};
use uuid::Uuid;

pub use report::{Entry, Outcome, Report, Rule, Status};
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

/// Imports the old database behind `source` into `shop.*` behind `target` and reports every
/// refused row and each shop's outcome.
///
/// Errors are the ones neither database can be asked past: a connection lost, the old tables
/// missing or of another shape (a decode error naming the column), or the global rows refused
/// by the target. A shop whose write the target refuses is [`Status::Failed`] in the report
/// and the import goes on with the next shop.
#[tracing::instrument(skip_all, fields(dry_run = options.dry_run))]
pub async fn run(
    source: &mut PgConnection,
    target: &mut PgConnection,
    options: &Options,
) -> Result<Report> {
    let mut report = Report {
        dry_run: options.dry_run,
        ..Report::default()
    };

    let no_users = HashSet::new();
    let global = Ctx {
        shop: None,
        rejected_users: &no_users,
    };
    let mut unit = Unit::new(&report, None, "(global)".into(), false);
    {
        let mut tx = begin(target, options.dry_run).await?;
        copy::<source::User>(source, tx.as_deref_mut(), &global, &mut unit, &mut report).await?;
        copy::<source::UnorderedLicense>(
            source,
            tx.as_deref_mut(),
            &global,
            &mut unit,
            &mut report,
        )
        .await?;
        if let Some(tx) = tx {
            tx.commit().await?;
        }
    }
    let rejected_users: HashSet<Uuid> = report
        .entries
        .iter()
        .filter(|e| e.table == "users")
        .map(|e| e.id)
        .collect();
    report
        .outcomes
        .push(unit.finish(&report, options.dry_run, None));

    let mut homeless = sqlx::query_as::<_, source::Homeless>(source::HOMELESS).fetch(&mut *source);
    while let Some(h) = homeless.try_next().await? {
        report.entries.push(Entry {
            table: table_name(&h.table_name),
            id: h.id,
            rule: Rule::from_name(&h.rule).unwrap_or(Rule::DanglingReference),
            value: h.value,
            shop: None,
        });
    }
    drop(homeless);

    let mut after = Uuid::nil();
    while let Some((shop, name)) = sqlx::query_as::<_, (Uuid, String)>(source::NEXT_SHOP)
        .bind(after)
        .fetch_optional(&mut *source)
        .await?
    {
        after = shop;
        if !options.shops.is_empty() && !options.shops.contains(&shop) {
            continue;
        }
        let ctx = Ctx {
            shop: Some(shop),
            rejected_users: &rejected_users,
        };
        let mut unit = Unit::new(&report, Some(shop), name, true);
        let mut tx = begin(target, options.dry_run).await?;
        let copied = copy_shop(source, tx.as_deref_mut(), &ctx, &mut unit, &mut report).await;
        let failure = match copied {
            Err(e) => Some(e.to_string()),
            Ok(()) if unit.blocked(&report) => None,
            Ok(()) => match tx.take() {
                Some(tx) => tx.commit().await.err().map(|e| e.to_string()),
                None => None,
            },
        };
        drop(tx);
        report
            .outcomes
            .push(unit.finish(&report, options.dry_run, failure));
    }
    Ok(report)
}

/// One shop, parents before children.
async fn copy_shop(
    source: &mut PgConnection,
    mut target: Option<&mut PgConnection>,
    ctx: &Ctx<'_>,
    unit: &mut Unit,
    report: &mut Report,
) -> Result<()> {
    use source::*;
    let t = &mut target;
    copy::<Shop>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<ShopUser>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<Category>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<CategoryTranslation>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<Tag>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<TagTranslation>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<Attribute>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<AttributeTranslation>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<AttributeOption>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<Product>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<ProductTranslation>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<ProductTag>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<AttributeValue>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<Account>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<Order>(source, t.as_deref_mut(), ctx, unit, report).await?;
    copy::<License>(source, t.as_deref_mut(), ctx, unit, report).await?;
    Ok(())
}

async fn begin(
    target: &mut PgConnection,
    dry_run: bool,
) -> Result<Option<sqlx::Transaction<'_, sqlx::Postgres>>> {
    Ok(if dry_run {
        None
    } else {
        Some(target.begin().await?)
    })
}

/// The `&'static` name of an old table named by the homeless query.
fn table_name(name: &str) -> &'static str {
    const TABLES: [&str; 15] = [
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
    ];
    TABLES.iter().copied().find(|t| *t == name).unwrap_or("?")
}

/// Progress of one unit (a shop, or the global rows).
struct Unit {
    shop: Option<Uuid>,
    name: String,
    /// Entries before this unit started: any entry after it blocks an all-or-nothing unit.
    entries_before: usize,
    all_or_nothing: bool,
    rows: u64,
    written: u64,
}

impl Unit {
    fn new(report: &Report, shop: Option<Uuid>, name: String, all_or_nothing: bool) -> Unit {
        Unit {
            shop,
            name,
            entries_before: report.entries.len(),
            all_or_nothing,
            rows: 0,
            written: 0,
        }
    }

    fn blocked(&self, report: &Report) -> bool {
        self.all_or_nothing && report.entries.len() > self.entries_before
    }

    fn finish(self, report: &Report, dry_run: bool, failure: Option<String>) -> Outcome {
        let refused = report.entries.len() - self.entries_before;
        let (status, reason) = if let Some(error) = failure {
            (Status::Failed, Some(error))
        } else if self.blocked(report) {
            (
                Status::Skipped,
                Some(format!(
                    "{refused} refused row(s) of this shop, listed above"
                )),
            )
        } else if dry_run {
            (Status::WouldImport, None)
        } else {
            (Status::Imported, None)
        };
        let imported = status == Status::Imported;
        Outcome {
            shop: self.shop,
            name: self.name,
            status,
            rows: self.rows,
            written: if imported { self.written } else { 0 },
            reason,
        }
    }
}

/// Streams one table of the unit's scope, checks every row, and writes the good ones in
/// batches while the unit is still writable.
async fn copy<T: OldTable>(
    source: &mut PgConnection,
    mut target: Option<&mut PgConnection>,
    ctx: &Ctx<'_>,
    unit: &mut Unit,
    report: &mut Report,
) -> Result<()> {
    let query = sqlx::query_as::<_, T>(T::SQL);
    let query = if T::SCOPED {
        query.bind(ctx.shop)
    } else {
        query
    };
    let mut rows = query.fetch(&mut *source);
    let mut batch: Vec<T::Out> = Vec::with_capacity(BATCH);
    while let Some(row) = rows.try_next().await? {
        let id = row.id();
        let mut problems = Problems::default();
        match row.check(ctx, &mut problems) {
            Some(out) => {
                unit.rows += 1;
                if let Some(conn) = target.as_deref_mut()
                    && !unit.blocked(report)
                {
                    batch.push(out);
                    if batch.len() == BATCH {
                        unit.written += T::Out::insert(conn, ctx.shop, &batch).await?;
                        batch.clear();
                    }
                }
            }
            None => report
                .entries
                .extend(problems.0.into_iter().map(|(rule, value)| Entry {
                    table: T::TABLE,
                    id,
                    rule,
                    value,
                    shop: ctx.shop,
                })),
        }
    }
    if let Some(conn) = target
        && !batch.is_empty()
        && !unit.blocked(report)
    {
        unit.written += T::Out::insert(conn, ctx.shop, &batch).await?;
    }
    Ok(())
}
