//! Pricing: subtotal, discounts and promotions, tax, shipping, proration onto lines, and the
//! refund preview computed from the stored per-line parts.

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// A line's share of every order amount, computed once at placement and stored on the line so
/// later refunds and cancellations never re-prorate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineCharges {
    /// unit price × quantity.
    pub subtotal: Money,
    /// The line's own discount plus its share of order-level discounts (positive number).
    pub discount: Money,
    /// The line's tax.
    pub tax: Money,
    /// The line's share of the shipping charge.
    pub shipping: Money,
    /// subtotal − discount + tax (when tax-exclusive) + shipping: what the customer pays for it.
    pub total: Money,
}
