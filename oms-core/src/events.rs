//! Domain events and the transactional outbox.
//!
//! Every state change appends an [`Event`] carrying the order's version after the change. A
//! store writes the events in the same transaction as the order, into an outbox; the host drains
//! the outbox, publishes, then acknowledges. A crash between publish and acknowledge re-delivers
//! (at least once), a crash before commit loses neither the change nor its event. Consumers
//! de-duplicate by `(order_id, version, name)`.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Event names. A status change of the order is published as `order.<status>` (so seed 004's
/// `order.authorized`, `order.allocated`, `order.picked`, `order.packed`, `order.in_transit`,
/// `order.delivered` are exactly the status names); the constants here are the events that are
/// not a status change.
pub mod names {
    use crate::lifecycle::OrderStatus;

    /// The event name of a move into `status`: `order.<status>`.
    pub fn status(status: OrderStatus) -> String {
        format!("order.{}", status.as_str())
    }

    /// An order was placed.
    pub const ORDER_CREATED: &str = "order.created";
    /// An order's lines changed before fulfillment.
    pub const ORDER_UPDATED: &str = "order.updated";
    /// Fraud screening decided (the data carries the verdict and score).
    pub const ORDER_SCREENED: &str = "order.screened";
    /// The post-payment fork prepared the parcels (warehouse → box).
    pub const FULFILLMENT_PREPARED: &str = "order.fulfillment_prepared";
    /// The sourcing plan chosen at reservation (strategy and cost).
    pub const ORDER_SOURCED: &str = "order.sourced";
    /// Stock was reserved for the order.
    pub const ORDER_RESERVED: &str = "order.reserved";
    /// A shipment changed state (the data carries the shipment and its status).
    pub const SHIPMENT_UPDATED: &str = "shipment.updated";
    /// A payment was authorized.
    pub const PAYMENT_AUTHORIZED: &str = "payment.authorized";
    /// A payment was declined or failed.
    pub const PAYMENT_FAILED: &str = "payment.failed";
    /// A payment was captured (in part or whole).
    pub const PAYMENT_CAPTURED: &str = "payment.captured";
    /// A payment hold was voided.
    pub const PAYMENT_VOIDED: &str = "payment.voided";
    /// A return was requested.
    pub const RETURN_REQUESTED: &str = "return.requested";
    /// A return was approved.
    pub const RETURN_APPROVED: &str = "return.approved";
    /// A return was rejected.
    pub const RETURN_REJECTED: &str = "return.rejected";
    /// A returned parcel was received and inspected.
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
