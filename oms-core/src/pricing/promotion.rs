//! Promotion codes: what a code gives, when it is valid, which orders qualify, how codes stack,
//! and the fixed order in which they are applied.

use std::cmp::Ordering;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::money::{allocate, Currency, Money, Rounding};
use crate::order::{LineItem, Sku};
use crate::time::Timestamp;

/// What a promotion gives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PromotionKind {
    /// `percent` off the eligible merchandise, `0 < percent <= 100`.
    Percentage {
        /// Percent off, e.g. `10` for 10 %.
        percent: Decimal,
    },
    /// A fixed amount off the eligible merchandise, capped at what is left of it.
    FixedAmount {
        /// Amount off, in the order currency.
        amount: Money,
    },
    /// The shipping charge is waived.
    FreeShipping,
}

impl PromotionKind {
    /// Application rank: percentages, then fixed amounts, then free shipping.
    fn rank(&self) -> u8 {
        match self {
            PromotionKind::Percentage { .. } => 0,
            PromotionKind::FixedAmount { .. } => 1,
            PromotionKind::FreeShipping => 2,
        }
    }
}

/// A promotion code and its rules, as a host loads it from its catalog.
///
/// ```
/// use oms_core::pricing::Promotion;
/// use rust_decimal_macros::dec;
/// let p: Promotion = serde_json::from_str(
///     r#"{"code": "SPRING10", "kind": {"type": "percentage", "percent": "10"}, "stackable": true}"#,
/// ).unwrap();
/// assert_eq!(p, Promotion::percentage("SPRING10", dec!(10)).stacking(true));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Promotion {
    /// The code a customer enters; matched without regard to ASCII case.
    pub code: String,
    /// What it gives.
    pub kind: PromotionKind,
    /// First instant the code is valid (inclusive); `None` for always.
    #[serde(default)]
    pub valid_from: Option<Timestamp>,
    /// Instant the code stops being valid (exclusive); `None` for never.
    #[serde(default)]
    pub valid_until: Option<Timestamp>,
    /// The order qualifies only if its subtotal after line discounts reaches this.
    #[serde(default)]
    pub min_subtotal: Option<Money>,
    /// Only lines with these SKUs are discounted (and at least one must be on the order);
    /// empty means every line.
    #[serde(default)]
    pub skus: Vec<Sku>,
    /// Whether the code may be combined with other codes. A code that does not stack can only
    /// be used alone, so the safe default is `false`.
    #[serde(default)]
    pub stackable: bool,
}

impl Promotion {
    fn with_kind(code: &str, kind: PromotionKind) -> Self {
        Promotion {
            code: code.to_owned(),
            kind,
            valid_from: None,
            valid_until: None,
            min_subtotal: None,
            skus: Vec::new(),
            stackable: false,
        }
    }

    /// `percent` % off, always valid, every line, not stackable.
    pub fn percentage(code: &str, percent: Decimal) -> Self {
        Self::with_kind(code, PromotionKind::Percentage { percent })
    }

    /// `amount` off, always valid, every line, not stackable.
    pub fn fixed_amount(code: &str, amount: Money) -> Self {
        Self::with_kind(code, PromotionKind::FixedAmount { amount })
    }

    /// Free shipping, always valid, not stackable.
    pub fn free_shipping(code: &str) -> Self {
        Self::with_kind(code, PromotionKind::FreeShipping)
    }

    /// Valid from `from` (inclusive) until `until` (exclusive).
    pub fn with_window(mut self, from: Option<Timestamp>, until: Option<Timestamp>) -> Self {
        self.valid_from = from;
        self.valid_until = until;
        self
    }

    /// Require a minimum subtotal after line discounts.
    pub fn with_min_subtotal(mut self, min: Money) -> Self {
        self.min_subtotal = Some(min);
        self
    }

    /// Restrict to lines with these SKUs.
    pub fn with_skus(mut self, skus: Vec<Sku>) -> Self {
        self.skus = skus;
        self
    }

    /// Set whether the code combines with others.
    pub fn stacking(mut self, stackable: bool) -> Self {
        self.stackable = stackable;
        self
    }

    fn matches_code(&self, entered: &str) -> bool {
        self.code.trim().eq_ignore_ascii_case(entered.trim())
    }

    fn applies_to(&self, line: &LineItem) -> bool {
        self.skus.is_empty() || self.skus.contains(&line.sku)
    }

    /// Refuse a promotion whose own definition is unusable for an order in `currency`.
    fn validate(&self, currency: Currency) -> OmsResult<()> {
        let same = |m: &Money| {
            if m.currency() == currency {
                Ok(())
            } else {
                Err(OmsError::CurrencyMismatch {
                    expected: currency.code().to_owned(),
                    found: m.currency().code().to_owned(),
                })
            }
        };
        match &self.kind {
            PromotionKind::Percentage { percent } => {
                if *percent <= Decimal::ZERO || *percent > Decimal::ONE_HUNDRED {
                    return Err(OmsError::invalid(
                        format!("promotion {}.percent", self.code),
                        format!("{percent} is not within (0, 100]"),
                    ));
                }
            }
            PromotionKind::FixedAmount { amount } => {
                same(amount)?;
                if amount.is_negative() || amount.is_zero() {
                    return Err(OmsError::invalid(
                        format!("promotion {}.amount", self.code),
                        "must be positive",
                    ));
                }
            }
            PromotionKind::FreeShipping => {}
        }
        if let Some(min) = &self.min_subtotal {
            same(min)?;
            if min.is_negative() {
                return Err(OmsError::invalid(
                    format!("promotion {}.min_subtotal", self.code),
                    "negative",
                ));
            }
        }
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until) {
            if from >= until {
                return Err(OmsError::invalid(
                    format!("promotion {}.valid_until", self.code),
                    "not after valid_from",
                ));
            }
        }
        Ok(())
    }
}

