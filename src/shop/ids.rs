//! Typed ids of the shop schema.
//!
//! Two ids that sit next to each other in one call cannot be swapped: every shop-scoped function
//! takes a [`ShopId`] and products are named by a [`ProductId`], so passing them the wrong way
//! round is a compile error, not a `NotFound` at run time. Both are transparent over `uuid`
//! (`#[sqlx(transparent)]`, and `sqlx.toml` maps the id columns of the shop tables to them, so
//! `query_as!` rows carry them too). Serialized as the plain uuid string.
//!
//! ```compile_fail
//! use shared_db::shop::{ProductId, ShopId, products};
//!
//! async fn swapped(db: &shared_db::Database, shop: ShopId, product: ProductId) {
//!     // the product id where the shop id belongs: does not compile
//!     let _ = products::get(db.pool(), product, shop).await;
//! }
//! ```
//!
//! ```
//! use shared_db::shop::{ProductId, ShopId, products};
//!
//! async fn right(db: &shared_db::Database, shop: ShopId, product: ProductId) {
//!     let _ = products::get(db.pool(), shop, product).await;
//! }
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a uuid read from elsewhere (a URL path, a fixture).
            pub const fn new(id: Uuid) -> Self {
                $name(id)
            }
            /// The plain uuid, for binding into SQL and for logs.
            pub const fn get(self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                $name(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

id_type!(
    /// The id of a shop (`shop.shops.id`, and the `shop_id` of every shop-owned row).
    ShopId
);
id_type!(
    /// The id of a product (`shop.products.id`, and every `product_id` that points at one).
    ProductId
);
