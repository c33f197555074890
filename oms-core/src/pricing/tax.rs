//! Tax rates by jurisdiction and tax class, and the tax of each line in either catalog mode and
//! either rounding mode.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::money::{allocate, Money, Rounding};

/// The tax class that never needs a rate: its lines are taxed at zero.
pub const EXEMPT_CLASS: &str = "exempt";

/// Whether catalog prices exclude or include tax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaxMode {
    /// Prices are net; tax is added on top (US style).
    #[default]
    Exclusive,
    /// Prices are gross; the tax inside them is extracted as `gross × rate / (1 + rate)` and
    /// the total does not change (EU style).
    Inclusive,
}

/// Where tax is rounded to the minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaxRounding {
    /// Each line's tax is rounded on its own; the order's tax is their sum.
    #[default]
    PerLine,
    /// The order's exact tax is rounded once, then split onto the lines by largest remainder
    /// in proportion to each line's exact tax.
    PerOrder,
}

/// Tax rates: jurisdiction (`"US"`, `"US-NY"`) → tax class (`"standard"`, `"reduced"`) → rate
/// as a fraction (`0.08875` for 8.875 %).
///
/// A lookup for `"US-NY"` that finds no rate for the class falls back to `"US"`. The
/// [`EXEMPT_CLASS`] needs no entry. Serialized as the nested map itself:
///
/// ```
/// use oms_core::pricing::TaxTable;
/// use rust_decimal_macros::dec;
/// let t: TaxTable = serde_json::from_str(r#"{"US": {"standard": "0.05"}}"#).unwrap();
/// assert_eq!(t.rate("US-NY", "standard").unwrap(), dec!(0.05));
/// assert_eq!(t.rate("US-NY", "exempt").unwrap(), dec!(0));
/// assert_eq!(t.rate("CA", "standard").unwrap_err().code(), "tax_rate_missing");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaxTable {
    /// jurisdiction → tax class → rate.
    pub rates: BTreeMap<String, BTreeMap<String, Decimal>>,
}

impl TaxTable {
    /// An empty table: every class but [`EXEMPT_CLASS`] is missing a rate.
    pub fn new() -> Self {
        TaxTable::default()
    }

    /// Add (or replace) the rate of `tax_class` in `jurisdiction`.
    pub fn with_rate(mut self, jurisdiction: &str, tax_class: &str, rate: Decimal) -> Self {
        self.rates
            .entry(jurisdiction.to_owned())
            .or_default()
            .insert(tax_class.to_owned(), rate);
        self
    }

    /// The rate for `tax_class` in `jurisdiction`, falling back from `"US-NY"` to `"US"`.
    ///
    /// A negative rate, or one above 1 (rates are fractions, so 20 instead of 0.2 is a typo),
    /// is refused with [`OmsError::InvalidField`]; no rate is [`OmsError::TaxRateMissing`].
    pub fn rate(&self, jurisdiction: &str, tax_class: &str) -> OmsResult<Decimal> {
        if tax_class == EXEMPT_CLASS {
            return Ok(Decimal::ZERO);
        }
        let country = jurisdiction.split('-').next().unwrap_or(jurisdiction);
        let found = [jurisdiction, country].into_iter().find_map(|j| {
            self.rates
                .get(j)
                .and_then(|classes| classes.get(tax_class))
                .map(|r| (j, *r))
        });
        let (at, rate) = found.ok_or_else(|| OmsError::TaxRateMissing {
            jurisdiction: jurisdiction.to_owned(),
            tax_class: tax_class.to_owned(),
        })?;
        if rate.is_sign_negative() && !rate.is_zero() {
            return Err(OmsError::invalid(
                format!("tax rate {at}/{tax_class}"),
                format!("{rate} is negative"),
            ));
        }
        if rate > Decimal::ONE {
            return Err(OmsError::invalid(
                format!("tax rate {at}/{tax_class}"),
                format!("{rate} is above 1; rates are fractions (0.2 for 20 %)"),
            ));
        }
        Ok(rate)
    }
}

/// The exact (unrounded) tax in `base` at `rate`.
fn exact_tax(base: &Money, rate: Decimal, mode: TaxMode) -> OmsResult<Decimal> {
    let overflow = || OmsError::overflow("tax");
    let gross_rate = base.amount().checked_mul(rate).ok_or_else(overflow)?;
    match mode {
        TaxMode::Exclusive => Ok(gross_rate),
        TaxMode::Inclusive => gross_rate
            .checked_div(Decimal::ONE + rate)
            .ok_or_else(overflow),
    }
}

/// The tax of each line, given each line's taxable amount (after every discount) and rate.
///
/// In [`TaxRounding::PerOrder`] the rounded order tax is within half a minor unit of the exact
/// sum; in [`TaxRounding::PerLine`] each line's tax is.
pub(super) fn line_taxes(
    bases: &[Money],
    rates: &[Decimal],
    mode: TaxMode,
    tax_rounding: TaxRounding,
    rounding: Rounding,
) -> OmsResult<Vec<Money>> {
    let Some(currency) = bases.first().map(Money::currency) else {
        return Ok(Vec::new());
    };
    let exact: Vec<Decimal> = bases
        .iter()
        .zip(rates)
        .map(|(b, r)| exact_tax(b, *r, mode))
        .collect::<OmsResult<_>>()?;
    match tax_rounding {
        TaxRounding::PerLine => exact
            .iter()
            .map(|e| Money::from_decimal_rounded(*e, currency, rounding))
            .collect(),
        TaxRounding::PerOrder => {
            let sum = exact
                .iter()
                .try_fold(Decimal::ZERO, |a, e| a.checked_add(*e))
                .ok_or_else(|| OmsError::overflow("tax"))?;
            let total = Money::from_decimal_rounded(sum, currency, rounding)?;
            if total.is_zero() {
                Ok(vec![Money::zero(currency); bases.len()])
            } else {
                allocate(total, &exact)
            }
        }
    }
}
