//! Pricing: subtotal, discounts and promotions, tax, shipping, proration onto lines, and the
//! refund preview computed from the stored per-line parts.
//!
//! # The steps, in order
//!
//! 1. **Subtotal**: unit price × quantity per line; minus each line's own discount
//!    ([`LineItem::discount`]) gives the line's *merchandise*.
//! 2. **Promotions**: the order's codes are checked in the order entered (unknown, expired, not
//!    yet valid, not applicable, not stackable are typed errors). They are then applied in a
//!    fixed order that does not depend on entry order: **percentages, then fixed amounts, then
//!    free shipping; ties by code**. Each discount is computed on what is left of its eligible
//!    lines after the promotions before it, capped at it, and split onto those lines by largest
//!    remainder in proportion to what is left of each.
//! 3. **Shipping** from the [`ShippingRate`] (waived by a free-shipping code), split onto lines
//!    by largest remainder in proportion to their merchandise after discounts.
//! 4. **Tax** per line: rate by the shipping address's jurisdiction
//!    ([`Address::jurisdiction`](crate::order::Address::jurisdiction), falling back from
//!    `"US-NY"` to `"US"`) × the line's tax class, on the merchandise after discounts. In a
//!    [`TaxMode::Exclusive`] catalog tax is added; in a [`TaxMode::Inclusive`] one it is the
//!    part of the price that is tax and the total does not change. Shipping is not taxed.
//! 5. **Totals**: each line's [`LineCharges`], and the order's amounts as their sums, so the
//!    parts always add up to the totals, to the minor unit.
//!
//! When several inputs are wrong, the first error in this order is reported: the lines
//! (currency, price, discount), the promotion codes in the order entered, the tax rates, the
//! shipping rate.
//!
//! [`place_pricing`] does this once, at placement, and stores each line's [`LineCharges`];
//! [`refund_preview`] later works only from those stored parts and never re-prorates.
//!
//! # Rounding tax per line or per order
//!
//! [`TaxRounding::PerLine`] rounds each line's tax; [`TaxRounding::PerOrder`] rounds the
//! order's exact tax once and splits it onto the lines by largest remainder. Three lines of
//! 0.33 USD at 10 % have an exact tax of 0.033 each: per line that is 0.03 + 0.03 + 0.03 =
//! 0.09, per order it is round(0.099) = 0.10, split 0.04 + 0.03 + 0.03.
//!
//! ```
//! use oms_core::lifecycle::Actor;
//! use oms_core::money::{Currency, Money};
//! use oms_core::order::{AddressInput, Customer, LineItemInput, Order, OrderDraft};
//! use oms_core::pricing::{get_total_price, PricingContext, TaxRounding, TaxTable};
//! use oms_core::time::{Clock, ManualClock, SequentialIds, Timestamp};
//! use rust_decimal_macros::dec;
//!
//! let usd = |s| Money::parse(s, Currency::USD).unwrap();
//! let draft = OrderDraft {
//!     customer: Customer { id: "c1".into(), email: "ada@example.com".into(), name: "Ada".into() },
//!     shipping_address: AddressInput {
//!         name: "Ada".into(), line1: "1 Main St".into(), city: "Albany".into(),
//!         postal_code: "12207".into(), country: "US".into(), region: "NY".into(),
//!         ..AddressInput::default()
//!     },
//!     billing_address: None,
//!     currency: Currency::USD,
//!     lines: ["A", "B", "C"].iter().map(|s| LineItemInput::new(s, 1, usd("0.33"))).collect(),
//!     promo_codes: vec![],
//! };
//! let clock = ManualClock::new(Timestamp::from_civil(2026, 5, 6, 9, 0, 0));
//! let order = Order::create(&draft, &Actor::System, &clock, &SequentialIds::default()).unwrap();
//!
//! let mut ctx = PricingContext {
//!     tax: TaxTable::new().with_rate("US", "standard", dec!(0.10)),
//!     ..PricingContext::default()
//! };
//! let per_line = get_total_price(&order, &ctx, clock.now()).unwrap();
//! assert_eq!(per_line.tax, usd("0.09"));
//!
//! ctx.tax_rounding = TaxRounding::PerOrder;
//! let per_order = get_total_price(&order, &ctx, clock.now()).unwrap();
//! assert_eq!(per_order.tax, usd("0.10"));
//! let line_tax: Vec<Money> = per_order.lines.iter().map(|l| l.charges.tax).collect();
//! assert_eq!(line_tax, [usd("0.04"), usd("0.03"), usd("0.03")]);
//! ```

