//! Shop stories: scoping, translations, lists, orders and deletes, each against a PostgreSQL
//! database of its own (`shared_db::testing::TestDatabase`).
//!
//! Most stories start from `tests/fixtures/shop/two_shops.sql`: shops *alpha* and *beta*, each
//! owning one row of every shop-owned table. Their ids are below.

mod bounded;
mod catalog;
mod deletes;
mod input;
mod lists;
mod money;
mod ordering;
mod orders;
mod people;
mod retries;
mod scoping;
mod secrets;
mod stock;
mod tenancy;
mod translations;

use shared_db::shop::{ProductId, ShopId};
use shared_db::testing::{Backend, TestDatabase};
use shared_db::{Error, Result};
use uuid::Uuid;

/// Ids of one shop of the fixture.
#[derive(Debug, Clone, Copy)]
pub struct Fx {
    pub shop: ShopId,
    pub category: Uuid,
    pub product: ProductId,
    pub tag: Uuid,
    pub link: Uuid,
    pub attribute: Uuid,
    pub option: Uuid,
    pub pav: Uuid,
    pub account: Uuid,
    pub order: Uuid,
    pub info: Uuid,
    pub user: Uuid,
}

const fn fx(prefix: u128) -> Fx {
    let p = prefix << 96;
    Fx {
        shop: ShopId::new(Uuid::from_u128(p | 0x1)),
        category: Uuid::from_u128(p | 0x10),
        product: ProductId::new(Uuid::from_u128(p | 0x20)),
        tag: Uuid::from_u128(p | 0x30),
        link: Uuid::from_u128(p | 0x31),
        attribute: Uuid::from_u128(p | 0x40),
        option: Uuid::from_u128(p | 0x41),
        pav: Uuid::from_u128(p | 0x42),
        account: Uuid::from_u128(p | 0x50),
        order: Uuid::from_u128(p | 0x60),
        info: Uuid::from_u128(p | 0x70),
        user: Uuid::from_u128(p | 0x80),
    }
}

/// Shop alpha of the fixture.
pub const ALPHA: Fx = fx(0xaaaaaaaa);
/// Shop beta of the fixture.
pub const BETA: Fx = fx(0xbbbbbbbb);

/// Where this suite's databases are made: one PostgreSQL server. The `citus` test binary
/// includes this suite as a module and brings its own `BACKEND` (the Citus cluster, the shop
/// distributed), which `crate::BACKEND` then names.
#[allow(dead_code)]
pub const BACKEND: Backend = Backend::Plain;

/// A fresh migrated database on this suite's backend.
pub async fn fresh() -> Result<TestDatabase> {
    TestDatabase::on(crate::BACKEND).await
}

/// A fresh database holding the two-shop fixture.
pub async fn two_shops() -> Result<TestDatabase> {
    TestDatabase::with_fixture_on(
        crate::BACKEND,
        include_str!("../fixtures/shop/two_shops.sql"),
    )
    .await
}

/// Fails unless `r` is `Error::NotFound`.
#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(r: Result<T>) {
    match r {
        Err(Error::NotFound) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Fails unless `r` is `Error::Conflict` on `constraint`.
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(r: Result<T>, constraint: &str) {
    match r {
        Err(Error::Conflict { constraint: c }) if c == constraint => {}
        other => panic!("expected Conflict on {constraint}, got {other:?}"),
    }
}

/// Fails unless `r` is `Error::InvalidInput`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(r: Result<T>) {
    match r {
        Err(Error::InvalidInput(_)) => {}
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}
