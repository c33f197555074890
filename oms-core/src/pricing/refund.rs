//! The refund preview: the exact amount to give back for a partial or full return, computed
//! only from the per-line parts stored at placement, so a refund never re-prorates.
//!
//! A line priced at `N` units whose goods amount (total without its shipping share) is `G`
//! minor units refunds, cumulatively, `cum(q) = round_half_up(G × q / N)` for its first `q`
//! units. Refunding `k` more units after `n` gives `cum(n + k) − cum(n)`. Because `cum` never
//! decreases and `cum(N) = G`, any sequence of partial refunds adds up to at most `G`, and
//! refunding every unit gives back exactly `G` — whatever the order of the partial refunds.
//! Shipping is refunded whole, once, when asked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::money::Money;
use crate::order::Order;

use super::LineCharges;

/// What to refund: units per line, and whether to give back the shipping charge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// `(line_id, quantity)` pairs; a line listed twice counts the sum of its quantities.
    pub lines: Vec<(u32, u32)>,
    /// Refund the order's shipping charge too (allowed once per order).
    pub include_shipping: bool,
}

/// What has been refunded on an order so far; keep it with the order and [`Refunded::record`]
/// each refund that is carried out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refunded {
    /// Units refunded per line id.
    pub units: BTreeMap<u32, u32>,
    /// Amount refunded per line id (excluding shipping).
    pub amounts: BTreeMap<u32, Money>,
    /// Whether the shipping charge was given back.
    pub shipping_refunded: bool,
}

/// One line of a refund preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLine {
    /// The order line.
    pub line_id: u32,
    /// Units refunded by this refund.
    pub quantity: u32,
    /// Amount refunded for them (merchandise after discounts, plus their tax).
    pub amount: Money,
}

/// The exact amounts a refund gives back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPreview {
    /// Per line, in line id order.
    pub lines: Vec<RefundLine>,
    /// Shipping given back (zero unless asked for).
    pub shipping: Money,
    /// Sum of the lines and the shipping.
    pub total: Money,
}

impl Refunded {
    /// Add a carried-out refund. Refuses (and changes nothing) when the preview gives back
    /// shipping a second time or a counter would overflow.
    pub fn record(&mut self, preview: &RefundPreview) -> OmsResult<()> {
        let mut next = self.clone();
        for line in &preview.lines {
            let units = next.units.entry(line.line_id).or_insert(0);
            *units = units
                .checked_add(line.quantity)
                .ok_or_else(|| OmsError::overflow("refunded units"))?;
            let amount = match next.amounts.get(&line.line_id) {
                Some(before) => before.checked_add(&line.amount)?,
                None => line.amount,
            };
            next.amounts.insert(line.line_id, amount);
        }
        if !preview.shipping.is_zero() {
            if next.shipping_refunded {
                return Err(OmsError::RefundExceedsCharge {
                    reason: "shipping was already refunded".into(),
                });
            }
            next.shipping_refunded = true;
        }
        *self = next;
        Ok(())
    }
}

impl LineCharges {
    /// What the line's units cost without its shipping share: subtotal − discount, plus tax
    /// when tax-exclusive. This is what refunding every unit of the line gives back.
    pub fn goods(&self) -> OmsResult<Money> {
        self.total.checked_sub(&self.shipping)
    }
}

/// Cumulative refund of the first `q` of `n` units of a line whose goods are `goods` minor units.
fn cumulative(goods: i128, q: u32, n: u32) -> OmsResult<i128> {
    let overflow = || OmsError::overflow("refund");
    let n = i128::from(n);
    let num = goods
        .checked_mul(i128::from(q))
        .and_then(|x| x.checked_mul(2))
        .and_then(|x| x.checked_add(n))
        .ok_or_else(overflow)?;
    let den = n.checked_mul(2).filter(|d| *d > 0).ok_or_else(overflow)?;
    Ok(num / den)
}