mod promotion;
mod refund;
mod shipping;
mod tax;

use std::cmp::Ordering;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::money::{allocate, Currency, Money, Rounding};
use crate::order::{LineItem, Order};
use crate::time::Timestamp;

pub use promotion::{AppliedPromotion, Promotion, PromotionKind};
pub use refund::{refund_preview, RefundLine, RefundPreview, RefundRequest, Refunded};
pub use shipping::ShippingRate;
pub use tax::{TaxMode, TaxRounding, TaxTable, EXEMPT_CLASS};

/// A line's share of every order amount, computed once at placement and stored on the line so
/// later refunds and cancellations never re-prorate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineCharges {
    /// Units these charges cover.
    pub quantity: u32,
    /// unit price × quantity.
    pub subtotal: Money,
    /// The line's own discount plus its share of order-level discounts (positive number).
    pub discount: Money,
    /// The line's tax (included in `subtotal − discount` when the catalog is tax-inclusive).
    pub tax: Money,
    /// The line's share of the shipping charge.
    pub shipping: Money,
    /// subtotal − discount + tax (when tax-exclusive) + shipping: what the customer pays for it.
    pub total: Money,
}

fn half_up() -> Rounding {
    Rounding::HalfUp
}

/// Everything besides the order that pricing depends on; hosts load it from JSON.
///
/// Rates and percentages are decimal strings in JSON (`"0.08875"`, not `0.08875`), and money is
/// `{"amount": "5.00", "currency": "USD"}`, so no JSON reader turns them into floats.
///
/// The default has no promotions, an empty tax table (only [`EXEMPT_CLASS`] lines can be
/// priced), tax-exclusive prices, tax rounded per line, free shipping and half-up rounding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricingContext {
    /// The promotion catalog the order's codes are looked up in.
    #[serde(default)]
    pub promotions: Vec<Promotion>,
    /// Tax rates.
    #[serde(default)]
    pub tax: TaxTable,
    /// Whether prices include tax.
    #[serde(default)]
    pub tax_mode: TaxMode,
    /// Where tax is rounded.
    #[serde(default)]
    pub tax_rounding: TaxRounding,
    /// The shipping charge.
    #[serde(default)]
    pub shipping: ShippingRate,
    /// How percentages and tax are rounded to the minor unit.
    #[serde(default = "half_up")]
    pub rounding: Rounding,
}

impl Default for PricingContext {
    fn default() -> Self {
        PricingContext {
            promotions: Vec::new(),
            tax: TaxTable::default(),
            tax_mode: TaxMode::default(),
            tax_rounding: TaxRounding::default(),
            shipping: ShippingRate::default(),
            rounding: half_up(),
        }
    }
}

/// One line's price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinePrice {
    /// The order line.
    pub line_id: u32,
    /// The tax rate applied (a fraction).
    #[serde(serialize_with = "crate::money::serialize_decimal")]
    pub tax_rate: Decimal,
    /// The line's parts.
    pub charges: LineCharges,
}

/// An order's price: totals and per-line parts that add up to them exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceBreakdown {
    /// The order currency.
    pub currency: Currency,
    /// Whether `subtotal` includes `tax`.
    pub tax_mode: TaxMode,
    /// Σ unit price × quantity.
    pub subtotal: Money,
    /// Line discounts plus promotions.
    pub discount: Money,
    /// Tax (inside `subtotal − discount` when tax-inclusive).
    pub tax: Money,
    /// Shipping charge.
    pub shipping: Money,
    /// What the customer pays: subtotal − discount + tax (when exclusive) + shipping.
    pub total: Money,
    /// The promotions applied, in application order.
    pub promotions: Vec<AppliedPromotion>,
    /// Per line, in order line order.
    pub lines: Vec<LinePrice>,
}

fn same_currency(m: &Money, currency: Currency) -> OmsResult<()> {
    if m.currency() == currency {
        Ok(())
    } else {
        Err(OmsError::CurrencyMismatch {
            expected: currency.code().to_owned(),
            found: m.currency().code().to_owned(),
        })
    }
}

