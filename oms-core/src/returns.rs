//! Returns: the return machine (seed 000 §5 merged with seed 001 §8), eligibility, and where
//! returned stock goes.
//!
//! Requested → UnderReview → Approved / Rejected. Approval forks three branches (arrange
//! pickup, initiate refund, update inventory) that join when the customer ships the parcel
//! back; then ReturnShipped → Received → QualityCheck → RefundApproved (items OK, sellable
//! stock) or RefundRejected (damaged stock, no refund) → RefundProcessed → Completed. A rejected
//! return ends there: the customer keeps the order, which stays Delivered.
//!
//! The refund is fixed when the return is approved: the pricing module's
//! [`refund_preview`] for the returned lines (from the per-line parts stored at placement) is
//! stored on the return, and processing the refund pays and records exactly that preview,
//! never a recomputed one.
//!
//! ## Seed names
//!
//! | seed | state | here |
//! | --- | --- | --- |
//! | 000 §5 | `Return_Initiated` / 001 §8 `ReturnRequested` | [`ReturnStatus::Requested`] |
//! | 000 §5 | `Validate_Return` / 001 §8 `UnderReview` | [`ReturnStatus::UnderReview`] |
//! | 000 §5 | `Approved` / 001 §8 `ReturnApproved` | [`ReturnStatus::Approved`] with its fork |
//! | 000 §5 | `ArrangePickup`, `InitiateRefund`, `UpdateInventoryOnReturn` | the [`ReturnBranch`]es |
//! | 000 §5 | `Rejected`, `NotifyCustomer` / 001 §8 `ReturnRejected` | [`ReturnStatus::Rejected`] |
//! | 001 §8 | `ReturnShipped`, `ReturnReceived`, `QualityCheck` | `ReturnShipped`, `Received`, `QualityCheck` |
//! | 001 §8 | `RefundApproved`, `RefundRejected`, `RefundProcessed` | the same names |
//! | 000 §5 | `Return_Completed` / 001 §8 final state | [`ReturnStatus::Completed`] |

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::fulfillment::machine::{Edge, ForkJoin, Label, MachineState, Spec};
use crate::fulfillment::{FulfillmentStatus, Shipment};
use crate::lifecycle::OrderStatus;
use crate::order::{validate_quantity, Order, Sku};
use crate::pricing::{refund_preview, RefundPreview, RefundRequest, Refunded};
use crate::time::{Duration, IdGenerator, Timestamp};

/// Where a return is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnStatus {
    /// The customer asked to return items.
    Requested,
    /// Staff review eligibility.
    UnderReview,
    /// Approved: pickup, refund and inventory branches run in parallel.
    Approved,
    /// Refused; the customer keeps the order.
    Rejected,
    /// The customer shipped the items back.
    ReturnShipped,
    /// The warehouse received them.
    Received,
    /// The items are inspected.
    QualityCheck,
    /// Items OK: refund approved, stock back to sellable.
    RefundApproved,
    /// Items damaged: no refund, stock to damaged.
    RefundRejected,
    /// The refund was paid.
    RefundProcessed,
    /// Nothing more will happen.
    Completed,
}

impl ReturnStatus {
    /// Every status, in flow order.
    pub const ALL: [ReturnStatus; 11] = [
        ReturnStatus::Requested,
        ReturnStatus::UnderReview,
        ReturnStatus::Approved,
        ReturnStatus::Rejected,
        ReturnStatus::ReturnShipped,
        ReturnStatus::Received,
        ReturnStatus::QualityCheck,
        ReturnStatus::RefundApproved,
        ReturnStatus::RefundRejected,
        ReturnStatus::RefundProcessed,
        ReturnStatus::Completed,
    ];
}

impl Label for ReturnStatus {
    fn label(self) -> &'static str {
        match self {
            ReturnStatus::Requested => "requested",
            ReturnStatus::UnderReview => "under_review",
            ReturnStatus::Approved => "approved",
            ReturnStatus::Rejected => "rejected",
            ReturnStatus::ReturnShipped => "return_shipped",
            ReturnStatus::Received => "received",
            ReturnStatus::QualityCheck => "quality_check",
            ReturnStatus::RefundApproved => "refund_approved",
            ReturnStatus::RefundRejected => "refund_rejected",
            ReturnStatus::RefundProcessed => "refund_processed",
            ReturnStatus::Completed => "completed",
        }
    }
}

/// What moves a return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnEvent {
    /// Staff start reviewing (seed 000 `check_eligibility`).
    Review,
    /// Eligible and approved (seed 000 `within_policy`).
    Approve,
    /// Refused (seed 000 `not_eligible`).
    Reject,
    /// Join: every branch done and the customer ships the items back.
    ShipBack,
    /// The warehouse receives the parcel.
    Receive,
    /// Inspection starts.
    Inspect,
    /// Items OK.
    ItemsOk,
    /// Items damaged.
    ItemsDamaged,
    /// The refund is paid.
    ProcessRefund,
    /// Close the return.
    Complete,
}

impl ReturnEvent {
    /// Every event.
    pub const ALL: [ReturnEvent; 10] = [
        ReturnEvent::Review,
        ReturnEvent::Approve,
        ReturnEvent::Reject,
        ReturnEvent::ShipBack,
        ReturnEvent::Receive,
        ReturnEvent::Inspect,
        ReturnEvent::ItemsOk,
        ReturnEvent::ItemsDamaged,
        ReturnEvent::ProcessRefund,
        ReturnEvent::Complete,
    ];
}

impl Label for ReturnEvent {
    fn label(self) -> &'static str {
        match self {
            ReturnEvent::Review => "review",
            ReturnEvent::Approve => "approve",
            ReturnEvent::Reject => "reject",
            ReturnEvent::ShipBack => "ship_back",
            ReturnEvent::Receive => "receive",
            ReturnEvent::Inspect => "inspect",
            ReturnEvent::ItemsOk => "items_ok",
            ReturnEvent::ItemsDamaged => "items_damaged",
            ReturnEvent::ProcessRefund => "process_refund",
            ReturnEvent::Complete => "complete",
        }
    }
}

