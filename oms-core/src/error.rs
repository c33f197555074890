//! The one flat error type of oms.
//!
//! Every fallible operation in every crate returns [`OmsError`]. Each variant has a stable,
//! machine-readable [`OmsError::code`] that the bindings expose as a Python exception class, a JS
//! `err.code` and a Kotlin/Swift exception case, so a code is never renamed once published.
//! Variants are listed in precedence order: when one input is wrong in several ways, validation
//! reports the earliest kind in this list (malformed input before business-rule refusals).

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Result alias used throughout oms.
pub type OmsResult<T> = Result<T, OmsError>;

/// Every way an oms operation can refuse its input or fail.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OmsError {
    // ---- malformed input -------------------------------------------------------------------
    /// A required field is missing or empty.
    #[error("missing field `{field}`")]
    MissingField {
        /// Name of the missing field.
        field: String,
    },
    /// A field is present but its value is not acceptable.
    #[error("invalid value for `{field}`: {reason}")]
    InvalidField {
        /// Name of the offending field.
        field: String,
        /// Why the value was refused.
        reason: String,
    },
    /// A quantity is zero, negative or larger than the per-line limit.
    #[error("invalid quantity {quantity}: {reason}")]
    InvalidQuantity {
        /// The refused quantity, as given.
        quantity: String,
        /// Why it was refused.
        reason: String,
    },
    /// A SKU is empty, too long or contains control characters.
    #[error("invalid sku {sku:?}: {reason}")]
    InvalidSku {
        /// The refused SKU.
        sku: String,
        /// Why it was refused.
        reason: String,
    },
    /// A currency code is not an ISO 4217 currency usable for payments.
    #[error("unknown currency code {code:?}")]
    UnknownCurrency {
        /// The refused code.
        code: String,
    },
    /// A country code is not an ISO 3166-1 alpha-2 code.
    #[error("unknown country code {code:?}")]
    UnknownCountry {
        /// The refused code.
        code: String,
    },
    /// A money amount cannot be parsed, or has more decimals than the currency's minor unit.
    #[error("invalid amount {input:?}: {reason}")]
    InvalidAmount {
        /// The refused amount, as given.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// A price is negative or otherwise not a valid unit price.
    #[error("invalid price {price}: {reason}")]
    InvalidPrice {
        /// The refused price.
        price: String,
        /// Why it was refused.
        reason: String,
    },
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: expected {expected}, found {found}")]
    CurrencyMismatch {
        /// The currency the operation works in.
        expected: String,
        /// The currency that was supplied.
        found: String,
    },
    /// An arithmetic operation would overflow the decimal range.
    #[error("arithmetic overflow in {operation}")]
    Overflow {
        /// The operation that overflowed.
        operation: String,
    },
    /// Weights for an allocation are empty, negative or sum to zero.
    #[error("invalid allocation weights: {reason}")]
    InvalidWeights {
        /// Why the weights were refused.
        reason: String,
    },

    // ---- lookups ---------------------------------------------------------------------------
    /// No order has this id or number.
    #[error("order {order} not found")]
    OrderNotFound {
        /// The order id or number looked up.
        order: String,
    },
    /// The order has no line with this id or SKU.
    #[error("line {line} not found on order")]
    LineNotFound {
        /// The line id or SKU looked up.
        line: String,
    },
    /// The SKU is not known to the inventory.
    #[error("unknown sku {sku:?}")]
    UnknownSku {
        /// The unknown SKU.
        sku: String,
    },
    /// The warehouse is not known.
    #[error("unknown warehouse {warehouse:?}")]
    UnknownWarehouse {
        /// The unknown warehouse id.
        warehouse: String,
    },
    /// No record with this id exists (reservation, payment, shipment, return …).
    #[error("{kind} {id} not found")]
    NotFound {
        /// What kind of record was looked up.
        kind: String,
        /// The id looked up.
        id: String,
    },

    // ---- pricing ---------------------------------------------------------------------------
    /// The promotion code does not exist.
    #[error("unknown promotion code {code:?}")]
    PromoUnknown {
        /// The code as entered.
        code: String,
    },
    /// The promotion code's validity window has ended.
    #[error("promotion code {code:?} expired")]
    PromoExpired {
        /// The code as entered.
        code: String,
    },
    /// The promotion code's validity window has not started yet.
    #[error("promotion code {code:?} is not valid yet")]
    PromoNotYetValid {
        /// The code as entered.
        code: String,
    },
    /// The promotion exists and is valid, but this order does not qualify for it.
    #[error("promotion code {code:?} does not apply: {reason}")]
    PromoNotApplicable {
        /// The code as entered.
        code: String,
        /// Why the order does not qualify.
        reason: String,
    },
    /// Two promotions that may not be combined were applied together.
    #[error("promotion {code:?} cannot be combined with {other:?}")]
    PromoNotStackable {
        /// The promotion refused.
        code: String,
        /// The promotion already applied that excludes it.
        other: String,
    },
    /// No tax rate is configured for this jurisdiction and tax class.
    #[error("no tax rate for jurisdiction {jurisdiction:?} and tax class {tax_class:?}")]
    TaxRateMissing {
        /// The jurisdiction (country or country-region).
        jurisdiction: String,
        /// The line's tax class.
        tax_class: String,
    },
    /// A refund request names more than can be refunded.
    #[error("refund exceeds what is refundable: {reason}")]
    RefundExceedsCharge {
        /// What exceeds what.
        reason: String,
    },

    // ---- lifecycle -------------------------------------------------------------------------
    /// The event is not allowed from the order's (or sub-process's) current state.
    #[error("invalid transition: {event} is not allowed from {from}")]
    InvalidTransition {
        /// The current state.
        from: String,
        /// The refused event.
        event: String,
    },
    /// A transition's guard refused it.
    #[error("transition {event} from {from} refused: {reason}")]
    GuardFailed {
        /// The current state.
        from: String,
        /// The refused event.
        event: String,
        /// Why the guard refused.
        reason: String,
    },
    /// The order can no longer be edited (fulfillment has started).
    #[error("order cannot be edited in status {status}")]
    OrderNotEditable {
        /// The order's current status.
        status: String,
    },
    /// The order cannot be cancelled in its current state; a return must be used instead.
    #[error("order cannot be cancelled in status {status}: {reason}")]
    NotCancellable {
        /// The order's current status.
        status: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The actor is not allowed to perform this operation.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why the actor was refused.
        reason: String,
    },

    // ---- inventory & fulfilment -----------------------------------------------------------
    /// Not enough available stock to reserve.
    #[error(
        "insufficient stock for {sku} at {warehouse}: requested {requested}, available {available}"
    )]
    InsufficientStock {
        /// The SKU.
        sku: String,
        /// The warehouse (or `*` for all warehouses).
        warehouse: String,
        /// Units requested.
        requested: u64,
        /// Units available.
        available: u64,
    },
    /// The reservation expired before it was committed.
    #[error("reservation {id} expired")]
    ReservationExpired {
        /// The reservation id.
        id: String,
    },
    /// The reservation was already released or committed.
    #[error("reservation {id} already {state}")]
    ReservationClosed {
        /// The reservation id.
        id: String,
        /// The terminal state it is in.
        state: String,
    },
    /// A scan does not match the pick list.
    #[error("scan mismatch: {reason}")]
    ScanMismatch {
        /// What was wrong with the scan.
        reason: String,
    },
    /// The package weight differs from the expected weight beyond tolerance.
    #[error("weight mismatch: expected {expected_grams} g, measured {measured_grams} g")]
    WeightMismatch {
        /// Expected weight in grams.
        expected_grams: u64,
        /// Measured weight in grams.
        measured_grams: u64,
    },
    /// No configured box fits the items.
    #[error("no box fits: {reason}")]
    NoBoxFits {
        /// Volume/weight that did not fit.
        reason: String,
    },
    /// A return is not eligible (window closed, item not returnable, too many units).
    #[error("return not eligible: {reason}")]
    ReturnNotEligible {
        /// Why the return was refused.
        reason: String,
    },

    // ---- allocation ------------------------------------------------------------------------
    /// The order cannot be fully sourced; the short lines are named.
    #[error("unfulfillable: short lines {short:?}")]
    Unfulfillable {
        /// `sku:missing_units` for each short line.
        short: Vec<String>,
    },
    /// The optimiser failed for a reason other than infeasibility.
    #[error("solver failed: {reason}")]
    SolverFailed {
        /// The solver's message.
        reason: String,
    },

    // ---- payment & fraud -------------------------------------------------------------------
    /// The payment gateway declined the operation.
    #[error("payment declined: {reason}")]
    PaymentDeclined {
        /// The gateway's decline reason.
        reason: String,
    },
    /// A payment amount rule would be broken (capture > authorized, refund > captured …).
    #[error("payment amount refused: {reason}")]
    PaymentAmountExceeded {
        /// Which bound would be broken.
        reason: String,
    },
    /// The authorization hold expired.
    #[error("authorization {id} expired")]
    AuthorizationExpired {
        /// The payment id.
        id: String,
    },
    /// The gateway failed or timed out and the retry budget is spent.
    #[error("payment gateway error: {reason}")]
    GatewayError {
        /// What happened.
        reason: String,
    },
    /// The fraud screen rejected the order.
    #[error("rejected by fraud screening (score {score})")]
    FraudRejected {
        /// The score, as a decimal string.
        score: String,
    },

    // ---- concurrency & storage -------------------------------------------------------------
    /// An optimistic-concurrency check failed: the record changed since it was read.
    #[error("conflict on {entity}: expected version {expected}, found {found}")]
    Conflict {
        /// What was being written.
        entity: String,
        /// The version the writer read.
        expected: u64,
        /// The version found in the store.
        found: u64,
    },
    /// An idempotency key was reused with different request content.
    #[error("idempotency key {key:?} was already used with different content")]
    IdempotencyConflict {
        /// The reused key.
        key: String,
    },
    /// The storage backend failed.
    #[error("storage error: {reason}")]
    Storage {
        /// The backend's message.
        reason: String,
    },
}

