//! Checkout: `create_order` — validate, price, screen, reserve and pay in the configured order —
//! plus `check_for_fraud`, `reserve_inventory` and the payment steps they share.

use serde::{Deserialize, Serialize};

use super::{Change, CheckoutFlow, NotificationKind, OrderService};
use crate::error::{OmsError, OmsResult};
use crate::events::names;
use crate::fraud::{assess, FraudDecision, FraudInput, FraudReview, FraudVerdict};
use crate::inventory::{ReservationRequest, ReserveOutcome};
use crate::lifecycle::{Actor, GuardContext, OrderEvent};
use crate::order::{Order, OrderDraft};
use crate::payment::{Outcome, Payment, PaymentStatus};
use crate::pricing::{charged_total, place_pricing};
use crate::text::Text;

/// How the customer pays, as the checkout received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentInput {
    /// The payment-method token (card fingerprint, wallet id …).
    pub method: String,
    /// The device fingerprint, when known (fraud screening uses it).
    #[serde(default)]
    pub device: Option<String>,
}

impl PaymentInput {
    /// A payment with `method` and no device fingerprint.
    pub fn new(method: &str) -> Self {
        PaymentInput {
            method: method.to_owned(),
            device: None,
        }
    }
}

/// How a payment attempt ended, for the caller's branch.
pub(super) enum Paid {
    /// Authorized (or nothing to pay).
    Authorized,
    /// Declined: the reason for the error.
    Declined(String),
    /// The gateway's answer is not known yet; the payment keeps its pending call.
    Unresolved,
}

impl OrderService {
    /// Place an order (seed 003 `create_order`): validate the draft, price it, screen it for
    /// fraud (before any stock is committed), then reserve stock and authorize payment in the
    /// order the checkout flow says. Returns the order — `Confirmed`, `OnHold` for manual
    /// review, or `PaymentPending` when the gateway's answer is not known yet.
    ///
    /// Refusals are typed errors: `FraudRejected` and `PaymentDeclined` (the order is kept,
    /// cancelled, with its reason and audit trail), `InsufficientStock` (reserve-then-pay: no
    /// order is kept and nothing is held; pay-then-reserve: the hold is voided and the order
    /// kept cancelled), and every validation error of the draft.
    pub fn create_order(
        &self,
        draft: &OrderDraft,
        payment: &PaymentInput,
        actor: &Actor,
        idempotency_key: Option<&str>,
    ) -> OmsResult<Order> {
        let request = (draft, payment, actor);
        self.idempotent(idempotency_key, "create_order", &request, |idem| {
            self.checkout(draft, payment, actor, idem)
        })
    }