/// The parallel branches after approval (seed 000 §5 `Fork_ReturnProcessing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnBranch {
    /// A carrier pickup (or drop-off label) is arranged.
    ArrangePickup,
    /// The refund is initiated with the payment provider (paid after inspection).
    InitiateRefund,
    /// The inventory expects the incoming units.
    UpdateInventory,
}

impl ReturnBranch {
    /// Every branch.
    pub const ALL: [ReturnBranch; 3] = [
        ReturnBranch::ArrangePickup,
        ReturnBranch::InitiateRefund,
        ReturnBranch::UpdateInventory,
    ];
}

impl Label for ReturnBranch {
    fn label(self) -> &'static str {
        match self {
            ReturnBranch::ArrangePickup => "arrange_pickup",
            ReturnBranch::InitiateRefund => "initiate_refund",
            ReturnBranch::UpdateInventory => "update_inventory",
        }
    }
}

use ReturnEvent as Ev;
use ReturnStatus as St;

const fn edge(from: St, event: Ev, to: St) -> Edge<St, Ev> {
    Edge { from, event, to }
}

/// The return transition table: every drawn edge, and only those.
pub const RETURN_EDGES: &[Edge<ReturnStatus, ReturnEvent>] = &[
    edge(St::Requested, Ev::Review, St::UnderReview),
    edge(St::UnderReview, Ev::Approve, St::Approved),
    edge(St::UnderReview, Ev::Reject, St::Rejected),
    edge(St::Approved, Ev::ShipBack, St::ReturnShipped),
    edge(St::ReturnShipped, Ev::Receive, St::Received),
    edge(St::Received, Ev::Inspect, St::QualityCheck),
    edge(St::QualityCheck, Ev::ItemsOk, St::RefundApproved),
    edge(St::QualityCheck, Ev::ItemsDamaged, St::RefundRejected),
    edge(St::RefundApproved, Ev::ProcessRefund, St::RefundProcessed),
    edge(St::RefundProcessed, Ev::Complete, St::Completed),
    edge(St::RefundRejected, Ev::Complete, St::Completed),
];

/// The return machine: table, post-approval fork and terminal states.
pub const RETURN: Spec<ReturnStatus, ReturnEvent, ReturnBranch> = Spec {
    name: "return",
    initial: St::Requested,
    edges: RETURN_EDGES,
    fork: ForkJoin {
        at: St::Approved,
        fork_id: "fork_return_processing",
        join_id: "join_return",
        branches: &ReturnBranch::ALL,
        join: Ev::ShipBack,
    },
    terminals: &[St::Completed, St::Rejected],
};

/// The return machine as a Mermaid `stateDiagram-v2`, generated from [`RETURN`].
pub fn return_mermaid() -> String {
    RETURN.mermaid()
}

/// What may be returned, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnPolicy {
    /// How long after delivery a return may be requested.
    pub window: Duration,
    /// SKUs that cannot be returned (hygiene items, final sale …).
    pub non_returnable: BTreeSet<Sku>,
}

impl Default for ReturnPolicy {
    /// 30 days, every SKU returnable.
    fn default() -> Self {
        ReturnPolicy {
            window: Duration::days(30),
            non_returnable: BTreeSet::new(),
        }
    }
}

/// Units delivered per SKU for one order, with the latest delivery time of a parcel that
/// carried the SKU (the return window runs from it).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeliveredUnits {
    per_sku: BTreeMap<Sku, (u32, Timestamp)>,
}

impl DeliveredUnits {
    /// Read the delivered shipments of order `order_id` (others are ignored).
    pub fn from_shipments(order_id: u64, shipments: &[Shipment]) -> DeliveredUnits {
        let mut per_sku: BTreeMap<Sku, (u32, Timestamp)> = BTreeMap::new();
        for s in shipments {
            if s.order_id() != order_id || s.status() != FulfillmentStatus::Delivered {
                continue;
            }
            let at = s
                .entered_at(FulfillmentStatus::Delivered)
                .unwrap_or_else(|| s.updated_at());
            for (sku, qty) in s.lines() {
                let e = per_sku.entry(sku.clone()).or_insert((0, at));
                e.0 = e.0.saturating_add(*qty);
                e.1 = e.1.max(at);
            }
        }
        DeliveredUnits { per_sku }
    }

    /// Units of `sku` delivered.
    pub fn units(&self, sku: &Sku) -> u32 {
        self.per_sku.get(sku).map_or(0, |e| e.0)
    }

    /// The latest delivery of a parcel carrying `sku`.
    pub fn delivered_at(&self, sku: &Sku) -> Option<Timestamp> {
        self.per_sku.get(sku).map(|e| e.1)
    }
}

/// Units per SKU already claimed by `returns` (every return not rejected at review), except
/// the return with id `excluding`.
pub fn returned_units(returns: &[ReturnCase], excluding: Option<u64>) -> BTreeMap<Sku, u32> {
    let mut out: BTreeMap<Sku, u32> = BTreeMap::new();
    for r in returns {
        if Some(r.id) == excluding || r.status() == ReturnStatus::Rejected {
            continue;
        }
        for l in &r.lines {
            let e = out.entry(l.sku.clone()).or_insert(0);
            *e = e.saturating_add(l.quantity);
        }
    }
    out
}

/// One returned line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    /// The order line.
    pub line_id: u32,
    /// Its SKU.
    pub sku: Sku,
    /// Units returned.
    pub quantity: u32,
}

