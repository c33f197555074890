//! The canonical order lifecycle: one status set that is a superset of every seed's order
//! states, the events that move an order, the guarded transition table, the actors that act and
//! the audit trail of every move.
//!
//! The table [`TRANSITIONS`] is the single source of truth: [`next_status`], [`allowed_events`],
//! [`update_order_status`] and the Mermaid export in [`crate::diagram`] all read it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::order::Order;
use crate::text::Text;
use crate::time::Timestamp;

// Short names keep the transition table one row per line.
use OrderEvent as E;
use OrderStatus as S;

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
///
/// Text formats (JSON) write it as `{"kind": "customer", "id": "cust-1"}` (`{"kind":
/// "system"}` for the system); compact binary formats, which cannot read that shape back,
/// write the variant and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A customer, by customer id: may act only on their own orders.
    Customer(Text),
    /// A staff member, by staff id.
    Staff(Text),
    /// The system itself (jobs, automatic transitions).
    System,
}

/// [`Actor`] as text formats write it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
enum TaggedActor<T> {
    Customer(T),
    Staff(T),
    System,
}

/// [`Actor`] as compact binary formats write it, and the form both are converted through.
#[derive(Serialize, Deserialize)]
enum PlainActor<T> {
    Customer(T),
    Staff(T),
    System,
}

impl<T> From<PlainActor<T>> for TaggedActor<T> {
    fn from(actor: PlainActor<T>) -> Self {
        match actor {
            PlainActor::Customer(id) => TaggedActor::Customer(id),
            PlainActor::Staff(id) => TaggedActor::Staff(id),
            PlainActor::System => TaggedActor::System,
        }
    }
}

impl<T> From<TaggedActor<T>> for PlainActor<T> {
    fn from(actor: TaggedActor<T>) -> Self {
        match actor {
            TaggedActor::Customer(id) => PlainActor::Customer(id),
            TaggedActor::Staff(id) => PlainActor::Staff(id),
            TaggedActor::System => PlainActor::System,
        }
    }
}

impl Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let plain = match self {
            Actor::Customer(id) => PlainActor::Customer(id),
            Actor::Staff(id) => PlainActor::Staff(id),
            Actor::System => PlainActor::System,
        };
        crate::tagged::serialize::<_, TaggedActor<&Text>, _>(plain, s)
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let plain = crate::tagged::deserialize::<PlainActor<Text>, TaggedActor<Text>, _>(d)?;
        Ok(match plain {
            PlainActor::Customer(id) => Actor::Customer(id),
            PlainActor::Staff(id) => Actor::Staff(id),
            PlainActor::System => Actor::System,
        })
    }
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
    pub event: Text,
    /// Free-text reason given by the actor.
    pub reason: Text,
    /// Extra key/value detail (tracking number, decline code …), in insertion order.
    pub metadata: Vec<(Text, Text)>,
    /// Who did it.
    pub actor: Actor,
    /// When.
    pub at: Timestamp,
}

/// Something that happens to an order and may move it to another status.
///
/// Every edge of every seed order diagram maps to one of these (`docs/seed-states.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEvent {
    /// Intake validation passed (address, lines, promotions).
    Validate,
    /// Ask the customer's payment method for the money (pay-then-reserve).
    RequestPayment,
    /// Stock is held for the payment window (reserve-then-pay).
    ReserveInventory,
    /// The gateway placed a hold on the funds.
    PaymentAuthorized,
    /// The payment went through (authorized and cleared, or captured).
    PaymentSucceeded,
    /// The payment was declined or the authorization lapsed.
    PaymentFailed,
    /// Try the payment again after a failure.
    RetryPayment,
    /// The fraud screen asked for a manual review.
    HoldForReview,
    /// The reviewer cleared the order.
    ReviewApproved,
    /// The fraud screen or the reviewer rejected the order.
    ReviewRejected,
    /// The automatic fraud check passed: the order may be fulfilled.
    Confirm,
    /// Fulfillment begins (the post-payment fork of inventory and fulfillment preparation).
    StartFulfillment,
    /// Sourcing decided: warehouses and drivers assigned.
    Allocate,
    /// Every unit picked.
    Pick,
    /// Packed and labelled.
    Pack,
    /// Fulfillment prepared; waiting for the carrier.
    ReadyToShip,
    /// The last shipment was handed to the carrier.
    Ship,
    /// A shipment was handed to the carrier, others remain.
    ShipPartial,
    /// The carrier reports the parcel on its way.
    InTransit,
    /// The parcel is with the driver for the last mile.
    OutForDelivery,
    /// The last shipment was delivered.
    Deliver,
    /// A shipment was delivered, others remain.
    DeliverPartial,
    /// Delivery confirmed (by the customer or automatically): the order is closed.
    Complete,
    /// The customer asks to return items.
    RequestReturn,
    /// The return is accepted.
    ApproveReturn,
    /// The return is refused.
    RejectReturn,
    /// After a rejected return the customer keeps the order.
    KeepOrder,
    /// The returned items were refunded.
    Refund,
    /// Cancel the order (only before anything is packed; afterwards a return is needed).
    Cancel,
}

