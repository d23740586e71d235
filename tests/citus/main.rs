//! Stories on a Citus cluster of three nodes on this machine (a coordinator and two workers,
//! `shared_db::embedded::citus`): the cluster itself, the shop distributed by `shop_id`, every
//! shop statement routed to one shard, and migrations applied after distribution. Citus is
//! built from the vendored tarball on first use (README, "Two commands"); nothing here is skipped
//! when it is missing: the build's error fails the test.

mod cluster;
mod distribute;
mod import;
mod migrate;
mod planexe;
mod routing;

use shared_db::testing::Backend;

/// The backend of the shop suite included below: every `two_shops()` / `fresh()` database is
/// made on the Citus cluster, migrated, and the shop distributed by `shop_id`.
pub const BACKEND: Backend = Backend::Citus;

/// The whole shop suite (`tests/shop`), run on the distributed schema.
#[path = "../shop/main.rs"]
mod shop;
