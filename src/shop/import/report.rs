//! What an import found and did: one [`Entry`] per refused row, one [`Outcome`] per shop.
//!
//! The same report comes out of a dry run and a real run over the same data: the entries are
//! identical, only the outcomes say "would import" instead of "imported".

use std::fmt::{self, Write as _};

use serde::Serialize;
use uuid::Uuid;

/// Why a row of the old database cannot be written into `shop.*` as it is.
///
/// Serialised (JSON) and printed (text) as its snake_case name, e.g. `negative_stock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// `shop_id` is NULL: the row belongs to no shop.
    NullShop,
    /// `shop_id` names a shop that does not exist.
    DanglingShop,
    /// A translation whose parent id is NULL or names no row.
    OrphanTranslation,
    /// The row's parent (product, category, attribute, order, …) belongs to no existing shop.
    ParentWithoutShop,
    /// A second (third, …) translation of the same parent; the one with the lowest id is not
    /// reported, every other one is.
    DuplicateTranslation,
    /// A second link between the same pair (tag link, attribute value, shop membership).
    DuplicateLink,
    /// A number that must be unique in its scope is taken by a row with a lower id
    /// (`order_number`, `customer_order_id`).
    DuplicateNumber,
    /// The row links to a row of another shop (category, tag, attribute, account).
    CrossShop,
    /// A reference (other than `shop_id`) that names no row; the value names the column.
    DanglingReference,
    /// `stock` below zero.
    NegativeStock,
    /// An amount of money with more decimals than the money columns keep (two).
    InexactMoney,
    /// A negative amount of money.
    NegativeMoney,
    /// An amount that is NaN, infinite or larger than the money columns hold.
    MoneyOutOfRange,
    /// Text longer than its column allows (characters).
    TooLong,
    /// A name that holds no visible character.
    BlankName,
    /// A NUL character, which PostgreSQL `text` and `jsonb` cannot hold.
    NulByte,
    /// An order item names a product that is not a product of the order's shop.
    UnknownProduct,
    /// A password that is not a bcrypt hash (the value never shows it).
    NotBcrypt,
    /// NULL in a column the schema requires; the value names the column. Not filled in with a
    /// default: that would be a guess.
    Required,
    /// A value outside the column's domain (status label, tax category, JSON shape, seats).
    InvalidValue,
    /// The row references a user that this import refused (reported under `users`).
    RejectedUser,
    /// `completed_by` is not a member of the order's shop.
    CompleterNotMember,
    /// `status` and `completed_at` disagree (a complete order has a completion time, no other
    /// order has one).
    InconsistentCompletion,
    /// The row depends on a row this import refused (its parent, the product of its tag link,
    /// attribute value, order item or info request, the order of its licence, the role of its
    /// membership); the value names the column. The refused row has its own entry.
    RefusedParent,
    /// A value that must be unique (an FAQ question) is taken by a row with a lower id.
    DuplicateValue,
    /// **Blocking.** The target already holds a different shop under this id, or another shop
    /// under this name: the whole shop is skipped.
    ShopConflict,
}

impl Rule {
    /// The snake_case name used in text and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Rule::NullShop => "null_shop",
            Rule::DanglingShop => "dangling_shop",
            Rule::OrphanTranslation => "orphan_translation",
            Rule::ParentWithoutShop => "parent_without_shop",
            Rule::DuplicateTranslation => "duplicate_translation",
            Rule::DuplicateLink => "duplicate_link",
            Rule::DuplicateNumber => "duplicate_number",
            Rule::CrossShop => "cross_shop",
            Rule::DanglingReference => "dangling_reference",
            Rule::NegativeStock => "negative_stock",
            Rule::InexactMoney => "inexact_money",
            Rule::NegativeMoney => "negative_money",
            Rule::MoneyOutOfRange => "money_out_of_range",
            Rule::TooLong => "too_long",
            Rule::BlankName => "blank_name",
            Rule::NulByte => "nul_byte",
            Rule::UnknownProduct => "unknown_product",
            Rule::NotBcrypt => "not_bcrypt",
            Rule::Required => "required",
            Rule::InvalidValue => "invalid_value",
            Rule::RejectedUser => "rejected_user",
            Rule::CompleterNotMember => "completer_not_member",
            Rule::InconsistentCompletion => "inconsistent_completion",
            Rule::RefusedParent => "refused_parent",
            Rule::DuplicateValue => "duplicate_value",
            Rule::ShopConflict => "shop_conflict",
        }
    }

    /// The rule named `name` (as produced by [`Rule::name`]).
    pub fn from_name(name: &str) -> Option<Rule> {
        ALL.iter().copied().find(|r| r.name() == name)
    }
}

const ALL: [Rule; 26] = [
    Rule::NullShop,
    Rule::DanglingShop,
    Rule::OrphanTranslation,
    Rule::ParentWithoutShop,
    Rule::DuplicateTranslation,
    Rule::DuplicateLink,
    Rule::DuplicateNumber,
    Rule::CrossShop,
    Rule::DanglingReference,
    Rule::NegativeStock,
    Rule::InexactMoney,
    Rule::NegativeMoney,
    Rule::MoneyOutOfRange,
    Rule::TooLong,
    Rule::BlankName,
    Rule::NulByte,
    Rule::UnknownProduct,
    Rule::NotBcrypt,
    Rule::Required,
    Rule::InvalidValue,
    Rule::RejectedUser,
    Rule::CompleterNotMember,
    Rule::InconsistentCompletion,
    Rule::RefusedParent,
    Rule::DuplicateValue,
    Rule::ShopConflict,
];

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One refused row (a row breaking two rules gives two entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Table of the old database (`public.<table>`).
    pub table: &'static str,
    /// The row's id in the old database.
    pub id: Uuid,
    /// What is wrong.
    pub rule: Rule,
    /// The offending value, prefixed by its column where the rule does not imply it
    /// (`stock=-3`, `shop_id=NULL`). Secrets (passwords, Stripe keys, webhooks) are described,
    /// never shown.
    pub value: String,
    /// The shop the row belongs to; `None` for rows that belong to no shop and for the global
    /// rows (users, roles, FAQ, …). A refused row blocks only itself and the rows that depend
    /// on it; only a refused `shops` row or a [`Rule::ShopConflict`] blocks its whole shop.
    pub shop: Option<Uuid>,
}

