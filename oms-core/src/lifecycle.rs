//! The canonical order lifecycle: one status set that is a superset of every seed's order
//! states, the actors that move an order, and the audit trail of every move.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// The canonical order status: a superset of the five seeds' order states.
/// `docs/seed-states.md` maps every seed state name onto one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed, not yet validated or paid.
    Pending,
    /// Passed intake validation (address, lines, promotions).
    Validated,
    /// Waiting for the payment outcome (reserve-then-pay: stock is held meanwhile).
    PaymentPending,
    /// Payment authorized (funds on hold).
    Authorized,
    /// Held for manual fraud review.
    OnHold,
    /// Paid and cleared: ready for fulfillment.
    Confirmed,
    /// Fulfillment has started (post-payment fork: inventory and fulfillment preparation).
    Processing,
    /// Sourcing decided: warehouses and drivers assigned.
    Allocated,
    /// Every unit picked.
    Picked,
    /// Packed and labelled.
    Packed,
    /// Ready and waiting for the carrier.
    AwaitingShipment,
    /// Some shipments handed to the carrier, others not yet.
    PartiallyShipped,
    /// Every shipment handed to the carrier.
    Shipped,
    /// On its way.
    InTransit,
    /// With the driver for the last mile.
    OutForDelivery,
    /// Some shipments delivered, others not yet.
    PartiallyDelivered,
    /// Every shipment delivered.
    Delivered,
    /// Delivery confirmed and the return window handled: nothing more will happen.
    Completed,
    /// The customer asked to return items.
    ReturnRequested,
    /// The return was approved.
    ReturnApproved,
    /// The return was rejected; the customer keeps the order.
    ReturnRejected,
    /// The returned items were refunded.
    Refunded,
    /// The payment failed (declined, or capture failed).
    PaymentFailed,
    /// Cancelled before shipment; stock released, payment voided or refunded.
    Cancelled,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [OrderStatus; 24] = [
        OrderStatus::Pending,
        OrderStatus::Validated,
        OrderStatus::PaymentPending,
        OrderStatus::Authorized,
        OrderStatus::OnHold,
        OrderStatus::Confirmed,
        OrderStatus::Processing,
        OrderStatus::Allocated,
        OrderStatus::Picked,
        OrderStatus::Packed,
        OrderStatus::AwaitingShipment,
        OrderStatus::PartiallyShipped,
        OrderStatus::Shipped,
        OrderStatus::InTransit,
        OrderStatus::OutForDelivery,
        OrderStatus::PartiallyDelivered,
        OrderStatus::Delivered,
        OrderStatus::Completed,
        OrderStatus::ReturnRequested,
        OrderStatus::ReturnApproved,
        OrderStatus::ReturnRejected,
        OrderStatus::Refunded,
        OrderStatus::PaymentFailed,
        OrderStatus::Cancelled,
    ];

    /// The snake_case name used in storage, JSON and every binding.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Validated => "validated",
            OrderStatus::PaymentPending => "payment_pending",
            OrderStatus::Authorized => "authorized",
            OrderStatus::OnHold => "on_hold",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Processing => "processing",
            OrderStatus::Allocated => "allocated",
            OrderStatus::Picked => "picked",
            OrderStatus::Packed => "packed",
            OrderStatus::AwaitingShipment => "awaiting_shipment",
            OrderStatus::PartiallyShipped => "partially_shipped",
            OrderStatus::Shipped => "shipped",
            OrderStatus::InTransit => "in_transit",
            OrderStatus::OutForDelivery => "out_for_delivery",
            OrderStatus::PartiallyDelivered => "partially_delivered",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Completed => "completed",
            OrderStatus::ReturnRequested => "return_requested",
            OrderStatus::ReturnApproved => "return_approved",
            OrderStatus::ReturnRejected => "return_rejected",
            OrderStatus::Refunded => "refunded",
            OrderStatus::PaymentFailed => "payment_failed",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Parse the snake_case name.
    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Lines may be added, removed or changed: fulfillment has not started.
    pub fn is_editable(self) -> bool {
        matches!(
            self,
            OrderStatus::Pending
                | OrderStatus::Validated
                | OrderStatus::PaymentPending
                | OrderStatus::Authorized
                | OrderStatus::OnHold
                | OrderStatus::Confirmed
        )
    }

    /// No further transition is possible.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Completed | OrderStatus::Refunded | OrderStatus::Cancelled
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who performs an operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// A customer, by customer id: may act only on their own orders.
    Customer(String),
    /// A staff member, by staff id.
    Staff(String),
    /// The system itself (jobs, automatic transitions).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Customer(id) => write!(f, "customer:{id}"),
            Actor::Staff(id) => write!(f, "staff:{id}"),
            Actor::System => f.write_str("system"),
        }
    }
}

/// One row of the audit trail (seed 002's `order_state_transitions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Status before; `None` for the creation entry.
    pub from: Option<OrderStatus>,
    /// Status after.
    pub to: OrderStatus,
    /// The event name that caused the move.
    pub event: String,
    /// Free-text reason given by the actor.
    pub reason: String,
    /// Extra key/value detail (tracking number, decline code …), in insertion order.
    pub metadata: Vec<(String, String)>,
    /// Who did it.
    pub actor: Actor,
    /// When.
    pub at: Timestamp,
}