/// Validate a return request against the order, what was delivered, what is already being
/// returned and the policy, at time `at`. Malformed input gets its own error
/// ([`OmsError::MissingField`], [`OmsError::InvalidQuantity`], [`OmsError::LineNotFound`]);
/// a well-formed request outside the policy gets [`OmsError::ReturnNotEligible`] with the
/// reason. Repeated line ids are merged.
pub fn check_eligibility(
    order: &Order,
    request: &[(u32, i64)],
    delivered: &DeliveredUnits,
    returned: &BTreeMap<Sku, u32>,
    policy: &ReturnPolicy,
    at: Timestamp,
) -> OmsResult<Vec<ReturnLine>> {
    if request.is_empty() {
        return Err(OmsError::MissingField {
            field: "lines".into(),
        });
    }
    let mut per_line: BTreeMap<u32, i64> = BTreeMap::new();
    for (line_id, qty) in request {
        validate_quantity(*qty)?;
        order.line(*line_id)?;
        let e = per_line.entry(*line_id).or_insert(0);
        *e = e.saturating_add(*qty);
    }
    let mut lines = Vec::with_capacity(per_line.len());
    let mut per_sku: BTreeMap<&Sku, u32> = BTreeMap::new();
    for (line_id, qty) in per_line {
        let line = order.line(line_id)?;
        let quantity = validate_quantity(qty)?;
        let e = per_sku.entry(&line.sku).or_insert(0);
        *e = e.saturating_add(quantity);
        lines.push(ReturnLine {
            line_id,
            sku: line.sku.clone(),
            quantity,
        });
    }
    let refuse = |reason: String| Err(OmsError::ReturnNotEligible { reason });
    for (sku, wanted) in per_sku {
        if policy.non_returnable.contains(sku) {
            return refuse(format!("{sku} is not returnable"));
        }
        let Some(delivered_at) = delivered.delivered_at(sku) else {
            return refuse(format!("{sku} has not been delivered"));
        };
        let closes = delivered_at.plus(policy.window);
        if at > closes {
            return refuse(format!(
                "the return window for {sku} closed at {closes} ({} days after delivery)",
                policy.window.millis() / 86_400_000
            ));
        }
        let units = delivered.units(sku);
        let already = returned.get(sku).copied().unwrap_or(0);
        let left = units.saturating_sub(already);
        if wanted > left {
            return refuse(format!(
                "{sku}: {wanted} units requested, {left} returnable ({units} delivered, {already} already returned)"
            ));
        }
    }
    Ok(lines)
}

/// Condition of returned stock, deciding which inventory bucket it goes back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockCondition {
    /// Back to sellable stock.
    Sellable,
    /// To damaged stock.
    Damaged,
}

/// Units the inventory must take back after inspection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReturn {
    /// The SKU.
    pub sku: Sku,
    /// Units.
    pub quantity: u32,
    /// Which bucket.
    pub condition: StockCondition,
}

/// One accepted move of a return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnChange {
    /// Status before.
    pub from: ReturnStatus,
    /// Status after.
    pub to: ReturnStatus,
    /// The event.
    pub event: ReturnEvent,
    /// When.
    pub at: Timestamp,
}

/// What a return is judged against: the order, its shipments, its other returns and the
/// policy.
#[derive(Debug, Clone, Copy)]
pub struct ReturnContext<'a> {
    /// The order (priced: the refund preview works from its stored line charges).
    pub order: &'a Order,
    /// The order's shipments; only delivered ones count.
    pub shipments: &'a [Shipment],
    /// The order's returns so far (the one being decided is skipped if listed).
    pub returns: &'a [ReturnCase],
    /// The return policy.
    pub policy: &'a ReturnPolicy,
}

/// A return of some delivered units of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnCase {
    id: u64,
    order_id: u64,
    lines: Vec<ReturnLine>,
    state: MachineState<ReturnStatus, ReturnBranch>,
    refund: Option<RefundPreview>,
    reason: Option<String>,
    requested_at: Timestamp,
    updated_at: Timestamp,
    history: Vec<ReturnChange>,
}

impl ReturnCase {
    /// Open a return of `lines` (`(line_id, units)`) of `ctx.order`, in
    /// [`ReturnStatus::Requested`]. Eligibility is checked now ([`check_eligibility`]) against
    /// the delivered shipments and the other returns of the context; the id comes from `ids`
    /// (kind `"return"`).
    pub fn request(
        ctx: &ReturnContext<'_>,
        lines: &[(u32, i64)],
        ids: &dyn IdGenerator,
        now: Timestamp,
    ) -> OmsResult<ReturnCase> {
        let order = ctx.order;
        let delivered = DeliveredUnits::from_shipments(order.id, ctx.shipments);
        let returned = returned_units(ctx.returns, None);
        let lines = check_eligibility(order, lines, &delivered, &returned, ctx.policy, now)?;
        Ok(ReturnCase {
            id: ids.next_id("return"),
            order_id: order.id,
            lines,
            state: RETURN.start(),
            refund: None,
            reason: None,
            requested_at: now,
            updated_at: now,
            history: Vec::new(),
        })
    }

    /// The return id.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The order it returns items of.
    pub fn order_id(&self) -> u64 {
        self.order_id
    }
    /// The returned lines.
    pub fn lines(&self) -> &[ReturnLine] {
        &self.lines
    }
    /// `(line_id, units)` pairs, the shape of a refund request.
    pub fn refund_lines(&self) -> Vec<(u32, u32)> {
        self.lines.iter().map(|l| (l.line_id, l.quantity)).collect()
    }
    /// Current status.
    pub fn status(&self) -> ReturnStatus {
        self.state.status
    }
    /// Post-approval branches completed so far.
    pub fn branches_done(&self) -> Vec<ReturnBranch> {
        self.state.done.iter().copied().collect()
    }
    /// The refund fixed at approval.
    pub fn refund(&self) -> Option<&RefundPreview> {
        self.refund.as_ref()
    }
    /// Why the return was rejected, or why the refund was refused.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
    /// When the customer asked.
    pub fn requested_at(&self) -> Timestamp {
        self.requested_at
    }
    /// When it last changed.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    /// Every accepted move, oldest first.
    pub fn history(&self) -> &[ReturnChange] {
        &self.history
    }

    fn fire(&mut self, event: ReturnEvent, now: Timestamp) -> OmsResult<()> {
        let fired = RETURN.fire(&mut self.state, event)?;
        self.history.push(ReturnChange {
            from: fired.from,
            to: fired.to,
            event,
            at: now,
        });
        self.updated_at = now;
        Ok(())
    }

    fn ensure(&self, event: ReturnEvent) -> OmsResult<()> {
        if RETURN.target(self.state.status, event).is_some() {
            Ok(())
        } else {
            Err(OmsError::InvalidTransition {
                from: self.state.status.label().into(),
                event: event.label().into(),
            })
        }
    }

    /// Requested → UnderReview.
    pub fn start_review(&mut self, now: Timestamp) -> OmsResult<()> {
        self.fire(ReturnEvent::Review, now)
    }

