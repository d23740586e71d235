//! [`EnumLabel`]: a PostgreSQL enum label kept inline, so the enums that carry one stay `Copy`.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Serialize, Serializer};

/// The label of a PostgreSQL enum value as it was read, for a label this release does not know
/// (the `Unknown` variant of [`PlanState`](crate::planexe::PlanState),
/// [`EventType`](crate::planexe::EventType) and
/// [`OrderStatus`](crate::shop::orders::OrderStatus)).
///
/// PostgreSQL labels are at most 63 bytes (`NAMEDATALEN - 1`), so the label is stored inline and
/// the type is `Copy`. Compares, hashes, prints ([`Display`](fmt::Display) and
/// [`Debug`](fmt::Debug)) and serializes as the label string.
#[derive(Clone, Copy)]
pub struct EnumLabel {
    len: u8,
    bytes: [u8; EnumLabel::MAX_LEN],
}

impl EnumLabel {
    /// The longest label PostgreSQL allows, in bytes (`NAMEDATALEN - 1`).
    pub const MAX_LEN: usize = 63;

    /// The label `label`; `None` when it is longer than [`MAX_LEN`](Self::MAX_LEN) bytes, which
    /// no PostgreSQL enum label is.
    pub fn new(label: &str) -> Option<Self> {
        (label.len() <= Self::MAX_LEN).then(|| Self::truncated(label))
    }

    /// `label` cut to at most [`MAX_LEN`](Self::MAX_LEN) bytes at a character boundary. Used for
    /// labels read from the server, which fit unless the server was built with a larger
    /// `NAMEDATALEN`; a read never fails on its length.
    pub(crate) fn truncated(label: &str) -> Self {
        let mut end = label.len().min(Self::MAX_LEN);
        while !label.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; Self::MAX_LEN];
        bytes[..end].copy_from_slice(&label.as_bytes()[..end]);
        EnumLabel {
            len: end as u8,
            bytes,
        }
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        // Built only from a `&str` cut at a character boundary.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl PartialEq for EnumLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for EnumLabel {}

impl Hash for EnumLabel {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for EnumLabel {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EnumLabel {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for EnumLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for EnumLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl AsRef<str> for EnumLabel {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for EnumLabel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Declares an enum mapped to a PostgreSQL enum type, the one way the library's enums read and
/// write their labels: the listed variants, each with its label, plus `Unknown(EnumLabel)` for any
/// other label read from the database. Generates `as_str`, `from_label` (reads: never fails),
/// `Display`, `FromStr` and `Deserialize` (input: an unknown label is
/// [`Error::UnknownEnumLabel`](crate::Error::UnknownEnumLabel)), `Serialize` (the label) and
/// `Decode` (through `from_label`). `Type` and, where wanted, `Encode` are written by hand.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $type_name:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A label this release does not know, as read from the database: written by a newer
            /// release or by another service (see the type's documentation). Pass it through as
            /// it is (show it, serialize it, write it back); never treat it as any known value.
            /// Reads produce it only for labels outside the variants above.
            Unknown($crate::EnumLabel),
        }

        impl $name {
            /// The label as stored in PostgreSQL.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $label, )+
                    $name::Unknown(label) => label.as_str(),
                }
            }

            /// The value a label read from the database stands for: the known variant, or
            /// `Unknown` carrying the label. Never fails (compare [`FromStr`](std::str::FromStr),
            /// which is for input and refuses unknown labels).
            pub fn from_label(label: &str) -> Self {
                Self::known(label)
                    .unwrap_or_else(|| $name::Unknown($crate::EnumLabel::truncated(label)))
            }

            fn known(label: &str) -> Option<Self> {
                match label {
                    $( $label => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Input: a label this release knows, else [`Error::UnknownEnumLabel`](crate::Error::UnknownEnumLabel).
        impl std::str::FromStr for $name {
            type Err = $crate::Error;
            fn from_str(s: &str) -> Result<Self, $crate::Error> {
                Self::known(s).ok_or_else(|| $crate::Error::UnknownEnumLabel {
                    type_name: $type_name,
                    value: s.to_owned(),
                })
            }
        }

        /// The label as a string (an `Unknown` value serializes as the label it carries).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        /// Input, like [`FromStr`](std::str::FromStr): a label this release knows; any other is
        /// refused.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let label = String::deserialize(deserializer)?;
                label.parse().map_err(serde::de::Error::custom)
            }
        }

        /// Never fails on a label: an unknown one decodes as `Unknown`.
        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let label = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(Self::from_label(label))
            }
        }
    };
}

pub(crate) use label_enum;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_any_postgres_label_and_compares_as_its_text() {
        let archived = EnumLabel::new("archived").unwrap();
        assert_eq!(archived.as_str(), "archived");
        assert_eq!(archived, "archived");
        assert_eq!(archived, EnumLabel::truncated("archived"));
        assert_eq!(format!("{archived} {archived:?}"), r#"archived "archived""#);
        assert_eq!(serde_json::to_string(&archived).unwrap(), r#""archived""#);

        let longest = "é".repeat(31) + "x"; // 63 bytes
        assert_eq!(EnumLabel::new(&longest).unwrap().as_str(), longest);
        assert_eq!(EnumLabel::new(&(longest.clone() + "x")), None);
        // Cut at a character boundary, never inside one.
        let cut = EnumLabel::truncated(&"é".repeat(40));
        assert_eq!(cut.as_str(), "é".repeat(31));
        assert_eq!(EnumLabel::new("").unwrap().as_str(), "");
    }

    #[test]
    fn a_label_enum_reads_every_label_but_takes_only_known_ones_as_input() {
        use crate::planexe::PlanState;
        assert_eq!(PlanState::from_label("failed"), PlanState::Failed);
        let archived = PlanState::from_label("archived");
        assert!(matches!(archived, PlanState::Unknown(l) if l == "archived"));
        assert_eq!(archived.as_str(), "archived");
        assert_eq!(
            format!("{archived} {archived:?}"),
            r#"archived Unknown("archived")"#
        );
        assert_eq!(serde_json::to_string(&archived).unwrap(), r#""archived""#);

        assert_eq!("failed".parse::<PlanState>().unwrap(), PlanState::Failed);
        assert!(matches!(
            "archived".parse::<PlanState>(),
            Err(crate::Error::UnknownEnumLabel { type_name: "planstate", value }) if value == "archived"
        ));
        let stopped = serde_json::to_string(&PlanState::Stopped).unwrap();
        assert_eq!(stopped, r#""stopped""#);
        assert_eq!(
            serde_json::from_str::<PlanState>(&stopped).unwrap(),
            PlanState::Stopped
        );
        assert!(serde_json::from_str::<PlanState>(r#""archived""#).is_err());
    }
}