/// Split `amount` onto lines in proportion to `weights`, or by quantity when every weight is zero.
fn prorate(amount: Money, weights: &[Money], lines: &[LineItem]) -> OmsResult<Vec<Money>> {
    if amount.is_zero() {
        return Ok(vec![amount; lines.len()]);
    }
    let mut w: Vec<Decimal> = weights.iter().map(Money::amount).collect();
    if w.iter().all(Decimal::is_zero) {
        w = lines.iter().map(|l| Decimal::from(l.quantity)).collect();
    }
    allocate(amount, &w)
}

/// Price `order` under `ctx` at instant `now` (which decides promotion validity), without
/// changing it. See the [module docs](self) for the steps and their order.
///
/// This always recomputes from the lines and `ctx`; what a placed order was charged, and what
/// its refunds work from, is the [`LineCharges`] stored by [`place_pricing`].
///
/// ```
/// use oms_core::lifecycle::Actor;
/// use oms_core::money::{Currency, Money};
/// use oms_core::order::{AddressInput, Customer, LineItemInput, Order, OrderDraft};
/// use oms_core::pricing::{get_total_price, PricingContext, Promotion, ShippingRate, TaxTable};
/// use oms_core::time::{Clock, ManualClock, SequentialIds, Timestamp};
/// use rust_decimal_macros::dec;
///
/// let usd = |s| Money::parse(s, Currency::USD).unwrap();
/// let draft = OrderDraft {
///     customer: Customer { id: "c1".into(), email: "ada@example.com".into(), name: "Ada".into() },
///     shipping_address: AddressInput {
///         name: "Ada".into(), line1: "1 Main St".into(), city: "New York".into(),
///         region: "NY".into(), postal_code: "10001".into(), country: "US".into(),
///         ..AddressInput::default()
///     },
///     billing_address: None,
///     currency: Currency::USD,
///     lines: vec![
///         LineItemInput::new("WATER-5L", 2, usd("4.99")),
///         LineItemInput::new("PHONE-X", 1, usd("399.00")),
///     ],
///     promo_codes: vec!["SPRING10".into()],
/// };
/// let clock = ManualClock::new(Timestamp::from_civil(2026, 5, 6, 9, 0, 0));
/// let order = Order::create(&draft, &Actor::System, &clock, &SequentialIds::default()).unwrap();
///
/// let ctx = PricingContext {
///     promotions: vec![Promotion::percentage("SPRING10", dec!(10))],
///     tax: TaxTable::new().with_rate("US-NY", "standard", dec!(0.08875)),
///     shipping: ShippingRate::Flat { amount: usd("5.00"), free_over: None },
///     ..PricingContext::default()
/// };
/// let price = get_total_price(&order, &ctx, clock.now()).unwrap();
/// assert_eq!(price.subtotal, usd("408.98"));
/// assert_eq!(price.discount, usd("40.90"));   // 10 % of 408.98, half-up
/// assert_eq!(price.tax, usd("32.67"));        // 8.875 % of 8.98 and of 359.10, per line
/// assert_eq!(price.shipping, usd("5.00"));
/// assert_eq!(price.total, usd("405.75"));
/// let line_totals: Vec<Money> = price.lines.iter().map(|l| l.charges.total).collect();
/// assert_eq!(Money::checked_sum(Currency::USD, &line_totals).unwrap(), price.total);
/// ```
pub fn get_total_price(
    order: &Order,
    ctx: &PricingContext,
    now: Timestamp,
) -> OmsResult<PriceBreakdown> {
    let currency = order.currency;
    let lines = &order.lines;
    if lines.is_empty() {
        return Err(OmsError::MissingField {
            field: "lines".into(),
        });
    }

    // 1. Subtotal and line discounts.
    let mut subtotals = Vec::with_capacity(lines.len());
    let mut discounts = Vec::with_capacity(lines.len());
    let mut remaining = Vec::with_capacity(lines.len());
    for line in lines {
        same_currency(&line.unit_price, currency)?;
        same_currency(&line.discount, currency)?;
        if line.unit_price.is_negative() {
            return Err(OmsError::InvalidPrice {
                price: line.unit_price.to_string(),
                reason: "negative".into(),
            });
        }
        let subtotal = line.subtotal()?;
        if line.discount.is_negative() || line.discount.checked_cmp(&subtotal)? == Ordering::Greater
        {
            return Err(OmsError::invalid(
                format!("lines[{}].discount", line.line_id),
                "must be between zero and the line subtotal",
            ));
        }
        remaining.push(subtotal.checked_sub(&line.discount)?);
        subtotals.push(subtotal);
        discounts.push(line.discount);
    }
    let merchandise = Money::checked_sum(currency, &remaining)?;

    // 2. Promotions.
    let promos = promotion::resolve(&ctx.promotions, &order.promo_codes, lines, merchandise, now)?;
    let (applied, free_shipping) =
        promotion::apply(&promos, lines, &mut remaining, &mut discounts, ctx.rounding)?;

    // 3. Tax rates.
    let jurisdiction = order.shipping_address.jurisdiction();
    let rates: Vec<Decimal> = lines
        .iter()
        .map(|l| ctx.tax.rate(&jurisdiction, &l.tax_class))
        .collect::<OmsResult<_>>()?;

    // 4. Shipping.
    let after_discounts = Money::checked_sum(currency, &remaining)?;
    let grams = lines.iter().try_fold(0u64, |acc, l| {
        acc.checked_add(u64::from(l.quantity) * u64::from(l.weight_grams))
            .ok_or_else(|| OmsError::overflow("order weight"))
    })?;
    let shipping = if free_shipping {
        Money::zero(currency)
    } else {
        ctx.shipping.charge(after_discounts, grams)?
    };
    let shipping_parts = prorate(shipping, &remaining, lines)?;

    // 5. Tax.
    let taxes = tax::line_taxes(
        &remaining,
        &rates,
        ctx.tax_mode,
        ctx.tax_rounding,
        ctx.rounding,
    )?;

    // 6. Assemble: the order amounts are sums of the line parts, so they always add up.
    let mut priced = Vec::with_capacity(lines.len());
    let parts = subtotals
        .iter()
        .zip(&discounts)
        .zip(&remaining)
        .zip(taxes.iter().zip(&shipping_parts));
    for ((line, rate), (((subtotal, discount), net), (tax, ship))) in
        lines.iter().zip(&rates).zip(parts)
    {
        let goods = match ctx.tax_mode {
            TaxMode::Exclusive => net.checked_add(tax)?,
            TaxMode::Inclusive => *net,
        };
        priced.push(LinePrice {
            line_id: line.line_id,
            tax_rate: *rate,
            charges: LineCharges {
                quantity: line.quantity,
                subtotal: *subtotal,
                discount: *discount,
                tax: *tax,
                shipping: *ship,
                total: goods.checked_add(ship)?,
            },
        });
    }
    let sum = |f: fn(&LineCharges) -> &Money| {
        Money::checked_sum(currency, priced.iter().map(|l| f(&l.charges)))
    };
    Ok(PriceBreakdown {
        currency,
        tax_mode: ctx.tax_mode,
        subtotal: sum(|c| &c.subtotal)?,
        discount: sum(|c| &c.discount)?,
        tax: sum(|c| &c.tax)?,
        shipping: sum(|c| &c.shipping)?,
        total: sum(|c| &c.total)?,
        promotions: applied,
        lines: priced,
    })
}

