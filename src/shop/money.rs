//! Amounts of money in the shop schema.
//!
//! Every price and total is `numeric(12,2)` in PostgreSQL and [`Decimal`] in Rust: whole cents,
//! at most 9 999 999 999.99, never negative (`CHECK (… >= 0)` on every column). Two decimal
//! places because every currency the shops sell in (EUR, USD) is counted in cents; twelve
//! digits because the largest order total the shops have seen is six digits and one int-sized
//! margin above that is cheap. A [`Decimal`] has no NaN or infinity, so a non-finite amount
//! cannot be written. The prices inside an order's `order_info` JSON carry the same scale: a
//! string with two decimals (`"19.90"`).
//!
//! An amount with more than two decimals is refused ([`Error::InvalidInput`]) rather than
//! rounded: a price is what the shop typed, and the library does not change it silently.

use rust_decimal::Decimal;

use crate::{Error, Result};

/// Decimal places of every money column (`numeric(12,2)`).
pub const SCALE: u32 = 2;

/// The largest amount a `numeric(12,2)` column holds: 9 999 999 999.99.
pub const MAX: Decimal = Decimal::from_parts(3_567_587_327, 232, 0, false, 2);

/// Checks an amount against the money columns (not negative, at most two decimals, at most
/// [`MAX`]) and returns it with exactly two decimals, as it is stored.
pub(crate) fn check(field: &'static str, amount: Decimal) -> Result<Decimal> {
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(Error::invalid_input(format!(
            "{field} must not be negative"
        )));
    }
    if amount.normalize().scale() > SCALE {
        return Err(Error::invalid_input(format!(
            "{field} has more than {SCALE} decimal places"
        )));
    }
    if amount > MAX {
        return Err(Error::invalid_input(format!("{field} exceeds {MAX}")));
    }
    let mut stored = amount;
    stored.rescale(SCALE);
    Ok(stored)
}

/// [`check`] for an optional amount (`None` is SQL NULL: no price set).
pub(crate) fn check_opt(field: &'static str, amount: Option<Decimal>) -> Result<Option<Decimal>> {
    amount.map(|a| check(field, a)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn max_is_the_largest_numeric_12_2() {
        assert_eq!(MAX, Decimal::from_str("9999999999.99").unwrap());
    }

    #[test]
    fn amounts_are_stored_with_two_decimals_or_refused() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(check("price", d("19.9")).unwrap().to_string(), "19.90");
        assert_eq!(check("price", d("19.900")).unwrap().to_string(), "19.90");
        assert_eq!(check("price", d("-0")).unwrap().to_string(), "0.00");
        assert!(check("price", d("0.001")).is_err());
        assert!(check("price", d("-0.01")).is_err());
        assert!(check("price", d("10000000000")).is_err());
    }
}