    /// UnderReview → Approved, fixing the refund: the [`refund_preview`] of the returned lines
    /// (plus the shipping charge when `include_shipping`) given what the order has had
    /// `refunded` so far. Eligibility is checked again first (another return may have claimed
    /// the units since; the window is judged at the request time). Any refusal
    /// ([`OmsError::ReturnNotEligible`], or the preview's own errors such as
    /// [`OmsError::RefundExceedsCharge`] or an unpriced order) leaves the return under review,
    /// to be rejected or approved later.
    pub fn approve(
        &mut self,
        ctx: &ReturnContext<'_>,
        refunded: &Refunded,
        include_shipping: bool,
        now: Timestamp,
    ) -> OmsResult<&RefundPreview> {
        self.ensure(ReturnEvent::Approve)?;
        let order = ctx.order;
        if order.id != self.order_id {
            return Err(OmsError::invalid("order", "not the order of this return"));
        }
        let delivered = DeliveredUnits::from_shipments(order.id, ctx.shipments);
        let returned = returned_units(ctx.returns, Some(self.id));
        let request: Vec<(u32, i64)> = self
            .lines
            .iter()
            .map(|l| (l.line_id, i64::from(l.quantity)))
            .collect();
        check_eligibility(
            order,
            &request,
            &delivered,
            &returned,
            ctx.policy,
            self.requested_at,
        )?;
        let preview = refund_preview(
            order,
            refunded,
            &RefundRequest {
                lines: self.refund_lines(),
                include_shipping,
            },
        )?;
        self.fire(ReturnEvent::Approve, now)?;
        Ok(self.refund.insert(preview))
    }

    /// UnderReview → Rejected: the customer keeps the order.
    pub fn reject(&mut self, reason: &str, now: Timestamp) -> OmsResult<()> {
        self.ensure(ReturnEvent::Reject)?;
        if reason.trim().is_empty() {
            return Err(OmsError::MissingField {
                field: "reason".into(),
            });
        }
        self.fire(ReturnEvent::Reject, now)?;
        self.reason = Some(reason.to_owned());
        Ok(())
    }

    /// Complete one post-approval branch.
    pub fn complete_branch(&mut self, branch: ReturnBranch, now: Timestamp) -> OmsResult<()> {
        RETURN.complete(&mut self.state, branch)?;
        self.updated_at = now;
        Ok(())
    }

    /// Join: Approved → ReturnShipped once pickup, refund initiation and inventory update are
    /// all done.
    pub fn mark_shipped(&mut self, now: Timestamp) -> OmsResult<()> {
        self.fire(ReturnEvent::ShipBack, now)
    }

    /// ReturnShipped → Received.
    pub fn receive(&mut self, now: Timestamp) -> OmsResult<()> {
        self.fire(ReturnEvent::Receive, now)
    }

    /// Received → QualityCheck.
    pub fn start_inspection(&mut self, now: Timestamp) -> OmsResult<()> {
        self.fire(ReturnEvent::Inspect, now)
    }

    fn stock(&self, condition: StockCondition) -> Vec<StockReturn> {
        let mut per_sku: BTreeMap<&Sku, u32> = BTreeMap::new();
        for l in &self.lines {
            let e = per_sku.entry(&l.sku).or_insert(0);
            *e = e.saturating_add(l.quantity);
        }
        per_sku
            .into_iter()
            .map(|(sku, quantity)| StockReturn {
                sku: sku.clone(),
                quantity,
                condition,
            })
            .collect()
    }

    /// QualityCheck → RefundApproved: the items are fine; returns the units to put back into
    /// sellable stock.
    pub fn accept_items(&mut self, now: Timestamp) -> OmsResult<Vec<StockReturn>> {
        self.fire(ReturnEvent::ItemsOk, now)?;
        Ok(self.stock(StockCondition::Sellable))
    }

    /// QualityCheck → RefundRejected: the items are damaged; returns the units to book as
    /// damaged stock.
    pub fn reject_items(&mut self, reason: &str, now: Timestamp) -> OmsResult<Vec<StockReturn>> {
        self.ensure(ReturnEvent::ItemsDamaged)?;
        if reason.trim().is_empty() {
            return Err(OmsError::MissingField {
                field: "reason".into(),
            });
        }
        self.fire(ReturnEvent::ItemsDamaged, now)?;
        self.reason = Some(reason.to_owned());
        Ok(self.stock(StockCondition::Damaged))
    }

    /// RefundApproved → RefundProcessed: records the preview fixed at approval in the order's
    /// `refunded` ledger and returns it — the exact amounts to pay out. If the ledger refuses
    /// it (shipping already given back by another refund) nothing changes.
    pub fn process_refund(
        &mut self,
        refunded: &mut Refunded,
        now: Timestamp,
    ) -> OmsResult<RefundPreview> {
        self.ensure(ReturnEvent::ProcessRefund)?;
        let preview = self.refund.clone().ok_or_else(|| OmsError::GuardFailed {
            from: self.state.status.label().into(),
            event: ReturnEvent::ProcessRefund.label().into(),
            reason: "no refund recorded at approval".into(),
        })?;
        refunded.record(&preview)?;
        self.fire(ReturnEvent::ProcessRefund, now)?;
        Ok(preview)
    }

    /// RefundProcessed or RefundRejected → Completed.
    pub fn complete(&mut self, now: Timestamp) -> OmsResult<()> {
        self.fire(ReturnEvent::Complete, now)
    }

    /// Apply a bare machine event with no checks beyond the table and the join (for hosts
    /// that drive returns from outside, e.g. carrier webhooks for `ship_back`/`receive`).
    pub fn apply(&mut self, event: ReturnEvent, now: Timestamp) -> OmsResult<()> {
        self.fire(event, now)
    }

    /// The order status this return implies (seed 001 §2): under review → `ReturnRequested`;
    /// approved until the refund → `ReturnApproved`; rejected → `Delivered` (the customer
    /// keeps the order); refunded → `Refunded`; damaged items, no refund → `Completed`.
    pub fn order_status(&self) -> OrderStatus {
        let refunded = self
            .history
            .iter()
            .any(|c| c.event == ReturnEvent::ProcessRefund);
        match self.state.status {
            St::Requested | St::UnderReview => OrderStatus::ReturnRequested,
            St::Approved
            | St::ReturnShipped
            | St::Received
            | St::QualityCheck
            | St::RefundApproved => OrderStatus::ReturnApproved,
            St::Rejected => OrderStatus::Delivered,
            St::RefundProcessed => OrderStatus::Refunded,
            St::Completed if refunded => OrderStatus::Refunded,
            St::RefundRejected | St::Completed => OrderStatus::Completed,
        }
    }
}