/// What happened to one unit of the import (a shop, or the global rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Dry run: nothing blocks it; a real run would write it.
    WouldImport,
    /// Written and committed.
    Imported,
    /// Not written: its shop row was refused or conflicts with the target (the report holds the
    /// blocking entry, see [`Outcome::reason`]).
    Skipped,
    /// The target database refused the write; nothing of it was committed.
    Failed,
}

/// The result for one shop, or for the global rows (users, roles, their links, FAQ, early
/// access sign-ups, licences without an order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The shop's id; `None` for the global rows.
    pub shop: Option<Uuid>,
    /// The shop's name in the old database (`"(global)"` for the global rows).
    pub name: String,
    /// What happened.
    pub status: Status,
    /// Good rows read from the old database.
    pub rows: u64,
    /// Rows of this unit refused (each listed in [`Report::entries`]); the good rows are
    /// imported all the same unless the shop was blocked.
    pub refused: u64,
    /// Rows actually inserted; `rows - written` were already present (a re-run). Always 0 in a
    /// dry run.
    pub written: u64,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// Every refused row, in the order the import met them: users, then rows that belong to no
    /// shop, then each shop by id, its tables parent-first, each table by id.
    pub entries: Vec<Entry>,
    /// Global rows first, then one outcome per shop, by id.
    pub outcomes: Vec<Outcome>,
    /// Per table of the old database, in import order: what became of every row read.
    pub tables: Vec<TableSummary>,
}

/// What became of the rows of one old table. `read = imported + refused + skipped`, and
/// without `--shop` `read` is the table's row count: no row is left out silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSummary {
    /// Old table (`public.<table>`).
    pub table: &'static str,
    /// Rows read.
    pub read: u64,
    /// Good rows imported (a dry run: that would be imported), new or already present.
    pub imported: u64,
    /// Rows refused, each with at least one entry.
    pub refused: u64,
    /// Good rows not imported because their shop was skipped or failed.
    pub skipped: u64,
}

impl Report {
    pub(crate) fn table(&mut self, table: &'static str) -> &mut TableSummary {
        let i = match self.tables.iter().position(|t| t.table == table) {
            Some(i) => i,
            None => {
                self.tables.push(TableSummary {
                    table,
                    read: 0,
                    imported: 0,
                    refused: 0,
                    skipped: 0,
                });
                self.tables.len() - 1
            }
        };
        &mut self.tables[i]
    }

    /// The per-table summary as text: one line per table.
    pub fn summary_text(&self) -> String {
        let mut out = format!(
            "{:<26} {:>9} {:>9} {:>8} {:>8}\n",
            "table", "read", "imported", "refused", "skipped"
        );
        for t in &self.tables {
            let _ = writeln!(
                out,
                "{:<26} {:>9} {:>9} {:>8} {:>8}",
                t.table, t.read, t.imported, t.refused, t.skipped
            );
        }
        out
    }
}

impl Report {
    /// The entries as text, one line each: table, id, rule, value.
    pub fn entries_text(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            let _ = writeln!(out, "{:<26} {} {:<23} {}", e.table, e.id, e.rule, e.value);
        }
        out
    }

    /// True when every shop and the global rows were imported (or would be) with nothing
    /// refused.
    pub fn is_clean(&self) -> bool {
        self.entries.is_empty()
            && self
                .outcomes
                .iter()
                .all(|o| matches!(o.status, Status::Imported | Status::WouldImport))
    }
}

impl fmt::Display for Report {
    /// The human-readable report: the refused rows, then one line per shop.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let run = if self.dry_run { "dry run" } else { "import" };
        writeln!(
            f,
            "shop import ({run}): {} refused row(s)",
            self.entries.len()
        )?;
        f.write_str(&self.entries_text())?;
        for o in &self.outcomes {
            match o.shop {
                Some(id) => write!(f, "shop {id} {:?}: ", o.name)?,
                None => write!(
                    f,
                    "global rows (users, roles, faq, early access, licenses without an order): "
                )?,
            }
            match o.status {
                Status::WouldImport => {
                    writeln!(f, "would import {} row(s), {} refused", o.rows, o.refused)?
                }
                Status::Imported => writeln!(
                    f,
                    "imported {} row(s), {} new, {} already present, {} refused",
                    o.rows,
                    o.written,
                    o.rows - o.written,
                    o.refused
                )?,
                Status::Skipped | Status::Failed => writeln!(
                    f,
                    "{}: {}",
                    if o.status == Status::Skipped {
                        "skipped"
                    } else {
                        "failed"
                    },
                    o.reason.as_deref().unwrap_or("")
                )?,
            }
        }
        f.write_str(&self.summary_text())
    }
}