impl OrderEvent {
    /// Every event, in lifecycle order.
    pub const ALL: [OrderEvent; 29] = [
        OrderEvent::Validate,
        OrderEvent::RequestPayment,
        OrderEvent::ReserveInventory,
        OrderEvent::PaymentAuthorized,
        OrderEvent::PaymentSucceeded,
        OrderEvent::PaymentFailed,
        OrderEvent::RetryPayment,
        OrderEvent::HoldForReview,
        OrderEvent::ReviewApproved,
        OrderEvent::ReviewRejected,
        OrderEvent::Confirm,
        OrderEvent::StartFulfillment,
        OrderEvent::Allocate,
        OrderEvent::Pick,
        OrderEvent::Pack,
        OrderEvent::ReadyToShip,
        OrderEvent::Ship,
        OrderEvent::ShipPartial,
        OrderEvent::InTransit,
        OrderEvent::OutForDelivery,
        OrderEvent::Deliver,
        OrderEvent::DeliverPartial,
        OrderEvent::Complete,
        OrderEvent::RequestReturn,
        OrderEvent::ApproveReturn,
        OrderEvent::RejectReturn,
        OrderEvent::KeepOrder,
        OrderEvent::Refund,
        OrderEvent::Cancel,
    ];

    /// The snake_case name used in the audit trail, JSON and every binding.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderEvent::Validate => "validate",
            OrderEvent::RequestPayment => "request_payment",
            OrderEvent::ReserveInventory => "reserve_inventory",
            OrderEvent::PaymentAuthorized => "payment_authorized",
            OrderEvent::PaymentSucceeded => "payment_succeeded",
            OrderEvent::PaymentFailed => "payment_failed",
            OrderEvent::RetryPayment => "retry_payment",
            OrderEvent::HoldForReview => "hold_for_review",
            OrderEvent::ReviewApproved => "review_approved",
            OrderEvent::ReviewRejected => "review_rejected",
            OrderEvent::Confirm => "confirm",
            OrderEvent::StartFulfillment => "start_fulfillment",
            OrderEvent::Allocate => "allocate",
            OrderEvent::Pick => "pick",
            OrderEvent::Pack => "pack",
            OrderEvent::ReadyToShip => "ready_to_ship",
            OrderEvent::Ship => "ship",
            OrderEvent::ShipPartial => "ship_partial",
            OrderEvent::InTransit => "in_transit",
            OrderEvent::OutForDelivery => "out_for_delivery",
            OrderEvent::Deliver => "deliver",
            OrderEvent::DeliverPartial => "deliver_partial",
            OrderEvent::Complete => "complete",
            OrderEvent::RequestReturn => "request_return",
            OrderEvent::ApproveReturn => "approve_return",
            OrderEvent::RejectReturn => "reject_return",
            OrderEvent::KeepOrder => "keep_order",
            OrderEvent::Refund => "refund",
            OrderEvent::Cancel => "cancel",
        }
    }

    /// Parse the snake_case name.
    pub fn parse(s: &str) -> Option<OrderEvent> {
        OrderEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl fmt::Display for OrderEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for OrderEvent {
    type Err = OmsError;

    fn from_str(s: &str) -> OmsResult<OrderEvent> {
        OrderEvent::parse(s)
            .ok_or_else(|| OmsError::invalid("event", format!("unknown event {s:?}")))
    }
}

/// Facts about the order's sub-processes that guards read. The caller (the service façade)
/// fills it from shipments, packing and refunds; the lifecycle never looks them up itself.
// Four independent yes/no facts reported by different sub-processes, not an encoded state,
// so separate bools are the honest shape.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GuardContext {
    /// At least one unit has been packed (cancellation is then refused: use a return).
    pub anything_packed: bool,
    /// Every shipment of the order has been handed to a carrier.
    pub all_shipped: bool,
    /// Every shipment of the order has been delivered.
    pub all_delivered: bool,
    /// Every unit of the approved return has been refunded.
    pub fully_refunded: bool,
}