/// The return with id `id` among `returns`, or [`OmsError::NotFound`].
pub fn find_return(returns: &[ReturnCase], id: u64) -> OmsResult<&ReturnCase> {
    returns
        .iter()
        .find(|r| r.id == id)
        .ok_or_else(|| OmsError::NotFound {
            kind: "return".into(),
            id: id.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, VecDeque};

    use super::*;
    use crate::fulfillment::machine::diagram_edges;
    use crate::fulfillment::tests::shipment_with;
    use crate::lifecycle::Actor;
    use crate::money::{Currency, Money};
    use crate::order::{AddressInput, Customer, LineItemInput, OrderDraft};
    use crate::pricing::{place_pricing, PricingContext, ShippingRate, TaxTable};
    use crate::time::{ManualClock, SequentialIds};
    use rust_decimal::Decimal;

    type State = MachineState<ReturnStatus, ReturnBranch>;

    #[derive(Debug, Clone, Copy)]
    enum Step {
        Fire(ReturnEvent),
        Complete(ReturnBranch),
    }

    fn apply(state: &mut State, step: Step) -> OmsResult<()> {
        match step {
            Step::Fire(e) => RETURN.fire(state, e).map(drop),
            Step::Complete(b) => RETURN.complete(state, b),
        }
    }

    fn reach(target: ReturnStatus) -> State {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([RETURN.start()]);
        while let Some(s) = queue.pop_front() {
            if s.status == target {
                return s;
            }
            let steps = ReturnEvent::ALL
                .map(Step::Fire)
                .into_iter()
                .chain(ReturnBranch::ALL.map(Step::Complete));
            for step in steps {
                let mut next = s.clone();
                if apply(&mut next, step).is_ok() && seen.insert(next.clone()) {
                    queue.push_back(next);
                }
            }
        }
        panic!("{target:?} unreachable");
    }

    #[test]
    fn edges_not_drawn_are_refused_and_leave_state_unchanged() {
        let mut refused = 0;
        for s in ReturnStatus::ALL {
            for e in ReturnEvent::ALL {
                let mut st = reach(s);
                if s == RETURN.fork.at {
                    for b in ReturnBranch::ALL {
                        RETURN.complete(&mut st, b).unwrap();
                    }
                }
                let before = st.clone();
                if let Some(to) = RETURN.target(s, e) {
                    RETURN.fire(&mut st, e).unwrap();
                    assert_eq!(st.status, to);
                } else {
                    let err = RETURN.fire(&mut st, e).unwrap_err();
                    assert_eq!(err.code(), "invalid_transition", "{s:?} {e:?}");
                    assert_eq!(st, before);
                    refused += 1;
                }
            }
        }
        assert_eq!(
            refused,
            ReturnStatus::ALL.len() * ReturnEvent::ALL.len() - RETURN_EDGES.len()
        );
        for t in RETURN.terminals {
            assert!(RETURN.events_from(*t).is_empty());
        }
    }

    #[test]
    fn join_waits_for_pickup_refund_and_inventory() {
        let mut st = reach(ReturnStatus::Approved);
        for b in [ReturnBranch::InitiateRefund, ReturnBranch::UpdateInventory] {
            RETURN.complete(&mut st, b).unwrap();
            let before = st.clone();
            let e = RETURN.fire(&mut st, ReturnEvent::ShipBack).unwrap_err();
            assert_eq!(e.code(), "guard_failed");
            assert!(e.to_string().contains("arrange_pickup"));
            assert_eq!(st, before);
        }
        RETURN
            .complete(&mut st, ReturnBranch::ArrangePickup)
            .unwrap();
        RETURN.fire(&mut st, ReturnEvent::ShipBack).unwrap();
        assert_eq!(st.status, ReturnStatus::ReturnShipped);
    }

    /// Seed state names (seed 000 §5 and seed 001 §8) onto the machine.
    fn seed(name: &str) -> ReturnStatus {
        use ReturnStatus as R;
        match name {
            "Return_Initiated" | "ReturnRequested" => R::Requested,
            "Validate_Return" | "UnderReview" => R::UnderReview,
            "Approved"
            | "ReturnApproved"
            | "Fork_ReturnProcessing"
            | "ArrangePickup"
            | "InitiateRefund"
            | "UpdateInventoryOnReturn"
            | "Join_Return" => R::Approved,
            "Rejected" | "ReturnRejected" | "NotifyCustomer" => R::Rejected,
            "ReturnShipped" => R::ReturnShipped,
            "ReturnReceived" => R::Received,
            "QualityCheck" => R::QualityCheck,
            "RefundApproved" => R::RefundApproved,
            "RefundRejected" => R::RefundRejected,
            "RefundProcessed" => R::RefundProcessed,
            "Return_Completed" | "[*]" => R::Completed,
            other => panic!("unmapped seed state {other}"),
        }
    }

    fn walk(rows: &[(&str, &str, &[Step])]) {
        for (from, to, steps) in rows {
            let mut st = reach(seed(from));
            for s in *steps {
                apply(&mut st, *s).unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
            }
            assert_eq!(st.status, seed(to), "{from} -> {to}");
        }
    }

    const ALL_BRANCHES: [Step; 3] = [
        Step::Complete(ReturnBranch::ArrangePickup),
        Step::Complete(ReturnBranch::InitiateRefund),
        Step::Complete(ReturnBranch::UpdateInventory),
    ];

    #[test]
    fn walks_every_edge_of_seed_000_section_5() {
        use ReturnBranch as B;
        use ReturnEvent as E;
        use Step::{Complete as C, Fire as F};
        let join_to_completed: &[Step] = &[
            C(B::ArrangePickup),
            C(B::InitiateRefund),
            C(B::UpdateInventory),
            F(E::ShipBack),
            F(E::Receive),
            F(E::Inspect),
            F(E::ItemsOk),
            F(E::ProcessRefund),
            F(E::Complete),
        ];
        walk(&[
            ("Return_Initiated", "Validate_Return", &[F(E::Review)]),
            ("Validate_Return", "Approved", &[F(E::Approve)]),
            ("Validate_Return", "Rejected", &[F(E::Reject)]),
            ("Approved", "Fork_ReturnProcessing", &[]),
            ("Fork_ReturnProcessing", "ArrangePickup", &[]),
            ("Fork_ReturnProcessing", "InitiateRefund", &[]),
            ("Fork_ReturnProcessing", "UpdateInventoryOnReturn", &[]),
            ("ArrangePickup", "Join_Return", &[C(B::ArrangePickup)]),
            ("InitiateRefund", "Join_Return", &[C(B::InitiateRefund)]),
            (
                "UpdateInventoryOnReturn",
                "Join_Return",
                &[C(B::UpdateInventory)],
            ),
            ("Join_Return", "Return_Completed", join_to_completed),
            ("Rejected", "NotifyCustomer", &[]),
        ]);
        let drawn = diagram_edges(&return_mermaid());
        for (a, b) in [
            ("approved", "fork_return_processing"),
            ("fork_return_processing", "arrange_pickup"),
            ("fork_return_processing", "initiate_refund"),
            ("fork_return_processing", "update_inventory"),
            ("arrange_pickup", "join_return"),
            ("initiate_refund", "join_return"),
            ("update_inventory", "join_return"),
            ("join_return", "return_shipped"),
            ("requested", "under_review"),
            ("under_review", "approved"),
            ("under_review", "rejected"),
            ("rejected", "[*]"),
            ("completed", "[*]"),
        ] {
            assert!(drawn.contains(&(a.to_owned(), b.to_owned())), "{a} -> {b}");
        }
    }

    #[test]
    fn walks_every_edge_of_seed_001_section_8_and_the_return_part_of_section_2() {
        use ReturnEvent as E;
        use Step::Fire as F;
        let ship_back: Vec<Step> = ALL_BRANCHES
            .iter()
            .copied()
            .chain([F(E::ShipBack)])
            .collect();
        walk(&[
            ("ReturnRequested", "UnderReview", &[F(E::Review)]),
            ("UnderReview", "ReturnApproved", &[F(E::Approve)]),
            ("UnderReview", "ReturnRejected", &[F(E::Reject)]),
            ("ReturnApproved", "ReturnShipped", &ship_back),
            ("ReturnShipped", "ReturnReceived", &[F(E::Receive)]),
            ("ReturnReceived", "QualityCheck", &[F(E::Inspect)]),
            ("QualityCheck", "RefundApproved", &[F(E::ItemsOk)]),
            ("QualityCheck", "RefundRejected", &[F(E::ItemsDamaged)]),
            ("RefundApproved", "RefundProcessed", &[F(E::ProcessRefund)]),
            ("RefundProcessed", "[*]", &[F(E::Complete)]),
            ("RefundRejected", "[*]", &[F(E::Complete)]),
        ]);
        // Seed 001 §2: ReturnRequested → ReturnApproved → Refunded; ReturnRejected → Delivered.
        let mut st = reach(ReturnStatus::Requested);
        for s in [F(E::Review), F(E::Approve)]
            .into_iter()
            .chain(ship_back.iter().copied())
            .chain([
                F(E::Receive),
                F(E::Inspect),
                F(E::ItemsOk),
                F(E::ProcessRefund),
            ])
        {
            apply(&mut st, s).unwrap();
        }
        assert_eq!(st.status, ReturnStatus::RefundProcessed);
    }

    #[test]
    fn mermaid_has_every_table_edge() {
        let m = return_mermaid();
        assert!(m.starts_with("---\ntitle: return\n---\nstateDiagram-v2\n    [*] --> requested\n"));
        assert!(m.contains("    join_return --> return_shipped: ship_back\n"));
        let drawn = diagram_edges(&m);
        for e in RETURN_EDGES {
            if e.event != ReturnEvent::ShipBack {
                assert!(drawn.contains(&(e.from.label().to_owned(), e.to.label().to_owned())));
            }
        }
    }

    // ---- returns of a real order -------------------------------------------------------------

    fn usd(s: &str) -> Money {
        Money::parse(s, Currency::USD).unwrap()
    }

    fn t0() -> Timestamp {
        Timestamp::from_civil(2026, 5, 6, 9, 0, 0)
    }

    /// WATER-5L 2 × 4.99, PHONE-X 1 × 399.00, SOAP 3 × 2.00; 10 % tax, 6.00 flat shipping,
    /// priced at placement.
    fn order() -> Order {
        let draft = OrderDraft {
            customer: Customer {
                id: "c1".into(),
                email: "ada@example.com".into(),
                name: "Ada".into(),
            },
            shipping_address: AddressInput {
                name: "Ada".into(),
                line1: "1 Main St".into(),
                city: "New York".into(),
                region: "NY".into(),
                postal_code: "10001".into(),
                country: "US".into(),
                ..AddressInput::default()
            },
            billing_address: None,
            currency: Currency::USD,
            lines: vec![
                LineItemInput::new("WATER-5L", 2, usd("4.99")),
                LineItemInput::new("PHONE-X", 1, usd("399.00")),
                LineItemInput::new("SOAP", 3, usd("2.00")),
            ],
            promo_codes: vec![],
        };
        let clock = ManualClock::new(t0());
        let mut o =
            Order::create(&draft, &Actor::System, &clock, &SequentialIds::default()).unwrap();
        let ctx = PricingContext {
            tax: TaxTable::new().with_rate("US", "standard", Decimal::new(10, 2)),
            shipping: ShippingRate::Flat {
                amount: usd("6.00"),
                free_over: None,
            },
            ..PricingContext::default()
        };
        place_pricing(&mut o, &ctx, t0()).unwrap();
        o
    }

    fn sku(s: &str) -> Sku {
        Sku::new(s).unwrap()
    }

    /// The order delivered in two parcels: water + soap (delivered), phone (in transit).
    fn shipments(o: &Order, ids: &SequentialIds) -> Vec<Shipment> {
        vec![
            shipment_with(
                o.id,
                &[(sku("WATER-5L"), 2), (sku("SOAP"), 3)],
                FulfillmentStatus::Delivered,
                ids,
                t0(),
            ),
            shipment_with(
                o.id,
                &[(sku("PHONE-X"), 1)],
                FulfillmentStatus::InTransit,
                ids,
                t0(),
            ),
        ]
    }

    fn policy() -> ReturnPolicy {
        ReturnPolicy {
            non_returnable: BTreeSet::from([sku("SOAP")]),
            ..ReturnPolicy::default()
        }
    }

    fn ctx<'a>(
        o: &'a Order,
        ships: &'a [Shipment],
        returns: &'a [ReturnCase],
        policy: &'a ReturnPolicy,
    ) -> ReturnContext<'a> {
        ReturnContext {
            order: o,
            shipments: ships,
            returns,
            policy,
        }
    }

    /// The refund of line 1 of [`order`], computed directly from its stored charges.
    fn water_refund(units: u32, o: &Order, before: &Refunded) -> RefundPreview {
        refund_preview(
            o,
            before,
            &RefundRequest {
                lines: vec![(1, units)],
                include_shipping: false,
            },
        )
        .unwrap()
    }

    #[test]
    fn full_return_pays_exactly_the_preview_fixed_at_approval() {
        let o = order();
        let ids = SequentialIds::starting_at(100);
        let ships = shipments(&o, &ids);
        let p = policy();
        let c = ctx(&o, &ships, &[], &p);
        let delivered_at = ships[0].entered_at(FulfillmentStatus::Delivered).unwrap();
        let now = delivered_at.plus(Duration::days(3));
        let mut r = ReturnCase::request(&c, &[(1, 1)], &ids, now).unwrap();
        assert_eq!(r.order_status(), OrderStatus::ReturnRequested);
        r.start_review(now).unwrap();
        let mut ledger = Refunded::default();
        let fixed = r.approve(&c, &ledger, false, now).unwrap().clone();
        // 4.99 + 10 % tax (0.499 → 0.50 on the line of two: 9.98 + 1.00 = 10.98, half is 5.49).
        assert_eq!(fixed, water_refund(1, &o, &ledger));
        assert_eq!(fixed.total, usd("5.49"));
        assert_eq!(r.order_status(), OrderStatus::ReturnApproved);
        assert_eq!(r.mark_shipped(now).unwrap_err().code(), "guard_failed");
        for b in ReturnBranch::ALL {
            r.complete_branch(b, now).unwrap();
        }
        r.mark_shipped(now).unwrap();
        r.receive(now).unwrap();
        r.start_inspection(now).unwrap();
        let stock = r.accept_items(now).unwrap();
        assert_eq!(
            stock,
            vec![StockReturn {
                sku: sku("WATER-5L"),
                quantity: 1,
                condition: StockCondition::Sellable
            }]
        );
        // Another refund of the other water unit happens in between: the stored preview is
        // still what this return pays, and the ledger adds both up to the line's total.
        let other = water_refund(1, &o, &ledger);
        ledger.record(&other).unwrap();
        let paid = r.process_refund(&mut ledger, now).unwrap();
        assert_eq!(paid, fixed);
        assert_eq!(ledger.units.get(&1), Some(&2));
        assert_eq!(ledger.amounts.get(&1), Some(&usd("10.98")));
        assert_eq!(r.order_status(), OrderStatus::Refunded);
        r.complete(now).unwrap();
        assert_eq!(r.status(), ReturnStatus::Completed);
        assert_eq!(r.order_status(), OrderStatus::Refunded);
        assert_eq!(r.refund_lines(), vec![(1, 1)]);
        assert_eq!(r.history().len(), 8);
    }

    #[test]
    fn refund_errors_leave_the_return_unchanged() {
        let o = order();
        let ids = SequentialIds::starting_at(100);
        let ships = shipments(&o, &ids);
        let p = policy();
        let c = ctx(&o, &ships, &[], &p);
        let now = ships[0].updated_at();
        let mut r = ReturnCase::request(&c, &[(1, 2)], &ids, now).unwrap();
        r.start_review(now).unwrap();
        let before = r.clone();
        // Both water units were already refunded (say, as a goodwill refund).
        let mut ledger = Refunded::default();
        ledger.record(&water_refund(2, &o, &ledger)).unwrap();
        let e = r.approve(&c, &ledger, false, now).unwrap_err();
        assert_eq!(e.code(), "refund_exceeds_charge");
        assert_eq!(r, before);
        // An unpriced order cannot be refunded.
        let mut unpriced = o.clone();
        for l in &mut unpriced.lines {
            l.charges = None;
        }
        let e = r
            .approve(
                &ctx(&unpriced, &ships, &[], &p),
                &Refunded::default(),
                false,
                now,
            )
            .unwrap_err();
        assert_eq!(e.code(), "missing_field");
        assert_eq!(r, before);
        // With shipping: the whole 6.00 comes back once.
        let fixed = r
            .approve(&c, &Refunded::default(), true, now)
            .unwrap()
            .clone();
        assert_eq!(fixed.shipping, usd("6.00"));
        assert_eq!(fixed.total, usd("16.98"));
        for b in ReturnBranch::ALL {
            r.complete_branch(b, now).unwrap();
        }
        r.mark_shipped(now).unwrap();
        r.receive(now).unwrap();
        r.start_inspection(now).unwrap();
        r.accept_items(now).unwrap();
        // The ledger already gave shipping back elsewhere: refused, nothing changes.
        let mut ledger = Refunded {
            shipping_refunded: true,
            ..Refunded::default()
        };
        let before = (r.clone(), ledger.clone());
        let e = r.process_refund(&mut ledger, now).unwrap_err();
        assert_eq!(e.code(), "refund_exceeds_charge");
        assert_eq!((r.clone(), ledger), before);
        let mut fresh = Refunded::default();
        assert_eq!(r.process_refund(&mut fresh, now).unwrap(), fixed);
        assert!(fresh.shipping_refunded);
    }

    #[test]
    fn damaged_items_go_to_damaged_stock_without_refund() {
        let o = order();
        let ids = SequentialIds::starting_at(100);
        let ships = shipments(&o, &ids);
        let p = policy();
        let c = ctx(&o, &ships, &[], &p);
        let now = ships[0].updated_at();
        let mut r = ReturnCase::request(&c, &[(1, 2)], &ids, now).unwrap();
        r.start_review(now).unwrap();
        r.approve(&c, &Refunded::default(), false, now).unwrap();
        for b in ReturnBranch::ALL {
            r.complete_branch(b, now).unwrap();
        }
        r.mark_shipped(now).unwrap();
        r.receive(now).unwrap();
        r.start_inspection(now).unwrap();
        assert_eq!(
            r.reject_items(" ", now).unwrap_err().code(),
            "missing_field"
        );
        let stock = r.reject_items("seal broken", now).unwrap();
        assert_eq!(stock[0].condition, StockCondition::Damaged);
        assert_eq!(stock[0].quantity, 2);
        let mut ledger = Refunded::default();
        let e = r.process_refund(&mut ledger, now).unwrap_err();
        assert_eq!(e.code(), "invalid_transition");
        assert_eq!(ledger, Refunded::default());
        r.complete(now).unwrap();
        assert_eq!(r.order_status(), OrderStatus::Completed);
        assert_eq!(r.reason(), Some("seal broken"));
    }

    #[test]
    fn rejected_return_leaves_the_order_delivered() {
        let o = order();
        let ids = SequentialIds::starting_at(100);
        let ships = shipments(&o, &ids);
        let p = policy();
        let c = ctx(&o, &ships, &[], &p);
        let now = ships[0].updated_at();
        let mut r = ReturnCase::request(&c, &[(1, 1)], &ids, now).unwrap();
        assert_eq!(
            r.reject("no", now).unwrap_err().code(),
            "invalid_transition"
        );
        r.start_review(now).unwrap();
        assert_eq!(r.reject("", now).unwrap_err().code(), "missing_field");
        r.reject("used item", now).unwrap();
        assert_eq!(r.status(), ReturnStatus::Rejected);
        assert_eq!(r.order_status(), OrderStatus::Delivered);
        assert!(r.refund().is_none());
        // A rejected return does not hold units: both may be requested again.
        let previous = [r];
        let again = ReturnCase::request(&ctx(&o, &ships, &previous, &p), &[(1, 2)], &ids, now);
        assert_eq!(again.unwrap().lines()[0].quantity, 2);
    }

    #[test]
    fn ineligible_requests_are_refused_with_the_reason() {
        let o = order();
        let ids = SequentialIds::starting_at(100);
        let ships = shipments(&o, &ids);
        let delivered_at = ships[0].entered_at(FulfillmentStatus::Delivered).unwrap();
        let p = policy();
        let req = |lines: &[(u32, i64)], prev: &[ReturnCase], at| {
            ReturnCase::request(&ctx(&o, &ships, prev, &p), lines, &ids, at)
        };
        let reason = |e: OmsError| match e {
            OmsError::ReturnNotEligible { reason } => reason,
            other => panic!("expected return_not_eligible, got {other:?}"),
        };
        let now = delivered_at.plus(Duration::days(1));
        assert!(reason(req(&[(1, 3)], &[], now).unwrap_err()).contains("2 returnable"));
        assert!(reason(req(&[(1, 2), (1, 1)], &[], now).unwrap_err()).contains("3 units requested"));
        assert!(reason(req(&[(3, 1)], &[], now).unwrap_err()).contains("not returnable"));
        assert!(reason(req(&[(2, 1)], &[], now).unwrap_err()).contains("not been delivered"));
        let late = delivered_at.plus(Duration::days(30)).plus(Duration(1));
        assert!(reason(req(&[(1, 1)], &[], late).unwrap_err()).contains("window"));
        assert!(req(&[(1, 1)], &[], delivered_at.plus(Duration::days(30))).is_ok());
        assert_eq!(
            req(&[(1, 0)], &[], now).unwrap_err().code(),
            "invalid_quantity"
        );
        assert_eq!(
            req(&[(1, -1)], &[], now).unwrap_err().code(),
            "invalid_quantity"
        );
        assert_eq!(
            req(&[(9, 1)], &[], now).unwrap_err().code(),
            "line_not_found"
        );
        assert_eq!(req(&[], &[], now).unwrap_err().code(), "missing_field");
        // Already returned units count against what is left.
        let first = req(&[(1, 1)], &[], now).unwrap();
        assert!(
            reason(req(&[(1, 2)], std::slice::from_ref(&first), now).unwrap_err())
                .contains("1 already returned")
        );
        assert!(req(&[(1, 1)], &[first], now).is_ok());
        // Another order's shipments do not count as delivered for this one.
        let mut other = order();
        other.id = 999;
        let e = ReturnCase::request(&ctx(&other, &ships, &[], &p), &[(1, 1)], &ids, now);
        assert_eq!(e.unwrap_err().code(), "return_not_eligible");
    }

    #[test]
    fn approval_rechecks_against_returns_opened_since() {
        let o = order();
        let ids = SequentialIds::starting_at(100);
        let ships = shipments(&o, &ids);
        let now = ships[0].updated_at();
        let p = policy();
        let c = ctx(&o, &ships, &[], &p);
        let mut a = ReturnCase::request(&c, &[(1, 2)], &ids, now).unwrap();
        let b = ReturnCase::request(&c, &[(1, 2)], &ids, now).unwrap();
        a.start_review(now).unwrap();
        let others = vec![b];
        let before = a.clone();
        let none = Refunded::default();
        let e = a
            .approve(&ctx(&o, &ships, &others, &p), &none, false, now)
            .unwrap_err();
        assert_eq!(e.code(), "return_not_eligible");
        assert_eq!(a, before);
        // Its own entry in the list is ignored.
        let with_self = [a.clone()];
        a.approve(&ctx(&o, &ships, &with_self, &p), &none, false, now)
            .unwrap();
        assert_eq!(a.refund().map(|r| r.total), Some(usd("10.98")));
        assert_eq!(
            find_return(&with_self, 12345).unwrap_err().code(),
            "not_found"
        );
        assert_eq!(find_return(&with_self, a.id()).unwrap().order_id(), o.id);
        // The wrong order is refused.
        let mut b2 = before.clone();
        let mut other = order();
        other.id = 999;
        let e = b2
            .approve(&ctx(&other, &ships, &[], &p), &none, false, now)
            .unwrap_err();
        assert_eq!(e.code(), "invalid_field");
        assert_eq!(b2, before);
    }
}