    fn checkout(
        &self,
        draft: &OrderDraft,
        payment: &PaymentInput,
        actor: &Actor,
        idem: Option<(&str, &str)>,
    ) -> OmsResult<Order> {
        if let Actor::Customer(id) = actor {
            if *id != draft.customer.id {
                return Err(OmsError::Forbidden {
                    reason: "a customer can only order for themselves".into(),
                });
            }
        }
        if payment.method.trim().is_empty() {
            return Err(OmsError::MissingField {
                field: "payment.method".into(),
            });
        }
        let now = self.now();
        let mut order = Order::create(
            draft,
            actor,
            self.deps.clock.as_ref(),
            self.deps.ids.as_ref(),
        )?;
        let price = place_pricing(&mut order, &self.config.pricing, now)?;
        let mut ch = Change::new(order, None);
        ch.event(
            names::ORDER_CREATED,
            now,
            vec![
                ("number".into(), ch.order.number.clone()),
                ("total".into(), Text::display(&price.total.amount())),
                ("currency".into(), Text::from(price.currency.code())),
            ],
        );
        let guard = GuardContext::default();
        self.step(
            &mut ch,
            OrderEvent::Validate,
            guard,
            actor,
            "order validated",
            vec![],
        )?;

        // Fraud first: nothing is held or charged for an order that is going to be refused.
        let decision = std::sync::Arc::new(self.screen(&ch.order, payment)?);
        ch.order.fraud = Some(std::sync::Arc::clone(&decision));
        ch.event(
            names::ORDER_SCREENED,
            now,
            vec![
                (
                    "verdict".into(),
                    Text::from(format!("{:?}", decision.verdict).to_lowercase()),
                ),
                ("score".into(), Text::display(&decision.score)),
            ],
        );
        if decision.verdict == FraudVerdict::Reject {
            let reason = format!("rejected by fraud screening (score {})", decision.score);
            self.step(
                &mut ch,
                OrderEvent::Cancel,
                guard,
                &Actor::System,
                &reason,
                vec![],
            )?;
            ch.notify(NotificationKind::Cancelled, vec![("reason".into(), reason)]);
            let score = decision.score.to_string();
            return self.commit(ch, idem, |_| Err(OmsError::FraudRejected { score }));
        }

        match self.config.flow {
            CheckoutFlow::ReserveThenPay => {
                // Seed 001 §3: out of stock is an error and no order is kept.
                self.reserve(&mut ch)?;
                self.step(
                    &mut ch,
                    OrderEvent::ReserveInventory,
                    guard,
                    actor,
                    "stock reserved",
                    vec![],
                )?;
                match self.pay(&mut ch, payment) {
                    Ok(Paid::Authorized) => {}
                    Ok(Paid::Declined(reason)) => return self.payment_failed(ch, idem, &reason),
                    Ok(Paid::Unresolved) => return self.commit_order(ch, idem),
                    Err(e) => {
                        self.release_holds(&ch.order);
                        return Err(e);
                    }
                }
                if let Err(e) = self.confirm_stock(&mut ch, actor) {
                    self.compensate(&ch.order);
                    return Err(e);
                }
            }
            CheckoutFlow::PayThenReserve => {
                self.step(
                    &mut ch,
                    OrderEvent::RequestPayment,
                    guard,
                    actor,
                    "payment requested",
                    vec![],
                )?;
                match self.pay(&mut ch, payment)? {
                    Paid::Authorized => {}
                    Paid::Declined(reason) => return self.payment_failed(ch, idem, &reason),
                    Paid::Unresolved => return self.commit_order(ch, idem),
                }
                self.step(
                    &mut ch,
                    OrderEvent::PaymentAuthorized,
                    guard,
                    actor,
                    "payment authorized",
                    vec![],
                )?;
                match self
                    .reserve(&mut ch)
                    .and_then(|()| self.post_payment_fork(&mut ch))
                {
                    Ok(()) => {}
                    Err(e @ OmsError::InsufficientStock { .. }) => {
                        self.void_payments(&mut ch)?;
                        let reason = format!("out of stock after payment: {e}");
                        self.step(
                            &mut ch,
                            OrderEvent::Cancel,
                            guard,
                            &Actor::System,
                            &reason,
                            vec![],
                        )?;
                        ch.notify(NotificationKind::Cancelled, vec![("reason".into(), reason)]);
                        return self.commit(ch, idem, |_| Err(e));
                    }
                    Err(e) => {
                        self.compensate(&ch.order);
                        return Err(e);
                    }
                }
            }
        }
        if let Err(e) = self.clear_for_fulfillment(&mut ch, &decision) {
            self.compensate(&ch.order);
            return Err(e);
        }
        let snapshot = ch.order.clone();
        self.commit_order(ch, idem).inspect_err(|_| {
            // The order was never written: give back what checkout took outside it.
            self.compensate(&snapshot);
        })
    }

    /// Screen `order` (seed 004 stage 3).
    fn screen(&self, order: &Order, payment: &PaymentInput) -> OmsResult<FraudDecision> {
        let value = charged_total(order)?;
        let input = FraudInput::for_order(
            order,
            value,
            &payment.method,
            payment.device.as_deref(),
            self.now(),
        );
        assess(&input, self.deps.fraud.as_ref(), &self.config.fraud)
    }