/// The condition a transition needs, read from a [`GuardContext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// No condition.
    Always,
    /// Nothing has been packed yet (seed 001's cancellation rule).
    NothingPacked,
    /// Every shipment has been handed to a carrier.
    AllShipped,
    /// Some shipment is still waiting for the carrier.
    NotAllShipped,
    /// Every shipment has been delivered.
    AllDelivered,
    /// Some shipment is still on its way.
    NotAllDelivered,
    /// The approved return has been refunded in full.
    FullyRefunded,
}

impl Guard {
    /// The snake_case name, as shown on diagrams.
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::Always => "always",
            Guard::NothingPacked => "nothing_packed",
            Guard::AllShipped => "all_shipped",
            Guard::NotAllShipped => "not_all_shipped",
            Guard::AllDelivered => "all_delivered",
            Guard::NotAllDelivered => "not_all_delivered",
            Guard::FullyRefunded => "fully_refunded",
        }
    }

    /// `Ok` when `ctx` satisfies the guard, otherwise why not.
    pub fn check(self, ctx: &GuardContext) -> Result<(), &'static str> {
        let (ok, why) = match self {
            Guard::Always => (true, ""),
            Guard::NothingPacked => (!ctx.anything_packed, "items are already packed"),
            Guard::AllShipped => (ctx.all_shipped, "not every shipment has been handed over"),
            Guard::NotAllShipped => (!ctx.all_shipped, "every shipment is already handed over"),
            Guard::AllDelivered => (ctx.all_delivered, "not every shipment has been delivered"),
            Guard::NotAllDelivered => (!ctx.all_delivered, "every shipment is already delivered"),
            Guard::FullyRefunded => (ctx.fully_refunded, "the return is not fully refunded yet"),
        };
        if ok {
            Ok(())
        } else {
            Err(why)
        }
    }
}

/// One row of the order transition table: `from` + `event` (if `guard` holds) → `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transition {
    /// Status the order must be in.
    pub from: OrderStatus,
    /// The event.
    pub event: OrderEvent,
    /// Status after the event.
    pub to: OrderStatus,
    /// Condition that must hold.
    pub guard: Guard,
}

const fn t(from: OrderStatus, event: OrderEvent, to: OrderStatus) -> Transition {
    Transition {
        from,
        event,
        to,
        guard: Guard::Always,
    }
}

const fn g(from: OrderStatus, event: OrderEvent, to: OrderStatus, guard: Guard) -> Transition {
    Transition {
        from,
        event,
        to,
        guard,
    }
}