/// The exact refund for `request`, given what was refunded `before`, from the line charges
/// stored by [`super::place_pricing`].
///
/// Errors: the order was never priced ([`OmsError::MissingField`] naming the line's charges);
/// a line id not on the order ([`OmsError::LineNotFound`]); a zero quantity or nothing asked
/// ([`OmsError::InvalidQuantity`], [`OmsError::InvalidField`]); more units than ordered minus
/// refunded, or shipping a second time ([`OmsError::RefundExceedsCharge`]).
///
/// ```
/// use oms_core::pricing::{refund_preview, Refunded, RefundRequest};
/// # use oms_core::pricing::{place_pricing, PricingContext, TaxTable};
/// # use oms_core::order::*; use oms_core::money::*; use oms_core::time::*; use oms_core::lifecycle::Actor;
/// # let usd = |s| Money::parse(s, Currency::USD).unwrap();
/// # let draft = OrderDraft { customer: Customer { id: "c1".into(), email: "a@b.co".into(), name: "A".into() },
/// #   shipping_address: AddressInput { name: "A".into(), line1: "1 Main St".into(), city: "NYC".into(),
/// #     postal_code: "10001".into(), country: "US".into(), ..Default::default() },
/// #   billing_address: None, currency: Currency::USD, promo_codes: vec![],
/// #   lines: vec![LineItemInput::new("MUG", 3, usd("3.33")), LineItemInput::new("TEA", 1, usd("0.01"))] };
/// # let clock = ManualClock::new(Timestamp(0));
/// # let mut order = Order::create(&draft, &Actor::System, &clock, &SequentialIds::default()).unwrap();
/// # let ctx = PricingContext { tax: TaxTable::new().with_rate("US", "standard", "0".parse().unwrap()), ..Default::default() };
/// # place_pricing(&mut order, &ctx, clock.now()).unwrap();
/// // Line 1 is 3 × 3.33 = 9.99: refunds of one unit at a time give 3.33 each.
/// let mut done = Refunded::default();
/// for _ in 0..3 {
///     let p = refund_preview(&order, &done, &RefundRequest { lines: vec![(1, 1)], include_shipping: false }).unwrap();
///     assert_eq!(p.total, usd("3.33"));
///     done.record(&p).unwrap();
/// }
/// let e = refund_preview(&order, &done, &RefundRequest { lines: vec![(1, 1)], include_shipping: false });
/// assert_eq!(e.unwrap_err().code(), "refund_exceeds_charge");
/// ```
pub fn refund_preview(
    order: &Order,
    before: &Refunded,
    request: &RefundRequest,
) -> OmsResult<RefundPreview> {
    let currency = order.currency;
    let mut charges: BTreeMap<u32, &LineCharges> = BTreeMap::new();
    for line in &order.lines {
        let c = line
            .charges
            .as_ref()
            .ok_or_else(|| OmsError::MissingField {
                field: format!(
                    "lines[{}].charges (the order was never priced)",
                    line.line_id
                ),
            })?;
        if c.total.currency() != currency || c.shipping.currency() != currency {
            return Err(OmsError::CurrencyMismatch {
                expected: currency.code().to_owned(),
                found: c.total.currency().code().to_owned(),
            });
        }
        charges.insert(line.line_id, c);
    }
    if let Some(id) = before.units.keys().find(|id| !charges.contains_key(id)) {
        return Err(OmsError::LineNotFound {
            line: id.to_string(),
        });
    }
    if request.lines.is_empty() && !request.include_shipping {
        return Err(OmsError::invalid("refund.lines", "nothing to refund"));
    }
    let mut wanted: BTreeMap<u32, u32> = BTreeMap::new();
    for &(line_id, quantity) in &request.lines {
        if quantity == 0 {
            return Err(OmsError::InvalidQuantity {
                quantity: "0".into(),
                reason: format!("refund of line {line_id} must be at least 1 unit"),
            });
        }
        let q = wanted.entry(line_id).or_insert(0);
        *q = q
            .checked_add(quantity)
            .ok_or_else(|| OmsError::InvalidQuantity {
                quantity: quantity.to_string(),
                reason: "refund quantities overflow".into(),
            })?;
    }
    let mut lines = Vec::with_capacity(wanted.len());
    for (line_id, k) in wanted {
        let c = charges
            .get(&line_id)
            .ok_or_else(|| OmsError::LineNotFound {
                line: line_id.to_string(),
            })?;
        let done = before.units.get(&line_id).copied().unwrap_or(0);
        let left = c.quantity.saturating_sub(done);
        if k > left {
            return Err(OmsError::RefundExceedsCharge {
                reason: format!(
                    "line {line_id}: {k} units asked, {left} of {} left to refund",
                    c.quantity
                ),
            });
        }
        let goods = c.goods()?;
        if goods.is_negative() {
            return Err(OmsError::invalid(
                format!("lines[{line_id}].charges"),
                "stored goods amount is negative",
            ));
        }
        let g = goods.minor_i128();
        let amount = cumulative(g, done + k, c.quantity)? - cumulative(g, done, c.quantity)?;
        lines.push(RefundLine {
            line_id,
            quantity: k,
            amount: Money::from_minor_i128(amount, currency)?,
        });
    }
    let shipping = if request.include_shipping {
        if before.shipping_refunded {
            return Err(OmsError::RefundExceedsCharge {
                reason: "shipping was already refunded".into(),
            });
        }
        Money::checked_sum(currency, charges.values().map(|c| &c.shipping))?
    } else {
        Money::zero(currency)
    };
    let line_sum = Money::checked_sum(currency, lines.iter().map(|l| &l.amount))?;
    let total = line_sum.checked_add(&shipping)?;
    Ok(RefundPreview {
        lines,
        shipping,
        total,
    })
}