    /// Hold every line's units where the optimal sourcing plan takes them (when a sourcing
    /// network is configured and the address is geocoded), else spread over the warehouses in
    /// priority order.
    pub(super) fn reserve(&self, ch: &mut Change) -> OmsResult<()> {
        let mut request =
            ReservationRequest::new(ch.order.id).with_ttl(self.config.reservation_ttl);
        let planned = self.sourcing_plan(&ch.order)?;
        if let Some(plan) = &planned {
            for parcel in &plan.parcels {
                let wh = crate::inventory::WarehouseId::new(&parcel.warehouse)?;
                for l in &parcel.lines {
                    request = request.item(l.sku.clone(), wh.clone(), u64::from(l.quantity));
                }
            }
            ch.event(
                names::ORDER_SOURCED,
                self.now(),
                vec![
                    ("strategy".into(), "optimal".into()),
                    ("cost".into(), Text::display(&plan.total_cost)),
                ],
            );
        } else {
            for line in &ch.order.lines {
                request = request.spread(
                    line.sku.clone(),
                    u64::from(line.quantity),
                    self.config.warehouses.clone(),
                );
            }
        }
        let outcome = self.deps.inventory.reserve(&request, self.now())?;
        if let ReserveOutcome::PartiallyAvailable(r) = &outcome {
            // Checkout takes all or nothing: do not leave the offer open.
            self.deps.inventory.decline_partial(r.id, self.now())?;
        }
        let held = outcome.into_reserved()?;
        ch.order.reservations.push(held.id);
        let items = held
            .items
            .iter()
            .map(|i| {
                (
                    Text::display(&format_args!("{}@{}", i.sku, i.warehouse)),
                    Text::display(&i.quantity),
                )
            })
            .collect();
        ch.event(names::ORDER_RESERVED, self.now(), items);
        Ok(())
    }

