//! Domain events and the transactional outbox.
//!
//! Every state change appends an [`Event`] carrying the order's version after the change. A
//! store writes the events in the same transaction as the order, into an outbox; the host drains
//! the outbox, publishes, then acknowledges. A crash between publish and acknowledge re-delivers
//! (at least once), a crash before commit loses neither the change nor its event. Consumers
//! de-duplicate by `(order_id, version, name)`.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Event names of seed 004's table, plus the ones the other seeds need.
pub mod names {
    /// An order was placed.
    pub const ORDER_CREATED: &str = "order.created";
    /// An order's lines changed before fulfillment.
    pub const ORDER_UPDATED: &str = "order.updated";
    /// Passed fraud screening.
    pub const ORDER_FRAUD_APPROVED: &str = "order.fraud_approved";
    /// Held for manual fraud review.
    pub const ORDER_FRAUD_REVIEW: &str = "order.fraud_review";
    /// Stock reserved.
    pub const ORDER_RESERVED: &str = "order.reserved";
    /// Payment authorized.
    pub const ORDER_AUTHORIZED: &str = "order.authorized";
    /// Paid and confirmed.
    pub const ORDER_CONFIRMED: &str = "order.confirmed";
    /// Sourcing decided.
    pub const ORDER_ALLOCATED: &str = "order.allocated";
    /// Picked.
    pub const ORDER_PICKED: &str = "order.picked";
    /// Packed.
    pub const ORDER_PACKED: &str = "order.packed";
    /// Handed to the carrier.
    pub const ORDER_SHIPPED: &str = "order.shipped";
    /// In transit.
    pub const ORDER_IN_TRANSIT: &str = "order.in_transit";
    /// Out for delivery.
    pub const ORDER_OUT_FOR_DELIVERY: &str = "order.out_for_delivery";
    /// Delivered.
    pub const ORDER_DELIVERED: &str = "order.delivered";
    /// Completed.
    pub const ORDER_COMPLETED: &str = "order.completed";
    /// Cancelled.
    pub const ORDER_CANCELLED: &str = "order.cancelled";
    /// Payment failed.
    pub const PAYMENT_FAILED: &str = "payment.failed";
    /// Payment captured.
    pub const PAYMENT_CAPTURED: &str = "payment.captured";
    /// A return was requested.
    pub const RETURN_REQUESTED: &str = "return.requested";
    /// A return was approved.
    pub const RETURN_APPROVED: &str = "return.approved";
    /// A return was rejected.
    pub const RETURN_REJECTED: &str = "return.rejected";
    /// A return was received at the warehouse.
    pub const RETURN_RECEIVED: &str = "return.received";
    /// A refund was issued.
    pub const REFUND_ISSUED: &str = "refund.issued";
    /// A reservation expired and its stock was released.
    pub const RESERVATION_EXPIRED: &str = "reservation.expired";
}

/// One domain event, as appended to the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Outbox sequence number, assigned by the store on append (0 before).
    pub seq: u64,
    /// The order it concerns.
    pub order_id: u64,
    /// The order's version after the change that raised it.
    pub version: u64,
    /// Event name, e.g. `order.created` (see [`names`]).
    pub name: String,
    /// When it happened.
    pub at: Timestamp,
    /// Key/value detail, in insertion order.
    pub data: Vec<(String, String)>,
}

impl Event {
    /// A new event for `order_id` at `version`, not yet sequenced.
    pub fn new(order_id: u64, version: u64, name: &str, at: Timestamp) -> Event {
        Event {
            seq: 0,
            order_id,
            version,
            name: name.to_owned(),
            at,
            data: Vec::new(),
        }
    }

    /// Add one key/value detail.
    pub fn with(mut self, key: &str, value: &impl ToString) -> Event {
        self.data.push((key.to_owned(), value.to_string()));
        self
    }

    /// The de-duplication key consumers use: `(order_id, version, name)`.
    pub fn dedup_key(&self) -> (u64, u64, &str) {
        (self.order_id, self.version, &self.name)
    }
}
