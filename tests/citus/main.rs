//! Stories on a Citus cluster of three nodes on this machine (a coordinator and two workers,
//! `shared_db::embedded::citus`): the cluster itself, the shop distributed by `shop_id`, every
//! shop statement routed to one shard, and migrations applied after distribution. Citus is
//! built from the vendored tarball on first use (README, "Two commands"); nothing here is skipped
//! when it is missing: the build's error fails the test.

mod cluster;
