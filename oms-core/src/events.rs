//! Domain events and the transactional outbox.
//!
//! Every state change appends an [`Event`] carrying the order's version after the change. A
//! store writes the events in the same transaction as the order, into an outbox; the host drains
//! the outbox, publishes, then acknowledges. A crash between publish and acknowledge re-delivers
//! (at least once), a crash before commit loses neither the change nor its event. Consumers
//! de-duplicate by `(order_id, version, name)`.

use serde::{Deserialize, Serialize};

use crate::text::Text;
use crate::time::Timestamp;

/// Event names. A status change of the order is published as `order.<status>` (so seed 004's
/// `order.authorized`, `order.allocated`, `order.picked`, `order.packed`, `order.in_transit`,
/// `order.delivered` are exactly the status names); the constants here are the events that are
/// not a status change.
pub mod names {
    use crate::lifecycle::OrderStatus;

    /// The event name of a move into `status`: `order.<status>`.
    pub fn status(status: OrderStatus) -> String {
        status_name(status).to_owned()
    }

    /// [`status`] without a copy: every status change raises one of these.
    pub fn status_name(status: OrderStatus) -> &'static str {
        match status {
            OrderStatus::Pending => "order.pending",
            OrderStatus::Validated => "order.validated",
            OrderStatus::PaymentPending => "order.payment_pending",
            OrderStatus::Authorized => "order.authorized",
            OrderStatus::OnHold => "order.on_hold",
            OrderStatus::Confirmed => "order.confirmed",
            OrderStatus::Processing => "order.processing",
            OrderStatus::Allocated => "order.allocated",
            OrderStatus::Picked => "order.picked",
            OrderStatus::Packed => "order.packed",
            OrderStatus::AwaitingShipment => "order.awaiting_shipment",
            OrderStatus::PartiallyShipped => "order.partially_shipped",
            OrderStatus::Shipped => "order.shipped",
            OrderStatus::InTransit => "order.in_transit",
            OrderStatus::OutForDelivery => "order.out_for_delivery",
            OrderStatus::PartiallyDelivered => "order.partially_delivered",
            OrderStatus::Delivered => "order.delivered",
            OrderStatus::Completed => "order.completed",
            OrderStatus::ReturnRequested => "order.return_requested",
            OrderStatus::ReturnApproved => "order.return_approved",
            OrderStatus::ReturnRejected => "order.return_rejected",
            OrderStatus::Refunded => "order.refunded",
            OrderStatus::PaymentFailed => "order.payment_failed",
            OrderStatus::Cancelled => "order.cancelled",
        }
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
    /// Key/value detail, in insertion order. [`Text`], so the fixed keys and the short values
    /// (ids, amounts, statuses) of the events every operation raises cost no allocation.
    pub data: Vec<(Text, Text)>,
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
        self.data
            .push((Text::from(key), Text::from(value.to_string())));
        self
    }

    /// The de-duplication key consumers use: `(order_id, version, name)`.
    pub fn dedup_key(&self) -> (u64, u64, &str) {
        (self.order_id, self.version, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::OrderStatus;

    #[test]
    fn every_status_event_is_named_order_dot_status() {
        for status in OrderStatus::ALL {
            assert_eq!(
                names::status_name(status),
                format!("order.{}", status.as_str())
            );
            assert_eq!(names::status(status), names::status_name(status));
        }
    }

    #[test]
    fn details_keep_their_order_and_serialize_as_string_pairs() {
        let e = Event::new(1, 2, names::ORDER_CREATED, Timestamp(3))
            .with("number", &"ORD-1")
            .with("total", &12);
        assert_eq!(
            e.data,
            [
                ("number".into(), "ORD-1".into()),
                ("total".into(), "12".into())
            ]
        );
        let json = serde_json::to_string(&e.data).unwrap();
        assert_eq!(json, r#"[["number","ORD-1"],["total","12"]]"#);
        let back: Vec<(String, String)> = serde_json::from_str(&json).unwrap();
        assert_eq!(back[1], ("total".to_owned(), "12".to_owned()));
    }
}
