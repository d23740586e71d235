//! Reference data of the shop schema: the `admin` role and the default shop.
//!
//! This is a **data step, separate from the schema migrations**: the migrations create empty
//! tables; [`install`] adds the reference rows. It is idempotent (`INSERT … ON CONFLICT DO
//! NOTHING` on the natural keys), so it can be run at every deployment, and skipped entirely
//! where the rows are not wanted (tests, or a database that receives migrated data).
//!
//! ```no_run
//! # async fn f(conn: &mut sqlx::PgConnection) -> shared_db::Result<()> {
//! let installed = shared_db::shop::reference_data::install(conn).await?;
//! println!("admin role {}, default shop {}", installed.admin_role_id, installed.default_shop_id);
//! # Ok(()) }
//! ```

use sqlx::PgConnection;
use uuid::Uuid;

use crate::{Result, tx};

/// Name of the default shop.
pub const DEFAULT_SHOP_NAME: &str = "shop";

/// Ids of the reference rows (whether just created or already present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// The `admin` role.
    pub admin_role_id: Uuid,
    /// The default shop.
    pub default_shop_id: super::ShopId,
}

/// Inserts the reference rows that are missing, in one transaction; existing rows are left as
/// they are.
#[tracing::instrument(skip_all)]
pub async fn install(conn: &mut PgConnection) -> Result<Installed> {
    tx::transaction(conn, async |tx| {
        sqlx::query!(
            r#"INSERT INTO shop.roles (name, description) VALUES ($1, 'Admin role')
               ON CONFLICT (name) DO NOTHING"#,
            super::roles::ADMIN
        )
        .execute(&mut *tx)
        .await?;
        // the VAT values of the original seed: 21, 15, 10, 5, 2, 0
        sqlx::query!(
            r#"INSERT INTO shop.shops (name, description, vat_standard, vat_lower_1, vat_lower_2,
                   vat_lower_3, vat_special, vat_zero)
               VALUES ($1, 'Default shop', 21, 15, 10, 5, 2, 0)
               ON CONFLICT (name) DO NOTHING"#,
            DEFAULT_SHOP_NAME
        )
        .execute(&mut *tx)
        .await?;
        let admin_role_id = sqlx::query_scalar!(
            "SELECT id FROM shop.roles WHERE name = $1",
            super::roles::ADMIN
        )
        .fetch_one(&mut *tx)
        .await?;
        let default_shop_id = sqlx::query_scalar!(
            "SELECT id FROM shop.shops WHERE name = $1",
            DEFAULT_SHOP_NAME
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok(Installed {
            admin_role_id,
            default_shop_id,
        })
    })
    .await
}
