//! The text rules every shop input follows, checked before any SQL runs.
//!
//! - **NUL bytes** (which PostgreSQL text cannot hold) are refused, in values, lookups, list
//!   filters and JSON alike: [`Error::InvalidInput`] naming the field. Nothing is stripped.
//! - **Length**: a value longer than its column (`varchar(n)` counts characters) is refused
//!   naming the field; unbounded `text` columns take at most [`LONG_TEXT`] characters.
//! - **Names** (shop, category, product, tag and attribute names) must hold a non-blank
//!   character: `"   "` is refused as missing.

use serde_json::Value;

use crate::{Error, Result};

/// Longest value accepted for an unbounded `text` column (descriptions, notes), in characters.
pub const LONG_TEXT: usize = 1_000_000;

/// Checks a text value against its column: no NUL byte, at most `max_chars` characters.
pub(crate) fn text(field: &'static str, value: &str, max_chars: usize) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::invalid_input(format!("{field} contains a NUL byte")));
    }
    if value.chars().nth(max_chars).is_some() {
        return Err(Error::invalid_input(format!(
            "{field} is longer than {max_chars} characters"
        )));
    }
    Ok(())
}

/// [`text`] for an optional value.
pub(crate) fn opt_text(field: &'static str, value: Option<&str>, max_chars: usize) -> Result<()> {
    value.map_or(Ok(()), |v| text(field, v, max_chars))
}

/// A required name: [`text`], and not blank.
pub(crate) fn name(field: &'static str, value: &str, max_chars: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid_input(format!("{field} is required")));
    }
    text(field, value, max_chars)
}

/// An optional name: absent is fine, present must satisfy [`name`].
pub(crate) fn opt_name(field: &'static str, value: Option<&str>, max_chars: usize) -> Result<()> {
    value.map_or(Ok(()), |v| name(field, v, max_chars))
}

/// Whether any string or key of `v`, at any depth, holds a NUL byte.
pub(crate) fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// A JSON value bound into a `jsonb` column: no NUL byte in any string or key (`jsonb` refuses
/// `\u0000`).
pub(crate) fn json(field: &'static str, value: &Value) -> Result<()> {
    if has_nul(value) {
        return Err(Error::invalid_input(format!("{field} contains a NUL byte")));
    }
    Ok(())
}

/// [`json`] for an optional value.
pub(crate) fn opt_json(field: &'static str, value: Option<&Value>) -> Result<()> {
    value.map_or(Ok(()), |v| json(field, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert!(text("name", "ab", 2).is_ok());
        assert!(text("name", "abc", 2).is_err());
        assert!(text("name", "ééé", 3).is_ok(), "characters, not bytes");
        assert!(text("name", "a\0", 10).is_err());
        assert!(name("name", "  \t", 10).is_err());
        assert!(json("config", &serde_json::json!({"k": ["a\u{0}"]})).is_err());
        assert!(json("config", &serde_json::json!({"k\u{0}": 1})).is_err());
    }
}