/// A promotion as applied to one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPromotion {
    /// The catalog code.
    pub code: String,
    /// Merchandise discount it gave (zero for free shipping).
    pub discount: Money,
    /// Whether it waived shipping.
    pub free_shipping: bool,
}

/// Look up every entered code and check it: known, defined once, well-formed, inside its
/// validity window, entered once, qualifying, and combinable with the codes entered before it.
/// Codes are checked in the order they were entered, so the first bad one is reported.
pub(super) fn resolve<'a>(
    catalog: &'a [Promotion],
    entered: &[String],
    lines: &[LineItem],
    merchandise: Money,
    now: Timestamp,
) -> OmsResult<Vec<&'a Promotion>> {
    let currency = merchandise.currency();
    let mut chosen: Vec<&Promotion> = Vec::with_capacity(entered.len());
    for code in entered {
        let mut found = catalog.iter().filter(|p| p.matches_code(code));
        let promo = found
            .next()
            .ok_or_else(|| OmsError::PromoUnknown { code: code.clone() })?;
        if found.next().is_some() {
            return Err(OmsError::invalid(
                "promotions",
                format!("code {code:?} is defined more than once"),
            ));
        }
        promo.validate(currency)?;
        if promo.valid_from.is_some_and(|from| now < from) {
            return Err(OmsError::PromoNotYetValid { code: code.clone() });
        }
        if promo.valid_until.is_some_and(|until| now >= until) {
            return Err(OmsError::PromoExpired { code: code.clone() });
        }
        let not_applicable = |reason: String| OmsError::PromoNotApplicable {
            code: code.clone(),
            reason,
        };
        if chosen.iter().any(|p| std::ptr::eq(*p, promo)) {
            return Err(not_applicable("entered more than once".into()));
        }
        if let Some(min) = &promo.min_subtotal {
            if merchandise.checked_cmp(min)? == Ordering::Less {
                return Err(not_applicable(format!(
                    "subtotal {merchandise} is below the minimum {min}"
                )));
            }
        }
        if !lines.iter().any(|l| promo.applies_to(l)) {
            let skus: Vec<&str> = promo.skus.iter().map(Sku::as_str).collect();
            return Err(not_applicable(format!(
                "no line has an eligible sku ({})",
                skus.join(", ")
            )));
        }
        let blocker = if promo.stackable {
            chosen.iter().find(|p| !p.stackable)
        } else {
            chosen.first()
        };
        if let Some(other) = blocker {
            return Err(OmsError::PromoNotStackable {
                code: code.clone(),
                other: other.code.clone(),
            });
        }
        chosen.push(promo);
    }
    // The application order is fixed, whatever order the codes were entered in.
    chosen.sort_by(|a, b| {
        a.kind
            .rank()
            .cmp(&b.kind.rank())
            .then_with(|| a.code.cmp(&b.code))
    });
    Ok(chosen)
}

/// Apply resolved promotions to the lines' remaining merchandise amounts.
///
/// Each promotion's discount is computed on what is left of its eligible lines after the
/// promotions before it (so two 10 % codes give 19 %), capped at that amount, and split onto
/// those lines by largest remainder in proportion to what is left of each. `remaining` and
/// `discounts` are indexed like `lines` and updated in place. Returns what each promotion gave
/// and whether shipping is waived.
pub(super) fn apply(
    promos: &[&Promotion],
    lines: &[LineItem],
    remaining: &mut [Money],
    discounts: &mut [Money],
    rounding: Rounding,
) -> OmsResult<(Vec<AppliedPromotion>, bool)> {
    let mut applied = Vec::with_capacity(promos.len());
    let mut free_shipping = false;
    let Some(currency) = remaining.first().map(Money::currency) else {
        return Ok((applied, free_shipping));
    };
    for promo in promos {
        let eligible: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| promo.applies_to(l))
            .map(|(i, _)| i)
            .collect();
        let base_parts: Vec<Money> = eligible
            .iter()
            .filter_map(|&i| remaining.get(i).copied())
            .collect();
        let base = Money::checked_sum(currency, &base_parts)?;
        let amount = match &promo.kind {
            PromotionKind::Percentage { percent } => {
                let rate = percent
                    .checked_div(Decimal::ONE_HUNDRED)
                    .ok_or_else(|| OmsError::overflow("percentage"))?;
                base.checked_mul_rate(rate, rounding)?.checked_min(&base)?
            }
            PromotionKind::FixedAmount { amount } => amount.checked_min(&base)?,
            PromotionKind::FreeShipping => {
                free_shipping = true;
                Money::zero(currency)
            }
        };
        if !amount.is_zero() {
            let weights: Vec<Decimal> = base_parts.iter().map(Money::amount).collect();
            let shares = allocate(amount, &weights)?;
            for (i, share) in eligible.iter().zip(&shares) {
                if let (Some(r), Some(d)) = (remaining.get_mut(*i), discounts.get_mut(*i)) {
                    *r = r.checked_sub(share)?;
                    *d = d.checked_add(share)?;
                }
            }
        }
        applied.push(AppliedPromotion {
            code: promo.code.clone(),
            discount: amount,
            free_shipping: matches!(promo.kind, PromotionKind::FreeShipping),
        });
    }
    Ok((applied, free_shipping))
}