/// Price `order` and store each line's [`LineCharges`] on it: the one proration at placement
/// that every later refund works from.
///
/// Refused with [`OmsError::OrderNotEditable`] once fulfillment has started, so a placed
/// order's parts never change under its refunds. Any line edit clears the stored charges, so an
/// edited order must be priced again. The order's version is not changed: this is part of the
/// placement command that the caller persists.
pub fn place_pricing(
    order: &mut Order,
    ctx: &PricingContext,
    now: Timestamp,
) -> OmsResult<PriceBreakdown> {
    if !order.status.is_editable() {
        return Err(OmsError::OrderNotEditable {
            status: order.status.to_string(),
        });
    }
    let breakdown = get_total_price(order, ctx, now)?;
    for (line, price) in order.lines.iter_mut().zip(&breakdown.lines) {
        line.charges = Some(price.charges.clone());
    }
    Ok(breakdown)
}

/// What the customer was charged for a priced order: the sum of the stored line totals.
pub fn charged_total(order: &Order) -> OmsResult<Money> {
    order
        .lines
        .iter()
        .try_fold(Money::zero(order.currency), |acc, l| {
            let c = l.charges.as_ref().ok_or_else(|| OmsError::MissingField {
                field: format!("lines[{}].charges (the order was never priced)", l.line_id),
            })?;
            acc.checked_add(&c.total)
        })
}

#[cfg(test)]
mod tests;