/// The canonical order machine: at most one row per `(from, event)`, grouped by `from` in
/// lifecycle order. Anything not listed is an [`OmsError::InvalidTransition`], except
/// cancellation after packing, which is an [`OmsError::NotCancellable`].
#[rustfmt::skip] // one row per line reads as the table it is
pub const TRANSITIONS: &[Transition] = &[
    // Intake. Both policies meet at PaymentPending: reserve-then-pay (seeds 001/002) holds
    // stock first, pay-then-reserve (seeds 000/004) asks for payment first.
    t(S::Pending, E::Validate, S::Validated),
    t(S::Pending, E::RequestPayment, S::PaymentPending),
    t(S::Pending, E::ReserveInventory, S::PaymentPending),
    t(S::Pending, E::PaymentAuthorized, S::Authorized),
    t(S::Pending, E::Cancel, S::Cancelled),
    t(S::Validated, E::RequestPayment, S::PaymentPending),
    t(S::Validated, E::ReserveInventory, S::PaymentPending),
    t(S::Validated, E::PaymentAuthorized, S::Authorized),
    t(S::Validated, E::Cancel, S::Cancelled),
    // Payment.
    t(S::PaymentPending, E::PaymentAuthorized, S::Authorized),
    t(S::PaymentPending, E::PaymentSucceeded, S::Confirmed),
    t(S::PaymentPending, E::PaymentFailed, S::PaymentFailed),
    t(S::PaymentPending, E::Cancel, S::Cancelled),
    t(S::PaymentFailed, E::RetryPayment, S::PaymentPending),
    t(S::PaymentFailed, E::Cancel, S::Cancelled),
    // Fraud screening happens after authorization and before any fulfillment (seed 003).
    t(S::Authorized, E::PaymentFailed, S::PaymentFailed),
    t(S::Authorized, E::HoldForReview, S::OnHold),
    t(S::Authorized, E::ReviewRejected, S::Cancelled),
    t(S::Authorized, E::Confirm, S::Confirmed),
    t(S::Authorized, E::Cancel, S::Cancelled),
    t(S::OnHold, E::ReviewApproved, S::Confirmed),
    t(S::OnHold, E::ReviewRejected, S::Cancelled),
    t(S::OnHold, E::Cancel, S::Cancelled),
    // Fulfillment.
    t(S::Confirmed, E::StartFulfillment, S::Processing),
    t(S::Confirmed, E::Allocate, S::Allocated),
    t(S::Confirmed, E::Cancel, S::Cancelled),
    t(S::Processing, E::Allocate, S::Allocated),
    t(S::Processing, E::Pick, S::Picked),
    t(S::Processing, E::Pack, S::Packed),
    t(S::Processing, E::ReadyToShip, S::AwaitingShipment),
    g(S::Processing, E::Ship, S::Shipped, Guard::AllShipped),
    g(S::Processing, E::ShipPartial, S::PartiallyShipped, Guard::NotAllShipped),
    g(S::Processing, E::Cancel, S::Cancelled, Guard::NothingPacked),
    t(S::Allocated, E::Pick, S::Picked),
    t(S::Allocated, E::Pack, S::Packed),
    g(S::Allocated, E::Cancel, S::Cancelled, Guard::NothingPacked),
    t(S::Picked, E::Pack, S::Packed),
    g(S::Picked, E::Cancel, S::Cancelled, Guard::NothingPacked),
    t(S::Packed, E::ReadyToShip, S::AwaitingShipment),
    g(S::Packed, E::Ship, S::Shipped, Guard::AllShipped),
    g(S::Packed, E::ShipPartial, S::PartiallyShipped, Guard::NotAllShipped),
    // Seed 004's driver scans the parcel at the warehouse: handover and transit in one step.
    g(S::Packed, E::InTransit, S::InTransit, Guard::AllShipped),
    g(S::AwaitingShipment, E::Ship, S::Shipped, Guard::AllShipped),
    g(S::AwaitingShipment, E::ShipPartial, S::PartiallyShipped, Guard::NotAllShipped),
    g(S::AwaitingShipment, E::InTransit, S::InTransit, Guard::AllShipped),
    // Shipping and delivery; split shipments stay partial until the last one moves.
    g(S::PartiallyShipped, E::ShipPartial, S::PartiallyShipped, Guard::NotAllShipped),
    g(S::PartiallyShipped, E::Ship, S::Shipped, Guard::AllShipped),
    g(S::PartiallyShipped, E::DeliverPartial, S::PartiallyDelivered, Guard::NotAllDelivered),
    t(S::Shipped, E::InTransit, S::InTransit),
    t(S::Shipped, E::OutForDelivery, S::OutForDelivery),
    g(S::Shipped, E::Deliver, S::Delivered, Guard::AllDelivered),
    g(S::Shipped, E::DeliverPartial, S::PartiallyDelivered, Guard::NotAllDelivered),
    t(S::InTransit, E::OutForDelivery, S::OutForDelivery),
    g(S::InTransit, E::Deliver, S::Delivered, Guard::AllDelivered),
    g(S::InTransit, E::DeliverPartial, S::PartiallyDelivered, Guard::NotAllDelivered),
    g(S::OutForDelivery, E::Deliver, S::Delivered, Guard::AllDelivered),
    g(S::OutForDelivery, E::DeliverPartial, S::PartiallyDelivered, Guard::NotAllDelivered),
    g(S::PartiallyDelivered, E::DeliverPartial, S::PartiallyDelivered, Guard::NotAllDelivered),
    g(S::PartiallyDelivered, E::Deliver, S::Delivered, Guard::AllDelivered),
    // After delivery: close, or return.
    t(S::Delivered, E::Complete, S::Completed),
    t(S::Delivered, E::RequestReturn, S::ReturnRequested),
    t(S::ReturnRequested, E::ApproveReturn, S::ReturnApproved),
    t(S::ReturnRequested, E::RejectReturn, S::ReturnRejected),
    g(S::ReturnApproved, E::Refund, S::Refunded, Guard::FullyRefunded),
    // Damaged items: the return closes with no refund, and so does the order.
    t(S::ReturnApproved, E::Complete, S::Completed),
    t(S::ReturnRejected, E::KeepOrder, S::Delivered),
    t(S::ReturnRejected, E::Complete, S::Completed),
];

