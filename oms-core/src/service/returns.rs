//! Returns and refunds after delivery (seed 000 §5 with seed 001 §8): request, review,
//! approve (the refund is fixed then, from the stored per-line parts), receive and inspect,
//! restock (sellable or damaged) and refund exactly the approved amount.

use super::{Change, NotificationKind, OrderService};
use crate::error::{OmsError, OmsResult};
use crate::events::names;
use crate::inventory::{ReturnCondition, WarehouseId};
use crate::lifecycle::{Actor, OrderEvent, OrderStatus};
use crate::money::Money;
use crate::order::Order;
use crate::payment::Outcome;
use crate::returns::{ReturnBranch, ReturnCase, ReturnContext, StockCondition};
use crate::text::Text;

fn return_index(order: &Order, return_id: u64) -> OmsResult<usize> {
    order
        .returns
        .iter()
        .position(|r| r.id() == return_id)
        .ok_or_else(|| OmsError::NotFound {
            kind: "return".into(),
            id: return_id.to_string(),
        })
}

impl OrderService {
    /// The customer asks to return units (`(line_id, quantity)` pairs) of a delivered order.
    /// Eligibility — the return window, returnable SKUs, no more than delivered minus already
    /// returned — is checked now (`ReturnNotEligible` names the reason). Returns the order with
    /// the new return under review.
    pub fn request_return(
        &self,
        order_id: u64,
        lines: &[(u32, i64)],
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "request_return",
            &(order_id, lines, actor),
            |idem| {
                let mut ch = self.load(order_id, actor)?;
                let now = self.now();
                let mut case = {
                    let ctx = ReturnContext {
                        order: &ch.order,
                        shipments: &ch.order.shipments,
                        returns: &ch.order.returns,
                        policy: &self.config.returns,
                    };
                    ReturnCase::request(&ctx, lines, self.deps.ids.as_ref(), now)?
                };
                case.start_review(now)?;
                let id = case.id();
                ch.order.returns.push(case);
                ch.event(
                    names::RETURN_REQUESTED,
                    now,
                    vec![("return".into(), Text::display(&id))],
                );
                if ch.order.status == OrderStatus::Delivered {
                    let guard = Self::guard(&ch.order);
                    self.step(
                        &mut ch,
                        OrderEvent::RequestReturn,
                        guard,
                        actor,
                        "return requested",
                        vec![],
                    )?;
                }
                self.commit_order(ch, idem)
            },
        )
    }

    /// Approve a return (staff): the refund is fixed now from the stored per-line parts
    /// (`include_shipping` gives the shipping charge back once), and pickup, refund and
    /// inventory are set in motion.
    pub fn approve_return(
        &self,
        order_id: u64,
        return_id: u64,
        include_shipping: bool,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "approve_return",
            &(order_id, return_id, include_shipping, actor),
            |idem| {
                Self::staff_only(actor, "approve a return")?;
                let mut ch = self.load(order_id, actor)?;
                let now = self.now();
                let i = return_index(&ch.order, return_id)?;
                let mut case = ch.order.returns[i].clone();
                let total = {
                    let ctx = ReturnContext {
                        order: &ch.order,
                        shipments: &ch.order.shipments,
                        returns: &ch.order.returns,
                        policy: &self.config.returns,
                    };
                    case.approve(&ctx, &ch.order.refunded, include_shipping, now)?
                        .total
                };
                for b in [
                    ReturnBranch::ArrangePickup,
                    ReturnBranch::InitiateRefund,
                    ReturnBranch::UpdateInventory,
                ] {
                    case.complete_branch(b, now)?;
                }
                ch.order.returns[i] = case;
                ch.event(
                    names::RETURN_APPROVED,
                    now,
                    vec![
                        ("return".into(), Text::display(&return_id)),
                        ("refund".into(), Text::display(&total.amount())),
                    ],
                );
                if ch.order.status == OrderStatus::ReturnRequested {
                    let guard = Self::guard(&ch.order);
                    self.step(
                        &mut ch,
                        OrderEvent::ApproveReturn,
                        guard,
                        actor,
                        "return approved",
                        vec![],
                    )?;
                }
                self.commit_order(ch, idem)
            },
        )
    }

    /// Reject a return under review (staff): the customer keeps the order.
    pub fn reject_return(
        &self,
        order_id: u64,
        return_id: u64,
        reason: &str,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "reject_return",
            &(order_id, return_id, reason, actor),
            |idem| {
                Self::staff_only(actor, "reject a return")?;
                let mut ch = self.load(order_id, actor)?;
                let now = self.now();
                let i = return_index(&ch.order, return_id)?;
                ch.order.returns[i].reject(reason, now)?;
                ch.event(
                    names::RETURN_REJECTED,
                    now,
                    vec![
                        ("return".into(), Text::display(&return_id)),
                        ("reason".into(), Text::from(reason)),
                    ],
                );
                if ch.order.status == OrderStatus::ReturnRequested {
                    let guard = Self::guard(&ch.order);
                    self.step(
                        &mut ch,
                        OrderEvent::RejectReturn,
                        guard,
                        actor,
                        Text::from(reason),
                        vec![],
                    )?;
                    self.step(
                        &mut ch,
                        OrderEvent::KeepOrder,
                        guard,
                        actor,
                        "customer keeps the order",
                        vec![],
                    )?;
                }
                self.commit_order(ch, idem)
            },
        )
    }

    /// The returned parcel arrived and was inspected (staff). Sound items go back to sellable
    /// stock and the approved refund is paid out exactly; damaged items go to damaged stock and
    /// nothing is refunded.
    pub fn receive_return(
        &self,
        order_id: u64,
        return_id: u64,
        items_ok: bool,
        note: &str,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        self.idempotent(
            idempotency_key,
            "receive_return",
            &(order_id, return_id, items_ok, note, actor),
            |idem| {
                Self::staff_only(actor, "receive a return")?;
                let mut ch = self.load(order_id, actor)?;
                let now = self.now();
                let i = return_index(&ch.order, return_id)?;
                let mut case = ch.order.returns[i].clone();
                case.mark_shipped(now)?;
                case.receive(now)?;
                case.start_inspection(now)?;
                let stock = if items_ok {
                    case.accept_items(now)?
                } else {
                    let why = if note.trim().is_empty() {
                        "items damaged"
                    } else {
                        note
                    };
                    case.reject_items(why, now)?
                };
                for back in &stock {
                    let wh = self.shipped_from(&ch.order, &back.sku)?;
                    let condition = match back.condition {
                        StockCondition::Sellable => ReturnCondition::Sellable,
                        StockCondition::Damaged => ReturnCondition::Damaged,
                    };
                    self.deps.inventory.restock_return(
                        &back.sku,
                        &wh,
                        u64::from(back.quantity),
                        condition,
                    )?;
                }
                ch.event(
                    names::RETURN_RECEIVED,
                    now,
                    vec![
                        ("return".into(), Text::display(&return_id)),
                        ("items_ok".into(), Text::display(&items_ok)),
                    ],
                );
                let guard = Self::guard(&ch.order);
                if items_ok {
                    let mut refunded = ch.order.refunded.clone();
                    let preview = case.process_refund(&mut refunded, now)?;
                    self.pay_refund(&mut ch, preview.total)?;
                    ch.order.refunded = refunded;
                    case.complete(now)?;
                    ch.order.returns[i] = case;
                    ch.notify(
                        NotificationKind::Refunded,
                        vec![("amount".into(), preview.total.amount().to_string())],
                    );
                    let guard = Self::guard(&ch.order);
                    if ch.order.status == OrderStatus::ReturnApproved && guard.fully_refunded {
                        self.step(
                            &mut ch,
                            OrderEvent::Refund,
                            guard,
                            actor,
                            "return refunded",
                            vec![],
                        )?;
                    }
                } else {
                    case.complete(now)?;
                    ch.order.returns[i] = case;
                    if ch.order.status == OrderStatus::ReturnApproved {
                        self.step(
                            &mut ch,
                            OrderEvent::Complete,
                            guard,
                            actor,
                            "returned items damaged: no refund",
                            vec![],
                        )?;
                    }
                }
                self.commit_order(ch, idem)
            },
        )
    }

    /// The warehouse a SKU of the order shipped from (returns go back there).
    fn shipped_from(&self, order: &Order, sku: &crate::order::Sku) -> OmsResult<WarehouseId> {
        let wh = order
            .shipments
            .iter()
            .find(|s| s.lines().iter().any(|(s2, _)| s2 == sku))
            .and_then(|s| s.warehouse())
            .map(str::to_owned)
            .or_else(|| {
                self.config
                    .warehouses
                    .first()
                    .map(|w| w.as_str().to_owned())
            })
            .unwrap_or_default();
        WarehouseId::new(&wh)
    }

    /// Refund `amount` across the order's captured payments, oldest first.
    fn pay_refund(&self, ch: &mut Change, amount: Money) -> OmsResult<()> {
        let processor = self.processor()?;
        let mut left = amount;
        for i in 0..ch.order.payments.len() {
            if left.is_zero() {
                break;
            }
            let refundable = ch.order.payments[i].refundable()?;
            if refundable.is_zero() {
                continue;
            }
            let part = left.checked_min(&refundable)?;
            let processed = processor.refund(&ch.order.payments[i], part)?;
            self.count_gateway(&processed.attempts);
            ch.order.payments[i] = processed.payment;
            if processed.outcome != Outcome::Succeeded {
                return Err(OmsError::GatewayError {
                    reason: format!("refund did not complete: {:?}", processed.outcome),
                });
            }
            ch.event(
                names::REFUND_ISSUED,
                self.now(),
                vec![("amount".into(), Text::display(&part.amount()))],
            );
            left = left.checked_sub(&part)?;
        }
        if !left.is_zero() {
            return Err(OmsError::RefundExceedsCharge {
                reason: format!("{left} more than was captured"),
            });
        }
        Ok(())
    }
}
