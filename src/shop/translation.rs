//! The translation scheme shared by categories, products, tags and attributes.
//!
//! A translation is one row per parent with fixed columns for three language slots: `main_*`
//! (required), `alt1_*` and `alt2_*` (optional). Which real language a slot stands for is
//! configured per shop in `shops.config.languages`. Translations are written in the same
//! transaction as their parent; blank optional values are stored as NULL.
//!
//! Reads return a [`Translated`] value: the parent row plus its translation, fetched in one query
//! (a `LEFT JOIN` selecting the translation's columns as `t_*`). Single reads (`query_as!`) and
//! list pages (`FromRow`) decode into the same flat row struct of each entity, which is then
//! split into the two halves.

use serde::{Deserialize, Serialize};

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

/// An optional translated value: blank means absent (stored as NULL); otherwise the text rules of
/// [`super::input`].
pub(crate) fn optional(
    field: &'static str,
    value: Option<&String>,
    max_chars: usize,
) -> crate::Result<Option<String>> {
    match value {
        Some(v) if !v.trim().is_empty() => {
            super::input::text(field, v, max_chars)?;
            Ok(Some(v.clone()))
        }
        _ => Ok(None),
    }
}
