//! shared-db: typed, build-time-checked PostgreSQL access shared by the planexe and shop services.
#![warn(missing_docs)]

pub mod error;
pub mod planexe;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tx;

pub use error::{Error, Result, ResultExt};

/// The embedded migrations of every schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();