/// The table row for `(from, event)`, if any.
pub fn transition(from: OrderStatus, event: OrderEvent) -> Option<&'static Transition> {
    TRANSITIONS
        .iter()
        .find(|row| row.from == from && row.event == event)
}

const PACKED_REASON: &str = "items are already packed; use a return once the order is delivered";

/// Why an order in `status` can no longer be cancelled, if that is the case: from packing on,
/// goods have left the shelf and only a return can undo the sale.
fn cancel_refusal(status: OrderStatus) -> Option<&'static str> {
    match status {
        S::Processing | S::Allocated | S::Picked | S::Packed | S::AwaitingShipment => {
            Some(PACKED_REASON)
        }
        S::PartiallyShipped
        | S::Shipped
        | S::InTransit
        | S::OutForDelivery
        | S::PartiallyDelivered => Some("the order has shipped; use a return once it is delivered"),
        S::Delivered | S::ReturnRequested | S::ReturnApproved | S::ReturnRejected => {
            Some("the order was delivered; use a return instead")
        }
        _ => None,
    }
}

/// The status `event` moves an order in `from` to, given the guard facts; nothing is changed.
///
/// Errors: [`OmsError::NotCancellable`] for a cancellation once anything is packed (the reason
/// says to use a return), [`OmsError::GuardFailed`] when a row exists but its guard does not
/// hold, [`OmsError::InvalidTransition`] for every other event the table does not list
/// (terminal statuses accept nothing).
///
/// ```
/// use oms_core::lifecycle::{next_status, GuardContext, OrderEvent, OrderStatus};
///
/// let ctx = GuardContext::default();
/// assert_eq!(
///     next_status(OrderStatus::Confirmed, OrderEvent::Cancel, &ctx).unwrap(),
///     OrderStatus::Cancelled
/// );
/// let err = next_status(OrderStatus::Shipped, OrderEvent::Cancel, &ctx).unwrap_err();
/// assert_eq!(err.code(), "not_cancellable");
/// ```
pub fn next_status(
    from: OrderStatus,
    event: OrderEvent,
    guard: &GuardContext,
) -> OmsResult<OrderStatus> {
    let invalid = || OmsError::InvalidTransition {
        from: from.as_str().into(),
        event: event.as_str().into(),
    };
    if from.is_terminal() {
        return Err(invalid());
    }
    let Some(row) = transition(from, event) else {
        return match (event, cancel_refusal(from)) {
            (E::Cancel, Some(reason)) => Err(OmsError::NotCancellable {
                status: from.as_str().into(),
                reason: reason.into(),
            }),
            _ => Err(invalid()),
        };
    };
    match row.guard.check(guard) {
        Ok(()) => Ok(row.to),
        Err(_) if event == E::Cancel => Err(OmsError::NotCancellable {
            status: from.as_str().into(),
            reason: cancel_refusal(from).unwrap_or(PACKED_REASON).into(),
        }),
        Err(why) => Err(OmsError::GuardFailed {
            from: from.as_str().into(),
            event: event.as_str().into(),
            reason: why.into(),
        }),
    }
}

/// The events the table lists from `from` (whether or not their guards hold today), in
/// [`OrderEvent::ALL`] order. Empty for terminal statuses.
pub fn allowed_events(from: OrderStatus) -> Vec<OrderEvent> {
    OrderEvent::ALL
        .into_iter()
        .filter(|e| transition(from, *e).is_some())
        .collect()
}

