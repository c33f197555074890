//! Changes after checkout: `cancel_order`, `add_line_item`, `update_order_status`,
//! `reserve_inventory`, payment resumption, manual review and reservation expiry.

use serde::{Deserialize, Serialize};

use super::intake::Paid;
use super::{Change, CheckoutFlow, NotificationKind, OrderService};
use crate::error::{OmsError, OmsResult};
use crate::events::names;
use crate::fraud::FraudVerdict;
use crate::inventory::{ReservationRequest, ReservationStatus};
use crate::lifecycle::{next_status, Actor, GuardContext, OrderEvent, OrderStatus};
use crate::order::{LineItemInput, Order};
use crate::payment::{Outcome, PaymentStatus};
use crate::pricing::place_pricing;
use crate::text::Text;

/// One order touched by [`OrderService::expire_reservations`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiredOrder {
    /// The order id.
    pub order_id: u64,
    /// The reservation that expired.
    pub reservation_id: u64,
    /// True when the order was cancelled because it was still unpaid.
    pub cancelled: bool,
}

impl OrderService {
    /// Cancel an order (seed 001 §7): check it is cancellable, reverse the payment (void the
    /// hold, or refund what was captured), release the stock, mark it cancelled and tell the
    /// customer. Refused with `NotCancellable` once anything is packed (use a return).
    /// If a reversal fails midway, the progress made is kept and the call can be repeated.
    pub fn cancel_order(
        &self,
        order_id: u64,
        actor: &Actor,
        reason: &str,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "cancel_order",
            &(order_id, actor, reason),
            |idem| {
                let mut ch = self.load(order_id, actor)?;
                let guard = Self::guard(&ch.order);
                // Ask the machine first: a refusal must not have touched payment or stock.
                next_status(ch.order.status, OrderEvent::Cancel, &guard)?;
                if let Err(e) = self
                    .reverse_payments(&mut ch)
                    .and_then(|()| self.release_all(&ch.order))
                {
                    if ch.events.is_empty() {
                        return Err(e);
                    }
                    // Keep the reversals that did happen, so a retry does not repeat them.
                    self.commit(ch, None, |_| Ok(()))?;
                    return Err(e);
                }
                let why = if reason.trim().is_empty() {
                    "cancelled on request"
                } else {
                    reason
                };
                self.step(
                    &mut ch,
                    OrderEvent::Cancel,
                    guard,
                    actor,
                    Text::from(why),
                    vec![],
                )?;
                ch.notify(
                    NotificationKind::Cancelled,
                    vec![("reason".into(), why.to_owned())],
                );
                self.commit_order(ch, idem)
            },
        )
    }

    /// Void unsettled holds and refund captured amounts of every payment of the order.
    fn reverse_payments(&self, ch: &mut Change) -> OmsResult<()> {
        let processor = self.processor()?;
        for i in 0..ch.order.payments.len() {
            if ch.order.payments[i].pending().is_some() {
                let processed = processor.resume(&ch.order.payments[i])?;
                self.count_gateway(&processed.attempts);
                ch.order.payments[i] = processed.payment;
                if let Outcome::Unresolved { reason } = processed.outcome {
                    return Err(OmsError::GatewayError { reason });
                }
            }
            let refundable = ch.order.payments[i].refundable()?;
            if !refundable.is_zero() {
                let processed = processor.refund(&ch.order.payments[i], refundable)?;
                self.count_gateway(&processed.attempts);
                ch.order.payments[i] = processed.payment;
                ch.event(
                    names::REFUND_ISSUED,
                    self.now(),
                    vec![("amount".into(), Text::display(&refundable.amount()))],
                );
                if processed.outcome != Outcome::Succeeded {
                    return Err(OmsError::GatewayError {
                        reason: format!(
                            "refund on cancellation did not complete: {:?}",
                            processed.outcome
                        ),
                    });
                }
            }
        }
        self.void_payments(ch)
    }

    /// Release every hold of the order that still holds stock.
    fn release_all(&self, order: &Order) -> OmsResult<()> {
        for id in &order.reservations {
            let r = self.deps.inventory.reservation(*id)?;
            if r.status.holds_stock() {
                self.deps.inventory.release(*id, self.now())?;
            }
        }
        Ok(())
    }

    /// Add a line before fulfillment starts (seed 003 `add_line_item`): the order is re-priced,
    /// the added units are reserved and, when the order was already paid, the difference is
    /// authorized. Any refusal (no stock, declined top-up) leaves the order as it was.
    pub fn add_line_item(
        &self,
        order_id: u64,
        line: &LineItemInput,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "add_line_item",
            &(order_id, line, actor),
            |idem| {
                let mut ch = self.load(order_id, actor)?;
                let now = self.now();
                let line_id = ch.order.add_line_item(line, now)?;
                let placed_at = ch.order.created_at;
                place_pricing(&mut ch.order, &self.config.pricing, placed_at)?;
                let holds_stock = ch.order.status != OrderStatus::Pending
                    && ch.order.status != OrderStatus::Validated;
                let mut new_hold = None;
                if holds_stock {
                    let qty = u64::try_from(line.quantity).unwrap_or(0);
                    let sku = ch.order.line(line_id)?.sku.clone();
                    let request = ReservationRequest::new(ch.order.id)
                        .with_ttl(self.config.reservation_ttl)
                        .spread(sku, qty, self.config.warehouses.clone());
                    let held = self.deps.inventory.reserve(&request, now)?;
                    if let crate::inventory::ReserveOutcome::PartiallyAvailable(r) = &held {
                        self.deps.inventory.decline_partial(r.id, now)?;
                    }
                    let held = held.into_reserved()?;
                    ch.order.reservations.push(held.id);
                    new_hold = Some(held.id);
                }
                let paid = ch.order.payments.iter().any(|p| !p.authorized().is_zero());
                if paid {
                    let method = ch.order.payments[0].method().to_owned();
                    let input = super::PaymentInput::new(&method);
                    let outcome = self.pay(&mut ch, &input);
                    let failed = match &outcome {
                        Ok(Paid::Authorized) => None,
                        Ok(Paid::Declined(r)) => {
                            Some(OmsError::PaymentDeclined { reason: r.clone() })
                        }
                        Ok(Paid::Unresolved) => Some(OmsError::GatewayError {
                            reason: "top-up authorization outcome unknown; retry the edit".into(),
                        }),
                        Err(e) => Some(e.clone()),
                    };
                    if let Some(e) = failed {
                        if let Some(id) = new_hold {
                            let _ = self.deps.inventory.release(id, now);
                        }
                        return Err(e);
                    }
                }
                if let Some(id) = new_hold {
                    let committed = ch.order.status != OrderStatus::PaymentPending;
                    if committed {
                        self.deps.inventory.commit(id, now)?;
                    }
                }
                ch.event(
                    names::ORDER_UPDATED,
                    now,
                    vec![("added_line".into(), Text::display(&line_id))],
                );
                self.commit_order(ch, idem)
            },
        )
    }

    /// Move an order by a lifecycle event (seed 003 `update_order_status`), for staff and
    /// system actors; guards are read from the order's shipments and refunds.
    pub fn update_order_status(
        &self,
        order_id: u64,
        event: OrderEvent,
        actor: &Actor,
        reason: &str,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "update_order_status",
            &(order_id, event, actor, reason),
            |idem| {
                Self::staff_only(actor, "change an order's status directly")?;
                let mut ch = self.load(order_id, actor)?;
                if event == OrderEvent::Cancel {
                    return Err(OmsError::invalid(
                        "event",
                        "use cancel_order, which also releases stock and payment",
                    ));
                }
                let guard = Self::guard(&ch.order);
                self.step(&mut ch, event, guard, actor, Text::from(reason), vec![])?;
                self.commit_order(ch, idem)
            },
        )
    }

    /// Reserve stock for an order that holds none yet (seed 003 `reserve_inventory`), moving
    /// it to `PaymentPending`.
    pub fn reserve_inventory(
        &self,
        order_id: u64,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "reserve_inventory",
            &(order_id, actor),
            |idem| {
                let mut ch = self.load(order_id, actor)?;
                let guard = Self::guard(&ch.order);
                next_status(ch.order.status, OrderEvent::ReserveInventory, &guard)?;
                self.reserve(&mut ch)?;
                let res = ch.order.reservations.clone();
                self.step(
                    &mut ch,
                    OrderEvent::ReserveInventory,
                    guard,
                    actor,
                    "stock reserved",
                    vec![],
                )
                .inspect_err(|_| {
                    for id in res {
                        let _ = self.deps.inventory.release(id, self.now());
                    }
                })?;
                self.commit_order(ch, idem)
            },
        )
    }

    /// Settle a payment whose gateway answer was unknown (a lookup first, never a blind
    /// resend) and carry the checkout on: confirm, hold for review, or fail and cancel.
    pub fn resume_payment(&self, order_id: u64, actor: &Actor) -> OmsResult<Order> {
        let mut ch = self.load(order_id, actor)?;
        let Some(i) = ch.order.payments.iter().position(|p| p.pending().is_some()) else {
            return Err(OmsError::NotFound {
                kind: "pending payment".into(),
                id: ch.order.number.to_string(),
            });
        };
        let processed = self.processor()?.resume(&ch.order.payments[i])?;
        self.count_gateway(&processed.attempts);
        ch.order.payments[i] = processed.payment;
        let guard = GuardContext::default();
        match processed.outcome {
            Outcome::Unresolved { .. } => self.commit_order(ch, None),
            Outcome::Declined { code, message } => {
                let reason = format!("order {}: {code}: {message}", ch.order.number);
                self.release_holds(&ch.order);
                self.step(
                    &mut ch,
                    OrderEvent::PaymentFailed,
                    guard,
                    &Actor::System,
                    &reason,
                    vec![],
                )?;
                self.step(
                    &mut ch,
                    OrderEvent::Cancel,
                    guard,
                    &Actor::System,
                    "payment failed",
                    vec![],
                )?;
                ch.notify(
                    NotificationKind::PaymentFailed,
                    vec![("reason".into(), reason.clone())],
                );
                self.commit(ch, None, |_| Err(OmsError::PaymentDeclined { reason }))
            }
            Outcome::Succeeded => {
                if self.config.flow == CheckoutFlow::PayThenReserve
                    && ch.order.reservations.is_empty()
                {
                    self.step(
                        &mut ch,
                        OrderEvent::PaymentAuthorized,
                        guard,
                        actor,
                        "payment authorized",
                        vec![],
                    )?;
                    self.reserve(&mut ch)?;
                    self.post_payment_fork(&mut ch)?;
                } else {
                    self.post_payment_fork(&mut ch)?;
                    self.step(
                        &mut ch,
                        OrderEvent::PaymentAuthorized,
                        guard,
                        actor,
                        "payment authorized",
                        vec![],
                    )?;
                }
                let verdict = ch.order.fraud.as_ref().map(|d| d.verdict);
                if verdict == Some(FraudVerdict::ManualReview) {
                    if let Some(d) = ch.order.fraud.as_deref().cloned() {
                        ch.order.review =
                            Some(crate::fraud::FraudReview::open(&ch.order.number, d)?);
                    }
                    self.step(
                        &mut ch,
                        OrderEvent::HoldForReview,
                        guard,
                        &Actor::System,
                        "held for manual review",
                        vec![],
                    )?;
                } else {
                    self.step(
                        &mut ch,
                        OrderEvent::Confirm,
                        guard,
                        &Actor::System,
                        "paid and cleared",
                        vec![],
                    )?;
                    ch.notify(NotificationKind::OrderConfirmed, vec![]);
                }
                self.commit_order(ch, None)
            }
        }
    }

    /// The order's fraud review, or `NotFound` when it has none.
    fn open_review(order: &Order) -> OmsResult<crate::fraud::FraudReview> {
        order.review.clone().ok_or_else(|| OmsError::NotFound {
            kind: "fraud review".into(),
            id: order.number.to_string(),
        })
    }

    /// Approve an order held for manual fraud review (staff only): it is confirmed.
    pub fn approve_review(
        &self,
        order_id: u64,
        actor: &Actor,
        reason: &str,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "approve_review",
            &(order_id, actor, reason),
            |idem| {
                Self::staff_only(actor, "approve a fraud review")?;
                let mut ch = self.load(order_id, actor)?;
                let now = self.now();
                let mut review = Self::open_review(&ch.order)?;
                review.approve(actor, reason, now)?;
                ch.order.review = Some(review);
                self.step(
                    &mut ch,
                    OrderEvent::ReviewApproved,
                    GuardContext::default(),
                    actor,
                    Text::from(reason),
                    vec![],
                )?;
                ch.notify(NotificationKind::OrderConfirmed, vec![]);
                self.commit_order(ch, idem)
            },
        )
    }

    /// Reject an order held for manual fraud review (staff only): the hold is voided, the
    /// stock released and the order cancelled.
    pub fn reject_review(
        &self,
        order_id: u64,
        actor: &Actor,
        reason: &str,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "reject_review",
            &(order_id, actor, reason),
            |idem| {
                Self::staff_only(actor, "reject a fraud review")?;
                let mut ch = self.load(order_id, actor)?;
                let now = self.now();
                let mut review = Self::open_review(&ch.order)?;
                review.reject(actor, reason, now)?;
                next_status(
                    ch.order.status,
                    OrderEvent::ReviewRejected,
                    &GuardContext::default(),
                )?;
                self.reverse_payments(&mut ch)?;
                self.release_all(&ch.order)?;
                ch.order.review = Some(review);
                self.step(
                    &mut ch,
                    OrderEvent::ReviewRejected,
                    GuardContext::default(),
                    actor,
                    Text::from(reason),
                    vec![],
                )?;
                ch.notify(
                    NotificationKind::Cancelled,
                    vec![("reason".into(), reason.to_owned())],
                );
                self.commit_order(ch, idem)
            },
        )
    }

    /// The seed's every-minute job: release every expired reservation and cancel the orders
    /// that were still waiting for payment (voiding any hold the gateway placed meanwhile).
    /// Orders waiting for a payment answer with no stock held (pay-then-reserve) are given up
    /// after the same window. Reported orders carry `reservation_id` 0 when no hold expired.
    pub fn expire_reservations(&self) -> OmsResult<Vec<ExpiredOrder>> {
        let now = self.now();
        let expired = self.deps.inventory.expire(now)?;
        let mut out = Vec::with_capacity(expired.len());
        for e in expired {
            let cancelled = self.cancel_unpaid(e.order_id, e.reservation_id)?;
            out.push(ExpiredOrder {
                order_id: e.order_id,
                reservation_id: e.reservation_id,
                cancelled,
            });
        }
        for id in self
            .deps
            .orders
            .order_ids_with_status(OrderStatus::PaymentPending)?
        {
            let order = self.deps.orders.order(id)?;
            let stale = order.updated_at.plus(self.config.reservation_ttl) <= now;
            let mut holds = false;
            for r in &order.reservations {
                holds |= self.deps.inventory.reservation(*r)?.status.holds_stock();
            }
            if stale && !holds {
                let cancelled = self.cancel_unpaid(id, 0)?;
                out.push(ExpiredOrder {
                    order_id: id,
                    reservation_id: 0,
                    cancelled,
                });
            }
        }
        Ok(out)
    }

    fn cancel_unpaid(&self, order_id: u64, reservation_id: u64) -> OmsResult<bool> {
        // An order that was never written (checkout failed after reserving) has nothing to do.
        let Ok(mut ch) = self.load(order_id, &Actor::System) else {
            return Ok(false);
        };
        let unpaid = matches!(
            ch.order.status,
            OrderStatus::Pending
                | OrderStatus::Validated
                | OrderStatus::PaymentPending
                | OrderStatus::PaymentFailed
        );
        let now = self.now();
        ch.event(
            names::RESERVATION_EXPIRED,
            now,
            vec![("reservation".into(), Text::display(&reservation_id))],
        );
        if !unpaid {
            self.commit(ch, None, |_| Ok(()))?;
            return Ok(false);
        }
        // A payment still in flight is settled first; whatever it became is reversed.
        let _ = self.reverse_payments(&mut ch);
        for p in &ch.order.payments {
            if p.pending().is_some()
                || matches!(
                    p.status(),
                    PaymentStatus::Authorized | PaymentStatus::AwaitingCapture
                )
            {
                // Could not settle or void now: keep the record, a later run finishes it.
                self.commit(ch, None, |_| Ok(()))?;
                return Ok(false);
            }
        }
        self.release_all(&ch.order)?;
        let reason = "reservation expired before payment";
        self.step(
            &mut ch,
            OrderEvent::Cancel,
            GuardContext::default(),
            &Actor::System,
            reason,
            vec![],
        )?;
        ch.notify(
            NotificationKind::Cancelled,
            vec![("reason".into(), reason.into())],
        );
        self.commit(ch, None, |_| Ok(()))?;
        Ok(true)
    }

    /// Resolve a reservation's status (for callers that track holds themselves).
    pub fn reservation_status(&self, reservation_id: u64) -> OmsResult<ReservationStatus> {
        Ok(self.deps.inventory.reservation(reservation_id)?.status)
    }
}
