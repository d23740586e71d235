//! [`OrderStatus`], the PostgreSQL enum `shop.order_status`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

use crate::Error;

/// Status of an order. A label this library does not know (added by a newer migration) reads as
/// [`Error::UnknownEnumLabel`], never as an opaque decode error or a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Placed, not yet handled; the only status that can change.
    Pending,
    /// Handled: stock was taken, `completed_by`/`completed_at` are set.
    Complete,
    /// Cancelled before completion; stock was never taken.
    Cancelled,
}

impl OrderStatus {
    /// The label as stored in PostgreSQL.
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Complete => "complete",
            OrderStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "pending" => OrderStatus::Pending,
            "complete" => OrderStatus::Complete,
            "cancelled" => OrderStatus::Cancelled,
            other => {
                return Err(Error::UnknownEnumLabel {
                    type_name: "shop.order_status",
                    value: other.to_owned(),
                });
            }
        })
    }
}

impl Type<Postgres> for OrderStatus {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("shop.order_status")
    }
}

impl<'r> Decode<'r, Postgres> for OrderStatus {
    fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let label = <&str as Decode<Postgres>>::decode(value)?;
        Ok(label.parse::<OrderStatus>()?)
    }
}

impl Encode<'_, Postgres> for OrderStatus {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as Encode<Postgres>>::encode_by_ref(&self.as_str(), buf)
    }
}
