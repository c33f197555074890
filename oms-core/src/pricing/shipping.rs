//! The shipping charge of an order: free, flat, or by weight, optionally free over a threshold.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::money::{Currency, Money};

/// How an order's shipping is charged.
///
/// `free_over` compares with the merchandise amount after every discount, as the catalog prices
/// it (net of tax when tax-exclusive, gross when tax-inclusive): an order at or above it ships
/// free. Shipping is not taxed.
///
/// ```
/// use oms_core::money::{Currency, Money};
/// use oms_core::pricing::ShippingRate;
/// let usd = |s| Money::parse(s, Currency::USD).unwrap();
/// let rate = ShippingRate::PerWeight { base: usd("4.00"), per_kg: usd("1.50"), free_over: Some(usd("100")) };
/// // 2.1 kg is 3 started kilograms.
/// assert_eq!(rate.charge(usd("20.00"), 2_100).unwrap(), usd("8.50"));
/// assert_eq!(rate.charge(usd("100.00"), 2_100).unwrap(), usd("0"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShippingRate {
    /// Shipping is always free.
    #[default]
    Free,
    /// One amount per order.
    Flat {
        /// The charge.
        amount: Money,
        /// Free at or above this merchandise amount.
        #[serde(default)]
        free_over: Option<Money>,
    },
    /// A base amount plus an amount per started kilogram of the order's total weight.
    PerWeight {
        /// Charged for any order.
        base: Money,
        /// Charged per started kilogram (1 g to 1000 g is one kilogram).
        per_kg: Money,
        /// Free at or above this merchandise amount.
        #[serde(default)]
        free_over: Option<Money>,
    },
}

fn check(field: &str, m: &Money, currency: Currency) -> OmsResult<()> {
    if m.currency() != currency {
        return Err(OmsError::CurrencyMismatch {
            expected: currency.code().to_owned(),
            found: m.currency().code().to_owned(),
        });
    }
    if m.is_negative() {
        return Err(OmsError::InvalidPrice {
            price: m.to_string(),
            reason: format!("shipping {field} is negative"),
        });
    }
    Ok(())
}

impl ShippingRate {
    /// The charge for an order whose merchandise (after discounts) is `merchandise` and whose
    /// units weigh `grams` in total. Amounts in another currency than `merchandise` are a
    /// [`OmsError::CurrencyMismatch`]; negative amounts an [`OmsError::InvalidPrice`].
    pub fn charge(&self, merchandise: Money, grams: u64) -> OmsResult<Money> {
        let currency = merchandise.currency();
        let (charge, free_over) = match self {
            ShippingRate::Free => return Ok(Money::zero(currency)),
            ShippingRate::Flat { amount, free_over } => {
                check("amount", amount, currency)?;
                (*amount, free_over)
            }
            ShippingRate::PerWeight {
                base,
                per_kg,
                free_over,
            } => {
                check("base", base, currency)?;
                check("per_kg", per_kg, currency)?;
                let kg = grams.div_ceil(1_000);
                (base.checked_add(&per_kg.checked_mul_qty(kg)?)?, free_over)
            }
        };
        if let Some(threshold) = free_over {
            check("free_over", threshold, currency)?;
            if merchandise.checked_cmp(threshold)? != Ordering::Less {
                return Ok(Money::zero(currency));
            }
        }
        Ok(charge)
    }
}