/// Apply `event` to `order` (seed 003's `update_order_status`).
///
/// On success the order takes the new status, its `version` goes up by one, `updated_at`
/// becomes `now` and the returned [`AuditEntry`] (seed 002's `order_state_transitions` row) is
/// appended to `history`. On any error the order is left exactly as it was.
pub fn update_order_status(
    order: &mut Order,
    event: OrderEvent,
    guard: &GuardContext,
    actor: &Actor,
    reason: impl Into<Text>,
    metadata: Vec<(Text, Text)>,
    now: Timestamp,
) -> OmsResult<AuditEntry> {
    let from = order.status;
    let to = next_status(from, event, guard)?;
    let version = order
        .version
        .checked_add(1)
        .ok_or_else(|| OmsError::overflow("order version"))?;
    let entry = AuditEntry {
        from: Some(from),
        to,
        event: Text::from_static(event.as_str()),
        reason: reason.into(),
        metadata,
        actor: actor.clone(),
        at: now,
    };
    order.status = to;
    order.version = version;
    order.updated_at = now;
    order.history.push(std::sync::Arc::new(entry.clone()));
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::{Currency, Money};
    use crate::order::{AddressInput, Customer, LineItemInput, OrderDraft};
    use crate::time::{ManualClock, SequentialIds};
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn actors_keep_their_json_shape() {
        let cases = [
            (
                Actor::Customer("cust-1".into()),
                r#"{"kind":"customer","id":"cust-1"}"#,
            ),
            (Actor::Staff("ops".into()), r#"{"kind":"staff","id":"ops"}"#),
            (Actor::System, r#"{"kind":"system"}"#),
        ];
        for (actor, json) in cases {
            assert_eq!(serde_json::to_string(&actor).unwrap(), json);
            assert_eq!(serde_json::from_str::<Actor>(json).unwrap(), actor);
        }
        assert!(serde_json::from_str::<Actor>(r#"{"kind":"robot","id":"r"}"#).is_err());
        assert!(serde_json::from_str::<Actor>(r#"{"kind":"customer"}"#).is_err());
    }

    #[test]
    fn actors_round_trip_through_a_compact_binary_format() {
        for actor in [
            Actor::Customer("cust-1".into()),
            Actor::Staff("ops".into()),
            Actor::System,
        ] {
            let bytes = postcard::to_stdvec(&actor).unwrap();
            assert_eq!(postcard::from_bytes::<Actor>(&bytes).unwrap(), actor);
        }
        assert!(postcard::from_bytes::<Actor>(&[9]).is_err());
    }

    fn order() -> Order {
        let draft = OrderDraft {
            customer: Customer {
                id: "c1".into(),
                email: "ada@example.com".into(),
                name: "Ada".into(),
            },
            shipping_address: AddressInput {
                name: "Ada Lovelace".into(),
                line1: "1 Main St".into(),
                city: "New York".into(),
                region: "NY".into(),
                postal_code: "10001".into(),
                country: "US".into(),
                ..AddressInput::default()
            },
            billing_address: None,
            currency: Currency::USD,
            lines: vec![LineItemInput::new(
                "PHONE-X",
                1,
                Money::parse("399.00", Currency::USD).unwrap(),
            )],
            promo_codes: vec![],
        };
        let clock = ManualClock::new(Timestamp::from_civil(2026, 5, 6, 9, 0, 0));
        Order::create(
            &draft,
            &Actor::System,
            &clock,
            &SequentialIds::starting_at(1),
        )
        .unwrap()
    }

    fn apply(order: &mut Order, events: &[OrderEvent], ctx: GuardContext) {
        for (at, e) in (0_i64..).zip(events) {
            update_order_status(order, *e, &ctx, &Actor::System, "", vec![], Timestamp(at))
                .unwrap();
        }
    }

    const SHIPPED_ALL: GuardContext = GuardContext {
        anything_packed: false,
        all_shipped: true,
        all_delivered: true,
        fully_refunded: true,
    };

    #[test]
    fn event_names_round_trip() {
        let names: BTreeSet<_> = OrderEvent::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(names.len(), OrderEvent::ALL.len());
        for e in OrderEvent::ALL {
            assert_eq!(OrderEvent::parse(e.as_str()), Some(e));
            assert_eq!(e.as_str().parse::<OrderEvent>().unwrap(), e);
            assert_eq!(serde_json::to_string(&e).unwrap(), format!("\"{e}\""));
        }
        assert_eq!(OrderEvent::parse("Ship"), None);
        assert_eq!(
            "teleport".parse::<OrderEvent>().unwrap_err().code(),
            "invalid_field"
        );
    }

    #[test]
    fn table_is_a_function_and_terminals_have_no_rows() {
        let mut keys = BTreeSet::new();
        for row in TRANSITIONS {
            assert!(keys.insert((row.from, row.event)), "duplicate row {row:?}");
            assert!(
                !row.from.is_terminal(),
                "row out of a terminal status: {row:?}"
            );
        }
        for s in OrderStatus::ALL {
            assert_eq!(allowed_events(s).is_empty(), s.is_terminal(), "{s}");
        }
    }

    #[test]
    fn every_status_is_reachable_from_pending() {
        let mut seen = BTreeSet::from([OrderStatus::Pending]);
        let mut frontier = vec![OrderStatus::Pending];
        while let Some(s) = frontier.pop() {
            for row in TRANSITIONS.iter().filter(|r| r.from == s) {
                if seen.insert(row.to) {
                    frontier.push(row.to);
                }
            }
        }
        assert_eq!(seen.len(), OrderStatus::ALL.len());
    }

    #[test]
    fn cancellation_follows_seed_001() {
        let none = GuardContext::default();
        let packed = GuardContext {
            anything_packed: true,
            ..GuardContext::default()
        };
        for s in [
            S::Pending,
            S::Validated,
            S::PaymentPending,
            S::Authorized,
            S::OnHold,
            S::Confirmed,
            S::PaymentFailed,
        ] {
            assert_eq!(
                next_status(s, E::Cancel, &packed).unwrap(),
                S::Cancelled,
                "{s}"
            );
        }
        for s in [S::Processing, S::Allocated, S::Picked] {
            assert_eq!(
                next_status(s, E::Cancel, &none).unwrap(),
                S::Cancelled,
                "{s}"
            );
            let err = next_status(s, E::Cancel, &packed).unwrap_err();
            assert_eq!(err.code(), "not_cancellable", "{s}");
            assert!(err.to_string().contains("use a return"), "{err}");
        }
        let later = OrderStatus::ALL
            .into_iter()
            .skip_while(|s| *s != S::Packed)
            .filter(|s| !s.is_terminal() && *s != S::PaymentFailed);
        for s in later {
            let err = next_status(s, E::Cancel, &none).unwrap_err();
            assert_eq!(err.code(), "not_cancellable", "{s}");
            assert!(err.to_string().contains("use a return"), "{err}");
        }
        for s in [S::Cancelled, S::Completed, S::Refunded] {
            let err = next_status(s, E::Cancel, &none).unwrap_err();
            assert_eq!(err.code(), "invalid_transition", "{s}");
        }
    }

    #[test]
    fn guards_refuse_with_guard_failed() {
        let none = GuardContext::default();
        let err = next_status(S::Shipped, E::Deliver, &none).unwrap_err();
        assert_eq!(err.code(), "guard_failed");
        assert_eq!(
            next_status(S::Shipped, E::DeliverPartial, &none).unwrap(),
            S::PartiallyDelivered
        );
        assert_eq!(
            next_status(S::Shipped, E::DeliverPartial, &SHIPPED_ALL)
                .unwrap_err()
                .code(),
            "guard_failed"
        );
        assert_eq!(
            next_status(S::Packed, E::Ship, &none).unwrap_err().code(),
            "guard_failed"
        );
        assert_eq!(
            next_status(S::ReturnApproved, E::Refund, &none)
                .unwrap_err()
                .code(),
            "guard_failed"
        );
        assert_eq!(
            next_status(S::ReturnApproved, E::Refund, &SHIPPED_ALL).unwrap(),
            S::Refunded
        );
    }

    #[test]
    fn update_records_the_move_and_errors_leave_the_order_alone() {
        let mut o = order();
        assert_eq!((o.status, o.version, o.history.len()), (S::Pending, 1, 1));
        let entry = update_order_status(
            &mut o,
            E::Validate,
            &GuardContext::default(),
            &Actor::Staff("s7".into()),
            "address checked",
            vec![("checker".into(), "v2".into())],
            Timestamp(42),
        )
        .unwrap();
        assert_eq!(entry.from, Some(S::Pending));
        assert_eq!(entry.to, S::Validated);
        assert_eq!(entry.event, "validate");
        assert_eq!(entry.reason, "address checked");
        assert_eq!(entry.metadata, vec![("checker".into(), "v2".into())]);
        assert_eq!(entry.actor, Actor::Staff("s7".into()));
        assert_eq!(entry.at, Timestamp(42));
        assert_eq!(
            (o.status, o.version, o.updated_at),
            (S::Validated, 2, Timestamp(42))
        );
        assert_eq!(o.history.last().map(|h| &**h), Some(&entry));

        let before = o.clone();
        let err = update_order_status(
            &mut o,
            E::Ship,
            &SHIPPED_ALL,
            &Actor::System,
            "",
            vec![],
            Timestamp(43),
        )
        .unwrap_err();
        assert_eq!(err.code(), "invalid_transition");
        assert_eq!(o, before);
    }

    #[test]
    fn split_shipment_path() {
        let mut o = order();
        let partial = GuardContext::default();
        apply(
            &mut o,
            &[
                E::PaymentAuthorized,
                E::Confirm,
                E::StartFulfillment,
                E::Pack,
            ],
            partial,
        );
        let packed = GuardContext {
            anything_packed: true,
            ..partial
        };
        apply(
            &mut o,
            &[E::ShipPartial, E::ShipPartial, E::DeliverPartial],
            packed,
        );
        assert_eq!(o.status, S::PartiallyDelivered);
        apply(&mut o, &[E::Deliver, E::Complete], SHIPPED_ALL);
        assert_eq!(o.status, S::Completed);
        assert_eq!(o.version, 10);
    }

    fn guard_context() -> impl Strategy<Value = GuardContext> {
        any::<[bool; 4]>().prop_map(|[a, b, c, d]| GuardContext {
            anything_packed: a,
            all_shipped: b,
            all_delivered: c,
            fully_refunded: d,
        })
    }

    /// Pick an event by `mode` (0..100): mostly a non-cancel event the table lists from the
    /// current status, so walks go deep instead of ending in `cancelled` within a few steps;
    /// sometimes a cancel; sometimes any event at all, so refusals are exercised too.
    fn pick(status: OrderStatus, mode: u8, selector: usize) -> OrderEvent {
        let onward: Vec<OrderEvent> = allowed_events(status)
            .into_iter()
            .filter(|e| *e != E::Cancel)
            .collect();
        match mode {
            0..=74 if !onward.is_empty() => onward[selector % onward.len()],
            75..=84 => E::Cancel,
            _ => OrderEvent::ALL[selector % OrderEvent::ALL.len()],
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_event_sequences_keep_the_machine_consistent(
            steps in prop::collection::vec(
                (0..100_u8, any::<usize>(), guard_context()),
                0..60,
            )
        ) {
            let mut o = order();
            for (at, (mode, selector, ctx)) in (0_i64..).zip(steps) {
                let event = pick(o.status, mode, selector);
                let before = o.clone();
                let result = update_order_status(
                    &mut o, event, &ctx, &Actor::System, "p", vec![], Timestamp(at),
                );
                match result {
                    Ok(entry) => {
                        prop_assert!(!before.status.is_terminal());
                        prop_assert_eq!(o.history.len(), before.history.len() + 1);
                        prop_assert_eq!(o.version, before.version + 1);
                        prop_assert_eq!(o.history.last().map(|h| &**h), Some(&entry));
                        prop_assert_eq!(Some(before.status), entry.from);
                        prop_assert_eq!(next_status(before.status, event, &ctx), Ok(o.status));
                    }
                    Err(err) => {
                        prop_assert_eq!(&o, &before);
                        prop_assert!(matches!(
                            err.code(),
                            "invalid_transition" | "guard_failed" | "not_cancellable"
                        ));
                        if before.status.is_terminal() {
                            prop_assert_eq!(err.code(), "invalid_transition");
                        }
                    }
                }
                prop_assert!(OrderStatus::ALL.contains(&o.status));
            }

            // Replaying the audit trail from Pending reproduces status and version, and every
            // recorded move is a row of the table.
            let mut replay = o.history.iter();
            let first = replay.next().unwrap();
            prop_assert_eq!((first.from, first.to), (None, OrderStatus::Pending));
            let (mut status, mut version) = (first.to, 1u64);
            for entry in replay {
                prop_assert_eq!(entry.from, Some(status));
                let event = OrderEvent::parse(&entry.event).unwrap();
                let row = transition(status, event).unwrap();
                prop_assert_eq!(row.to, entry.to);
                status = entry.to;
                version += 1;
            }
            prop_assert_eq!(status, o.status);
            prop_assert_eq!(version, o.version);
        }
    }
}
