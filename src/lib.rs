//! shared-db

pub mod error;
pub mod shop;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tx;

pub use error::{Error, Result, ResultExt};

/// All schema migrations of the crate.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