    /// The optimal plan for `order` against current availability, or `None` when sourcing is
    /// not configured, the address has no location, or no full plan exists (the priority
    /// spread then decides, and reports any shortage).
    fn sourcing_plan(&self, order: &Order) -> OmsResult<Option<crate::allocation::Plan>> {
        use crate::allocation::{
            allocate, AllocationOptions, AllocationOrder, AllocationProblem, OrderLine, Sla,
            Strategy, Warehouse,
        };
        let (Some(net), Some(location)) = (&self.config.sourcing, order.shipping_address.location)
        else {
            return Ok(None);
        };
        let mut warehouses = Vec::with_capacity(net.sites.len());
        for site in &net.sites {
            let mut stock = std::collections::BTreeMap::new();
            for l in &order.lines {
                let available = self
                    .deps
                    .inventory
                    .stock(&l.sku, &site.warehouse)
                    .map_or(0, |s| s.available());
                stock.insert(l.sku.clone(), u32::try_from(available).unwrap_or(u32::MAX));
            }
            warehouses.push(Warehouse {
                id: site.warehouse.as_str().to_owned(),
                location: site.location,
                stock,
                item_cost: site.item_cost.clone(),
                parcel_cost: site.parcel_cost,
                parcel_capacity: None,
            });
        }
        let problem = AllocationProblem {
            warehouses,
            drivers: vec![],
            orders: vec![AllocationOrder {
                id: order.number.to_string(),
                customer_location: location,
                sla: Sla::Standard,
                lines: order
                    .lines
                    .iter()
                    .map(|l| OrderLine {
                        sku: l.sku.clone(),
                        quantity: l.quantity,
                        capacity: l.capacity_units,
                    })
                    .collect(),
            }],
            shipping: net.shipping.clone(),
        };
        let options = AllocationOptions {
            now: self.now(),
            explain_alternatives: false,
            ..AllocationOptions::default()
        };
        match allocate(&problem, Strategy::Optimal, &options) {
            Ok(plan) if plan.unfilled.is_empty() => Ok(Some(plan)),
            Ok(_) | Err(OmsError::Unfulfillable { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Authorize the order's charge (or what an edit added on top of earlier payments).
    pub(super) fn pay(&self, ch: &mut Change, input: &PaymentInput) -> OmsResult<Paid> {
        let total = charged_total(&ch.order)?;
        let covered = ch
            .order
            .payments
            .iter()
            .filter(|p| {
                !matches!(
                    p.status(),
                    PaymentStatus::Voided
                        | PaymentStatus::Failed
                        | PaymentStatus::Declined
                        | PaymentStatus::Expired
                )
            })
            .try_fold(crate::money::Money::zero(ch.order.currency), |acc, p| {
                acc.checked_add(&p.amount())
            })?;
        let due = total.checked_sub(&covered)?;
        if due.is_zero() || due.is_negative() {
            return Ok(Paid::Authorized);
        }
        let id = format!("PAY-{}", self.deps.ids.next_id("payment"));
        let payment = Payment::new(&id, &ch.order.number, &input.method, due)?
            .with_hold_validity(self.config.hold_validity)?;
        let processed = self.processor()?.authorize(&payment)?;
        self.count_gateway(&processed.attempts);
        ch.order.payments.push(processed.payment);
        let now = self.now();
        Ok(match processed.outcome {
            Outcome::Succeeded => {
                ch.event(
                    names::PAYMENT_AUTHORIZED,
                    now,
                    vec![
                        ("payment".into(), Text::from(id)),
                        ("amount".into(), Text::display(&due.amount())),
                    ],
                );
                Paid::Authorized
            }
            Outcome::Declined { code, message } => {
                let reason = format!("order {}: {code}: {message}", ch.order.number);
                ch.event(
                    names::PAYMENT_FAILED,
                    now,
                    vec![
                        ("payment".into(), Text::from(id)),
                        ("reason".into(), Text::from(&reason)),
                    ],
                );
                Paid::Declined(reason)
            }
            Outcome::Unresolved { reason } => {
                ch.event(
                    names::PAYMENT_FAILED,
                    now,
                    vec![
                        ("payment".into(), Text::from(id)),
                        ("unresolved".into(), Text::from(reason)),
                    ],
                );
                Paid::Unresolved
            }
        })
    }

    /// Declined: release the stock, fail and cancel the order, tell the customer; the order is
    /// kept and the result is `PaymentDeclined`.
    fn payment_failed(
        &self,
        mut ch: Change,
        idem: Option<(&str, &str)>,
        reason: &str,
    ) -> OmsResult<Order> {
        self.release_holds(&ch.order);
        let guard = GuardContext::default();
        self.step(
            &mut ch,
            OrderEvent::PaymentFailed,
            guard,
            &Actor::System,
            Text::from(reason),
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
            vec![("reason".into(), reason.to_owned())],
        );
        let reason = reason.to_owned();
        self.commit(ch, idem, |_| Err(OmsError::PaymentDeclined { reason }))
    }

    /// Reserve-then-pay after a successful authorization: the payment confirms the
    /// reservation (seed 001 §4: "confirm reservation, deduct stock").
    fn confirm_stock(&self, ch: &mut Change, actor: &Actor) -> OmsResult<()> {
        self.post_payment_fork(ch)?;
        self.step(
            ch,
            OrderEvent::PaymentAuthorized,
            GuardContext::default(),
            actor,
            "payment authorized",
            vec![],
        )
    }

    /// Seed 000 §1's post-payment fork: commit the stock (inventory branch) and prepare the
    /// parcels — one per warehouse, each with a pick list and a box that fits (fulfillment
    /// branch). The join needs both; if either fails, the one that completed is compensated
    /// (committed stock is released) and the error is returned.
    pub(super) fn post_payment_fork(&self, ch: &mut Change) -> OmsResult<()> {
        let inventory = self.commit_holds(&ch.order);
        let prepared = self.prepare_fulfillment(&ch.order);
        match (inventory, prepared) {
            (Ok(()), Ok(parcels)) => {
                ch.event(names::FULFILLMENT_PREPARED, self.now(), parcels);
                Ok(())
            }
            (Ok(()), Err(e)) => {
                self.release_holds(&ch.order);
                Err(e)
            }
            (Err(e), _) => Err(e),
        }
    }

    /// The fulfillment branch of the fork: group the held units by warehouse and check each
    /// parcel can be picked (slotting) and packed (a box fits). Pure: nothing is written.
    fn prepare_fulfillment(&self, order: &Order) -> OmsResult<Vec<(Text, Text)>> {
        let fc = &self.config.fulfillment;
        let per_wh = self.held_by_warehouse(order)?;
        let items = fc.item_specs(order);
        let mut parcels = Vec::with_capacity(per_wh.len());
        for (wh, lines) in per_wh {
            let lines: Vec<(crate::order::Sku, u32)> = lines.into_iter().collect();
            let contents = crate::fulfillment::pack::contents(&lines, &items)?;
            let chosen = crate::fulfillment::pack::choose_box(&fc.boxes, contents)?;
            parcels.push((Text::from(wh), Text::from(&chosen.id)));
        }
        Ok(parcels)
    }

    /// Commit every open hold of the order (reserved → allocated).
    pub(super) fn commit_holds(&self, order: &Order) -> OmsResult<()> {
        for id in &order.reservations {
            let r = self.deps.inventory.reservation(*id)?;
            if r.status == crate::inventory::ReservationStatus::Reserved {
                self.deps.inventory.commit(*id, self.now())?;
            }
        }
        Ok(())
    }

    /// Confirm, or hold for manual review, after payment and stock are settled.
    fn clear_for_fulfillment(&self, ch: &mut Change, decision: &FraudDecision) -> OmsResult<()> {
        let guard = GuardContext::default();
        if decision.verdict == FraudVerdict::ManualReview {
            ch.order.review = Some(FraudReview::open(&ch.order.number, decision.clone())?);
            let reason = format!("held for manual review (score {})", decision.score);
            return self.step(
                ch,
                OrderEvent::HoldForReview,
                guard,
                &Actor::System,
                &reason,
                vec![],
            );
        }
        self.step(
            ch,
            OrderEvent::Confirm,
            guard,
            &Actor::System,
            "paid and cleared",
            vec![],
        )?;
        ch.notify(NotificationKind::OrderConfirmed, vec![]);
        Ok(())
    }

    /// Release every hold of `order`, best effort (used while unwinding a failed step; a hold
    /// that cannot be released now still expires by itself).
    pub(super) fn release_holds(&self, order: &Order) {
        for id in &order.reservations {
            let _ = self.deps.inventory.release(*id, self.now());
        }
    }

    /// Undo what a failed checkout did outside the order: stock and payment holds.
    fn compensate(&self, order: &Order) {
        self.release_holds(order);
        let mut ch = Change::new(order.clone(), None);
        let _ = self.void_payments(&mut ch);
    }

    /// Void every payment hold that has captured nothing yet.
    pub(super) fn void_payments(&self, ch: &mut Change) -> OmsResult<()> {
        let processor = self.processor()?;
        for i in 0..ch.order.payments.len() {
            let p = &ch.order.payments[i];
            if matches!(
                p.status(),
                PaymentStatus::Authorized | PaymentStatus::AwaitingCapture
            ) && p.captured().is_zero()
            {
                let processed = processor.void(p)?;
                self.count_gateway(&processed.attempts);
                let id = p.id().to_owned();
                ch.order.payments[i] = processed.payment;
                ch.event(
                    names::PAYMENT_VOIDED,
                    self.now(),
                    vec![("payment".into(), Text::from(id))],
                );
            }
        }
        Ok(())
    }

    /// Screen an order again with today's signals (seed 003 `check_for_fraud`); changes
    /// nothing.
    pub fn check_for_fraud(
        &self,
        order_id: u64,
        payment: &PaymentInput,
        actor: &Actor,
    ) -> OmsResult<FraudDecision> {
        Self::staff_only(actor, "run fraud screening")?;
        let order = self.deps.orders.order(order_id)?;
        self.screen(&order, payment)
    }
}
