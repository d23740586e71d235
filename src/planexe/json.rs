//! Reading `json` columns that the Python services wrote.
//!
//! Python's `json.dumps` escapes every character outside ASCII, and a string cut in the middle of
//! an emoji leaves half of a UTF-16 surrogate pair behind: `"\ud83d"`. PostgreSQL's `json` type
//! stores that text unchecked, but `serde_json` (rightly) refuses a lone surrogate, so a plain
//! `serde_json::Value` decode would fail the whole row. [`LossyJson`] is what every `json` column
//! decodes into (mapped once in `sqlx.toml`): the stored text with each lone surrogate escape
//! replaced by `\ufffd` before parsing, so the row is returned with U+FFFD (`�`) where the broken
//! character was. Well-formed surrogate pairs and every other escape are kept as written.

use std::borrow::{Borrow, Cow};
use std::ops::Deref;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::{PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Decode, Postgres, Type, TypeInfo, ValueRef};

/// A JSON value read from a `json` column, with lone UTF-16 surrogate escapes (as Python's
/// `json.dumps` writes for a cut-off emoji) replaced by U+FFFD. Derefs to [`serde_json::Value`];
/// serializes exactly as that value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LossyJson(pub Value);

impl LossyJson {
    /// The parsed value.
    pub fn into_inner(self) -> Value {
        self.0
    }

    /// Parses JSON text, replacing lone surrogate escapes with U+FFFD first.
    pub fn parse(text: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(&repair_lone_surrogates(text)).map(LossyJson)
    }
}

impl Deref for LossyJson {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.0
    }
}

impl Borrow<Value> for LossyJson {
    fn borrow(&self) -> &Value {
        &self.0
    }
}

impl From<Value> for LossyJson {
    fn from(value: Value) -> Self {
        LossyJson(value)
    }
}

impl From<LossyJson> for Value {
    fn from(value: LossyJson) -> Self {
        value.0
    }
}

impl PartialEq<Value> for LossyJson {
    fn eq(&self, other: &Value) -> bool {
        self.0 == *other
    }
}

impl Type<Postgres> for LossyJson {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("json")
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <sqlx::types::Json<()> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for LossyJson {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let jsonb = value.type_info().name().eq_ignore_ascii_case("jsonb");
        let mut bytes = value.as_bytes()?;
        if jsonb && value.format() == PgValueFormat::Binary {
            // jsonb's binary form starts with a version byte (1); `json`'s is the text itself.
            bytes = bytes.get(1..).unwrap_or_default();
        }
        Ok(LossyJson::parse(bytes)?)
    }
}

/// The JSON text with every `\uD800`–`\uDFFF` escape that is not half of a well-formed pair
/// (high `\uD800–\uDBFF` directly followed by low `\uDC00–\uDFFF`) replaced by `\ufffd`. Only
/// escapes are touched (an escaped backslash `\\` is stepped over), and the replacement has the
/// same length, so valid JSON stays valid. Borrows the input when there is nothing to repair.
pub fn repair_lone_surrogates(text: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_unit(text, i) else {
            i += 2; // any other escape, `\\` included
            continue;
        };
        match unit {
            0xD800..=0xDBFF => {
                if matches!(escape_unit(text, i + 6), Some(0xDC00..=0xDFFF)) {
                    i += 12;
                } else {
                    out.get_or_insert_with(|| text.to_vec())[i..i + 6].copy_from_slice(b"\\ufffd");
                    i += 6;
                }
            }
            0xDC00..=0xDFFF => {
                out.get_or_insert_with(|| text.to_vec())[i..i + 6].copy_from_slice(b"\\ufffd");
                i += 6;
            }
            _ => i += 6,
        }
    }
    match out {
        Some(repaired) => Cow::Owned(repaired),
        None => Cow::Borrowed(text),
    }
}

/// The UTF-16 code unit of a `\uXXXX` escape starting at `at`, if there is one.
fn escape_unit(text: &[u8], at: usize) -> Option<u16> {
    let esc = text.get(at..at + 6)?;
    if esc[0] != b'\\' || esc[1] != b'u' {
        return None;
    }
    let hex = std::str::from_utf8(&esc[2..]).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Value {
        LossyJson::parse(text.as_bytes()).expect("parses").0
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        assert!(serde_json::from_str::<Value>(r#"{"x": "ab\ud83d"}"#).is_err());
        assert_eq!(read(r#"{"x": "ab\ud83d"}"#), json!({ "x": "ab\u{FFFD}" }));
        assert_eq!(read(r#"["\udc00x"]"#), json!(["\u{FFFD}x"]));
        assert_eq!(read(r#""\uD83D\uD83D\uDE00""#), json!("\u{FFFD}😀"));
    }

    #[test]
    fn everything_else_is_kept_as_written() {
        assert_eq!(read(r#""\ud83d\ude00""#), json!("😀"));
        assert_eq!(read(r#""\\ud83d""#), json!("\\ud83d"), "escaped backslash");
        assert_eq!(read(r#""\\\ud83d""#), json!("\\\u{FFFD}"));
        assert_eq!(read(r#""\u00e9\n""#), json!("é\n"));
        let plain = br#"{"a": [1, 2]}"#;
        assert!(matches!(repair_lone_surrogates(plain), Cow::Borrowed(_)));
    }
}
