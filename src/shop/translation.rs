//! The translation scheme shared by categories, products, tags and attributes.
//!
//! A translation is one row per parent with fixed columns for three language slots: `main_*`
//! (required), `alt1_*` and `alt2_*` (optional). Which real language a slot stands for is
//! configured per shop in `shops.config.languages`. Translations are written in the same
//! transaction as their parent; empty strings are stored as NULL.
//!
//! Reads return a [`Translated`] value: the parent row plus its translation, fetched in one query
//! (`to_jsonb(parent)`, `to_jsonb(translation)` of a `LEFT JOIN`, decoded by serde into the row
//! structs).

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sqlx::{FromRow, Row, postgres::PgRow, types::Json};

/// A language slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// The shop's main language (always present).
    #[default]
    Main,
    /// First alternative language.
    Alt1,
    /// Second alternative language.
    Alt2,
}

impl Lang {
    /// The slot's name as used in SQL and in APIs: `main`, `alt1`, `alt2`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Lang::Main => "main",
            Lang::Alt1 => "alt1",
            Lang::Alt2 => "alt2",
        }
    }
}

impl std::str::FromStr for Lang {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "main" => Ok(Lang::Main),
            "alt1" => Ok(Lang::Alt1),
            "alt2" => Ok(Lang::Alt2),
            _ => Err(crate::Error::invalid_input(
                "lang must be main, alt1 or alt2",
            )),
        }
    }
}

/// A translation row that has a name in each slot.
pub trait Named {
    /// The main name (always present).
    fn main_name(&self) -> &str;
    /// The name in an alternative slot, if set.
    fn alt_name(&self, lang: Lang) -> Option<&str>;
    /// The name in `lang`, falling back to the main name when that slot is empty.
    fn name(&self, lang: Lang) -> &str {
        match lang {
            Lang::Main => self.main_name(),
            _ => self.alt_name(lang).unwrap_or_else(|| self.main_name()),
        }
    }
}

/// Implements [`Named`] for translation rows with `main_name`, `alt1_name` and `alt2_name` fields.
macro_rules! impl_named {
    ($($row:ty),+ $(,)?) => {$(
        impl $crate::shop::translation::Named for $row {
            fn main_name(&self) -> &str {
                &self.main_name
            }
            fn alt_name(&self, lang: $crate::shop::translation::Lang) -> Option<&str> {
                use $crate::shop::translation::Lang;
                match lang {
                    Lang::Main => Some(&self.main_name),
                    Lang::Alt1 => self.alt1_name.as_deref(),
                    Lang::Alt2 => self.alt2_name.as_deref(),
                }
            }
        }
    )+};
}
pub(crate) use impl_named;

/// A parent row together with its translation (absent only for rows written by another
/// service without one).
#[derive(Debug, Clone, Serialize)]
pub struct Translated<T, Tr> {
    /// The parent row.
    #[serde(flatten)]
    pub item: T,
    /// Its translation.
    pub translation: Option<Tr>,
}

impl<T, Tr: Named> Translated<T, Tr> {
    /// The name in `lang` with fallback to main; `None` without a translation row.
    pub fn name(&self, lang: Lang) -> Option<&str> {
        self.translation.as_ref().map(|t| t.name(lang))
    }
}

impl<T, Tr> From<(T, Tr)> for Translated<T, Tr> {
    fn from((item, translation): (T, Tr)) -> Self {
        Translated {
            item,
            translation: Some(translation),
        }
    }
}

/// Decodes the `item` and `translation` JSON columns selected by list and get queries.
impl<'r, T, Tr> FromRow<'r, PgRow> for Translated<T, Tr>
where
    T: DeserializeOwned,
    Tr: DeserializeOwned,
{
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let Json(item): Json<T> = row.try_get("item")?;
        let translation: Option<Json<Tr>> = row.try_get("translation")?;
        Ok(Translated {
            item,
            translation: translation.map(|j| j.0),
        })
    }
}

/// `Some("")` and whitespace-free empty values become `None` (stored as NULL).
pub(crate) fn blank_to_none(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// A required slot must not be empty.
pub(crate) fn required(field: &'static str, value: &str) -> crate::Result<()> {
    if value.is_empty() {
        return Err(crate::Error::invalid_input(format!("{field} is required")));
    }
    Ok(())
}