impl OmsError {
    /// The stable machine-readable code of this error (snake_case, never renamed).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingField { .. } => "missing_field",
            Self::InvalidField { .. } => "invalid_field",
            Self::InvalidQuantity { .. } => "invalid_quantity",
            Self::InvalidSku { .. } => "invalid_sku",
            Self::UnknownCurrency { .. } => "unknown_currency",
            Self::UnknownCountry { .. } => "unknown_country",
            Self::InvalidAmount { .. } => "invalid_amount",
            Self::InvalidPrice { .. } => "invalid_price",
            Self::CurrencyMismatch { .. } => "currency_mismatch",
            Self::Overflow { .. } => "overflow",
            Self::InvalidWeights { .. } => "invalid_weights",
            Self::OrderNotFound { .. } => "order_not_found",
            Self::LineNotFound { .. } => "line_not_found",
            Self::UnknownSku { .. } => "unknown_sku",
            Self::UnknownWarehouse { .. } => "unknown_warehouse",
            Self::NotFound { .. } => "not_found",
            Self::PromoUnknown { .. } => "promo_unknown",
            Self::PromoExpired { .. } => "promo_expired",
            Self::PromoNotYetValid { .. } => "promo_not_yet_valid",
            Self::PromoNotApplicable { .. } => "promo_not_applicable",
            Self::PromoNotStackable { .. } => "promo_not_stackable",
            Self::TaxRateMissing { .. } => "tax_rate_missing",
            Self::RefundExceedsCharge { .. } => "refund_exceeds_charge",
            Self::InvalidTransition { .. } => "invalid_transition",
            Self::GuardFailed { .. } => "guard_failed",
            Self::OrderNotEditable { .. } => "order_not_editable",
            Self::NotCancellable { .. } => "not_cancellable",
            Self::Forbidden { .. } => "forbidden",
            Self::InsufficientStock { .. } => "insufficient_stock",
            Self::ReservationExpired { .. } => "reservation_expired",
            Self::ReservationClosed { .. } => "reservation_closed",
            Self::ScanMismatch { .. } => "scan_mismatch",
            Self::WeightMismatch { .. } => "weight_mismatch",
            Self::NoBoxFits { .. } => "no_box_fits",
            Self::ReturnNotEligible { .. } => "return_not_eligible",
            Self::Unfulfillable { .. } => "unfulfillable",
            Self::SolverFailed { .. } => "solver_failed",
            Self::PaymentDeclined { .. } => "payment_declined",
            Self::PaymentAmountExceeded { .. } => "payment_amount_exceeded",
            Self::AuthorizationExpired { .. } => "authorization_expired",
            Self::GatewayError { .. } => "gateway_error",
            Self::FraudRejected { .. } => "fraud_rejected",
            Self::Conflict { .. } => "conflict",
            Self::IdempotencyConflict { .. } => "idempotency_conflict",
            Self::Storage { .. } => "storage",
        }
    }

    /// Every code, in precedence order; bindings generate their exception tables from it.
    pub const CODES: &'static [&'static str] = &[
        "missing_field",
        "invalid_field",
        "invalid_quantity",
        "invalid_sku",
        "unknown_currency",
        "unknown_country",
        "invalid_amount",
        "invalid_price",
        "currency_mismatch",
        "overflow",
        "invalid_weights",
        "order_not_found",
        "line_not_found",
        "unknown_sku",
        "unknown_warehouse",
        "not_found",
        "promo_unknown",
        "promo_expired",
        "promo_not_yet_valid",
        "promo_not_applicable",
        "promo_not_stackable",
        "tax_rate_missing",
        "refund_exceeds_charge",
        "invalid_transition",
        "guard_failed",
        "order_not_editable",
        "not_cancellable",
        "forbidden",
        "insufficient_stock",
        "reservation_expired",
        "reservation_closed",
        "scan_mismatch",
        "weight_mismatch",
        "no_box_fits",
        "return_not_eligible",
        "unfulfillable",
        "solver_failed",
        "payment_declined",
        "payment_amount_exceeded",
        "authorization_expired",
        "gateway_error",
        "fraud_rejected",
        "conflict",
        "idempotency_conflict",
        "storage",
    ];

    /// Shorthand for [`OmsError::InvalidField`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`OmsError::Overflow`].
    pub fn overflow(operation: impl Into<String>) -> Self {
        Self::Overflow {
            operation: operation.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for code in OmsError::CODES {
            assert!(seen.insert(*code), "duplicate code {code}");
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    #[test]
    fn code_matches_table() {
        let e = OmsError::overflow("x");
        assert_eq!(e.code(), "overflow");
        assert!(OmsError::CODES.contains(&e.code()));
        assert_eq!(e.to_string(), "arithmetic overflow in x");
    }
}
