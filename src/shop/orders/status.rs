//! [`OrderStatus`], the PostgreSQL enum `shop.order_status`.

use sqlx::postgres::PgTypeInfo;
use sqlx::{Encode, Postgres, Type};

use crate::enum_label::label_enum;

label_enum! {
    /// Status of an order: PostgreSQL enum `shop.order_status`.
    ///
    /// A status this release does not know (added by a newer migration or another service,
    /// e.g. `refunded`) reads as [`OrderStatus::Unknown`] carrying its label, never as an error:
    /// the order is listed and read like any other, but update, complete and cancel refuse it
    /// with [`Error::InvalidTransition`](crate::Error::InvalidTransition) naming the label. A
    /// status given as input ([`FromStr`](std::str::FromStr), `Deserialize`) must be one of the
    /// known ones.
    pub enum OrderStatus: "shop.order_status" {
        /// Placed, not yet handled; the only status that can change.
        Pending => "pending",
        /// Handled: stock was taken, `completed_by`/`completed_at` are set.
        Complete => "complete",
        /// Cancelled before completion; stock was never taken.
        Cancelled => "cancelled",
    }
}

impl Type<Postgres> for OrderStatus {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("shop.order_status")
    }
}

/// Writes the label; an `Unknown` value writes the label it carries.
impl Encode<'_, Postgres> for OrderStatus {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as Encode<Postgres>>::encode_by_ref(&self.as_str(), buf)
    }
}
