//! The reservation machine of seed 000 §3, as one transition table that both the stores and the
//! Mermaid export read, and the reservation record itself.
//!
//! The seed's fork/join (lock the stock rows, create the reservation record, update the stock
//! counts; commit or roll back as one unit) is explicit: [`ReservationStatus::fork`] opens a
//! [`ReservingJoin`], each [`ReservingBranch`] reports completion, and only a join with every
//! branch complete reaches `Reserved`. A store that cannot complete a branch drops the join and
//! writes nothing, so the reservation never exists half-made.

use std::collections::BTreeSet;
use std::fmt;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::order::{Sku, MAX_LINE_QUANTITY};
use crate::time::{Duration, Timestamp};

use super::ledger::{non_positive, WarehouseId};

/// Where a reservation is in the seed 000 §3 machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Asked for; nothing checked yet.
    Requested,
    /// Stock is being compared with the request.
    CheckingAvailability,
    /// Every unit asked for is available.
    AllAvailable,
    /// Some units are available, not all.
    PartialAvailable,
    /// No unit asked for is available.
    OutOfStock,
    /// The lock / record / stock-update steps are running.
    Reserving,
    /// Stock is held until `expires_at`.
    Reserved,
    /// The partial quantities were offered; the customer accepts or declines.
    AwaitingCustomerDecision,
    /// Nothing is held: out of stock, or a partial offer declined or left to lapse.
    Failed,
    /// Committed at fulfillment: the units are allocated to the order.
    Allocated,
    /// The allocated units were shipped and left `on_hand`.
    Shipped,
    /// Cancelled or expired: the units went back to available.
    Released,
}

impl ReservationStatus {
    /// Every status, in machine order.
    pub const ALL: [ReservationStatus; 12] = [
        ReservationStatus::Requested,
        ReservationStatus::CheckingAvailability,
        ReservationStatus::AllAvailable,
        ReservationStatus::PartialAvailable,
        ReservationStatus::OutOfStock,
        ReservationStatus::Reserving,
        ReservationStatus::Reserved,
        ReservationStatus::AwaitingCustomerDecision,
        ReservationStatus::Failed,
        ReservationStatus::Allocated,
        ReservationStatus::Shipped,
        ReservationStatus::Released,
    ];

    /// The snake_case name used in storage, JSON and every binding.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::CheckingAvailability => "checking_availability",
            Self::AllAvailable => "all_available",
            Self::PartialAvailable => "partial_available",
            Self::OutOfStock => "out_of_stock",
            Self::Reserving => "reserving",
            Self::Reserved => "reserved",
            Self::AwaitingCustomerDecision => "awaiting_customer_decision",
            Self::Failed => "failed",
            Self::Allocated => "allocated",
            Self::Shipped => "shipped",
            Self::Released => "released",
        }
    }

    /// Parse the snake_case name.
    pub fn parse(s: &str) -> Option<ReservationStatus> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The state's name in seed 000 §3, or `None` for states the seed does not draw.
    pub fn seed_name(self) -> Option<&'static str> {
        Some(match self {
            Self::Requested => "Reservation_Requested",
            Self::CheckingAvailability => "Checking_Availability",
            Self::AllAvailable => "All_Available",
            Self::PartialAvailable => "Partial_Available",
            Self::OutOfStock => "Out_Of_Stock",
            Self::Reserving => "Reserving_Stock",
            Self::Reserved => "Reserved",
            Self::AwaitingCustomerDecision => "AwaitingCustomerDecision",
            Self::Failed => "Reservation_Failed",
            Self::Allocated => "Allocated",
            Self::Released => "Released",
            Self::Shipped => return None,
        })
    }

    /// The Mermaid state id (the variant name).
    fn diagram_id(self) -> &'static str {
        match self {
            Self::Requested => "Requested",
            Self::CheckingAvailability => "CheckingAvailability",
            Self::AllAvailable => "AllAvailable",
            Self::PartialAvailable => "PartialAvailable",
            Self::OutOfStock => "OutOfStock",
            Self::Reserving => "Reserving",
            Self::Reserved => "Reserved",
            Self::AwaitingCustomerDecision => "AwaitingCustomerDecision",
            Self::Failed => "Failed",
            Self::Allocated => "Allocated",
            Self::Shipped => "Shipped",
            Self::Released => "Released",
        }
    }

    /// No further move is possible: releasing or committing again is `ReservationClosed`.
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Failed | Self::Shipped | Self::Released)
    }

    /// Units of this reservation are counted in the ledger (`reserved` or `allocated`).
    pub fn holds_stock(self) -> bool {
        matches!(self, Self::Reserved | Self::Allocated)
    }

    /// The state `event` leads to, read from [`EDGES`]; `InvalidTransition` if the table has no
    /// such edge.
    ///
    /// ```
    /// use oms_core::inventory::{ReservationEvent, ReservationStatus};
    /// let s = ReservationStatus::Reserved;
    /// assert_eq!(s.next(ReservationEvent::Commit).unwrap(), ReservationStatus::Allocated);
    /// assert!(s.next(ReservationEvent::Ship).is_err());
    /// ```
    pub fn next(self, event: ReservationEvent) -> OmsResult<ReservationStatus> {
        EDGES
            .iter()
            .find_map(|e| match (e.from, e.to) {
                (Node::Status(from), Node::Status(to))
                    if from == self && e.event == Some(event) =>
                {
                    Some(to)
                }
                _ => None,
            })
            .ok_or_else(|| self.refuse(event.as_str()))
    }

    /// Enter the seed's parallel reservation steps from `Reserving`.
    pub fn fork(self) -> OmsResult<ReservingJoin> {
        if EDGES
            .iter()
            .any(|e| e.from == Node::Status(self) && e.to == Node::Fork)
        {
            Ok(ReservingJoin {
                done: BTreeSet::new(),
            })
        } else {
            Err(self.refuse("fork_reserve"))
        }
    }

    fn refuse(self, event: &str) -> OmsError {
        OmsError::InvalidTransition {
            from: format!("reservation {}", self.as_str()),
            event: event.to_owned(),
        }
    }
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What moves a reservation from one state to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationEvent {
    /// Look the stock up.
    QueryInventory,
    /// Every unit is there.
    AllInStock,
    /// Some units are there.
    Partial,
    /// No unit is there.
    NoneAvailable,
    /// Start holding the units.
    BeginReservation,
    /// The join saw every branch complete.
    ReservationSuccess,
    /// Tell the customer nothing could be held.
    NotifyCustomer,
    /// Offer the available quantities.
    OfferPartial,
    /// The customer takes the offered quantities.
    AcceptPartial,
    /// The customer refuses the offer, or lets it lapse.
    DeclinePartial,
    /// Commit at fulfillment: reserved units become allocated.
    Commit,
    /// Cancel or expiry: the units go back to available.
    Release,
    /// Cancel after commitment: the allocated units not yet shipped go back to available.
    Deallocate,
    /// The allocated units left the warehouse.
    Ship,
}

impl ReservationEvent {
    /// The snake_case name, as drawn on the diagram.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueryInventory => "query_inventory",
            Self::AllInStock => "all_in_stock",
            Self::Partial => "partial",
            Self::NoneAvailable => "none_available",
            Self::BeginReservation => "begin_reservation",
            Self::ReservationSuccess => "reservation_success",
            Self::NotifyCustomer => "notify_customer",
            Self::OfferPartial => "offer_partial",
            Self::AcceptPartial => "accept_partial",
            Self::DeclinePartial => "decline_or_lapse",
            Self::Commit => "order_fulfilled",
            Self::Release => "order_cancelled_or_expired",
            Self::Deallocate => "order_cancelled",
            Self::Ship => "ship",
        }
    }
}

/// The three parallel steps between `Reserving` and `Reserved` (seed 000 §3 `Fork_Reserve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservingBranch {
    /// Lock the stock rows, in a fixed (sku, warehouse) order so concurrent reservers never
    /// deadlock.
    LockRecords,
    /// Write the reservation record.
    CreateRecord,
    /// Conditionally move each line's units from available to reserved.
    UpdateStockCounts,
}

impl ReservingBranch {
    /// Every branch.
    pub const ALL: [ReservingBranch; 3] = [
        ReservingBranch::LockRecords,
        ReservingBranch::CreateRecord,
        ReservingBranch::UpdateStockCounts,
    ];

    fn diagram_id(self) -> &'static str {
        match self {
            Self::LockRecords => "LockRecords",
            Self::CreateRecord => "CreateReservationRecord",
            Self::UpdateStockCounts => "UpdateStockCounts",
        }
    }

    /// The branch's name in seed 000 §3.
    pub fn seed_name(self) -> &'static str {
        match self {
            Self::LockRecords => "Lock_Records",
            Self::CreateRecord => "Create_Reservation_Record",
            Self::UpdateStockCounts => "Update_StockCounts",
        }
    }
}

/// The join of the parallel reservation steps: it reaches `Reserved` only when every branch
/// the table forks to has completed. Dropping it unfinished is the rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservingJoin {
    done: BTreeSet<ReservingBranch>,
}

impl ReservingJoin {
    /// Record that `branch` finished.
    pub fn complete(&mut self, branch: ReservingBranch) {
        self.done.insert(branch);
    }

    /// The branches the table forks to that have not finished.
    pub fn pending(&self) -> Vec<ReservingBranch> {
        EDGES
            .iter()
            .filter_map(|e| match (e.from, e.to) {
                (Node::Fork, Node::Branch(b)) if !self.done.contains(&b) => Some(b),
                _ => None,
            })
            .collect()
    }

    /// Close the join: `Reserved` if every branch completed, `GuardFailed` otherwise.
    pub fn finish(self) -> OmsResult<ReservationStatus> {
        let pending = self.pending();
        if let Some(first) = pending.first() {
            return Err(OmsError::GuardFailed {
                from: "reservation join_reserve".into(),
                event: ReservationEvent::ReservationSuccess.as_str().into(),
                reason: format!("branch {} did not complete", first.seed_name()),
            });
        }
        EDGES
            .iter()
            .find_map(|e| match (e.from, e.to) {
                (Node::Join, Node::Status(to))
                    if e.event == Some(ReservationEvent::ReservationSuccess) =>
                {
                    Some(to)
                }
                _ => None,
            })
            .ok_or_else(|| OmsError::InvalidTransition {
                from: "reservation join_reserve".into(),
                event: ReservationEvent::ReservationSuccess.as_str().into(),
            })
    }
}

/// A node of the reservation diagram: a state, or one of the seed's pseudo-states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// The diagram's entry point `[*]`.
    Start,
    /// A reservation state.
    Status(ReservationStatus),
    /// `Fork_Reserve`.
    Fork,
    /// One of the parallel steps.
    Branch(ReservingBranch),
    /// `Join_Reserve`.
    Join,
}

impl Node {
    /// The node's name in seed 000 §3 (`None` for states the seed does not draw).
    pub fn seed_name(self) -> Option<&'static str> {
        match self {
            Node::Start => Some("[*]"),
            Node::Status(s) => s.seed_name(),
            Node::Fork => Some("Fork_Reserve"),
            Node::Branch(b) => Some(b.seed_name()),
            Node::Join => Some("Join_Reserve"),
        }
    }

    fn diagram_id(self) -> &'static str {
        match self {
            Node::Start => "[*]",
            Node::Status(s) => s.diagram_id(),
            Node::Fork => "fork_reserve",
            Node::Branch(b) => b.diagram_id(),
            Node::Join => "join_reserve",
        }
    }
}

/// Whether an edge is drawn in the seed or added by the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Drawn in seed 000 §3.
    Seed,
    /// Added where the seed leaves a state without a way out (accept/decline of a partial
    /// offer, shipping, release after commitment).
    Extension,
}

/// One edge of the reservation machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Source node.
    pub from: Node,
    /// Target node.
    pub to: Node,
    /// The event that takes it; `None` for the fork/join wiring.
    pub event: Option<ReservationEvent>,
    /// Seed or library extension.
    pub origin: Origin,
}

const fn edge(from: Node, to: Node, event: Option<ReservationEvent>, origin: Origin) -> Edge {
    Edge {
        from,
        to,
        event,
        origin,
    }
}

use self::{Node as N, Origin as O, ReservationEvent as E, ReservationStatus as S};

/// The reservation machine: the one table every store and the diagram read.
pub const EDGES: &[Edge] = &[
    edge(N::Start, N::Status(S::Requested), None, O::Seed),
    edge(
        N::Status(S::Requested),
        N::Status(S::CheckingAvailability),
        Some(E::QueryInventory),
        O::Seed,
    ),
    edge(
        N::Status(S::CheckingAvailability),
        N::Status(S::AllAvailable),
        Some(E::AllInStock),
        O::Seed,
    ),
    edge(
        N::Status(S::CheckingAvailability),
        N::Status(S::PartialAvailable),
        Some(E::Partial),
        O::Seed,
    ),
    edge(
        N::Status(S::CheckingAvailability),
        N::Status(S::OutOfStock),
        Some(E::NoneAvailable),
        O::Seed,
    ),
    edge(
        N::Status(S::AllAvailable),
        N::Status(S::Reserving),
        Some(E::BeginReservation),
        O::Seed,
    ),
    edge(N::Status(S::Reserving), N::Fork, None, O::Seed),
    edge(
        N::Fork,
        N::Branch(ReservingBranch::LockRecords),
        None,
        O::Seed,
    ),
    edge(
        N::Fork,
        N::Branch(ReservingBranch::CreateRecord),
        None,
        O::Seed,
    ),
    edge(
        N::Fork,
        N::Branch(ReservingBranch::UpdateStockCounts),
        None,
        O::Seed,
    ),
    edge(
        N::Branch(ReservingBranch::LockRecords),
        N::Join,
        None,
        O::Seed,
    ),
    edge(
        N::Branch(ReservingBranch::CreateRecord),
        N::Join,
        None,
        O::Seed,
    ),
    edge(
        N::Branch(ReservingBranch::UpdateStockCounts),
        N::Join,
        None,
        O::Seed,
    ),
    edge(
        N::Join,
        N::Status(S::Reserved),
        Some(E::ReservationSuccess),
        O::Seed,
    ),
    edge(
        N::Status(S::OutOfStock),
        N::Status(S::Failed),
        Some(E::NotifyCustomer),
        O::Seed,
    ),
    edge(
        N::Status(S::PartialAvailable),
        N::Status(S::AwaitingCustomerDecision),
        Some(E::OfferPartial),
        O::Seed,
    ),
    edge(
        N::Status(S::Reserved),
        N::Status(S::Allocated),
        Some(E::Commit),
        O::Seed,
    ),
    edge(
        N::Status(S::Reserved),
        N::Status(S::Released),
        Some(E::Release),
        O::Seed,
    ),
    edge(
        N::Status(S::AwaitingCustomerDecision),
        N::Status(S::Reserving),
        Some(E::AcceptPartial),
        O::Extension,
    ),
    edge(
        N::Status(S::AwaitingCustomerDecision),
        N::Status(S::Failed),
        Some(E::DeclinePartial),
        O::Extension,
    ),
    edge(
        N::Status(S::Allocated),
        N::Status(S::Shipped),
        Some(E::Ship),
        O::Extension,
    ),
    edge(
        N::Status(S::Allocated),
        N::Status(S::Released),
        Some(E::Deallocate),
        O::Extension,
    ),
];

/// The reservation machine as a Mermaid `stateDiagram-v2`, generated from [`EDGES`].
///
/// ```
/// let d = oms_core::inventory::reservation_mermaid();
/// assert!(d.starts_with("stateDiagram-v2"));
/// assert!(d.contains("Reserved --> Allocated: order_fulfilled"));
/// ```
pub fn reservation_mermaid() -> String {
    let mut out = String::from("stateDiagram-v2\n");
    out.push_str("    state fork_reserve <<fork>>\n    state join_reserve <<join>>\n");
    for e in EDGES {
        let _ = write!(out, "    {} --> {}", e.from.diagram_id(), e.to.diagram_id());
        if let Some(ev) = e.event {
            let _ = write!(out, ": {}", ev.as_str());
        }
        out.push('\n');
    }
    for s in ReservationStatus::ALL {
        if s.is_closed() {
            let _ = writeln!(out, "    {} --> [*]", s.diagram_id());
        }
    }
    out.push_str(
        "    note right of fork_reserve\n        lock, record and stock update commit or roll back as one unit\n    end note\n",
    );
    out
}

/// Why a reservation was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// Released on request (order cancelled, payment failed).
    Cancelled,
    /// Released by [`super::InventoryStore::expire`] after `expires_at`.
    Expired,
}

/// Units of one sku held (or offered) in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReservationItem {
    /// The sku.
    pub sku: Sku,
    /// The warehouse holding the units.
    pub warehouse: WarehouseId,
    /// Units (at least 1).
    pub quantity: u64,
}

impl ReservationItem {
    /// An item of `quantity` units of `sku` in `warehouse`.
    pub fn new(sku: Sku, warehouse: WarehouseId, quantity: u64) -> Self {
        ReservationItem {
            sku,
            warehouse,
            quantity,
        }
    }
}

/// One line of a reservation request. Text formats write it tagged with its `kind` inside
/// the object (`{"kind": "exact", …}`); compact binary formats, which cannot read a tag
/// inside an object, write it as a plain enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestLine {
    /// Exactly this many units from this warehouse.
    Exact(ReservationItem),
    /// This many units of `sku`, taken from the listed warehouses in order, each giving what it
    /// has available until the quantity is met (seed 001 §6's split).
    Spread {
        /// The sku.
        sku: Sku,
        /// Units wanted in total.
        quantity: u64,
        /// Warehouses in order of preference, no repeats.
        warehouses: Vec<WarehouseId>,
    },
}

/// [`RequestLine`] as text formats write it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
enum TaggedLine<I, S, W> {
    Exact(I),
    Spread {
        sku: S,
        quantity: u64,
        warehouses: W,
    },
}

/// [`RequestLine`] as compact binary formats write it, and the form both are converted through.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PlainLine<I, S, W> {
    Exact(I),
    Spread {
        sku: S,
        quantity: u64,
        warehouses: W,
    },
}

impl<I, S, W> From<PlainLine<I, S, W>> for TaggedLine<I, S, W> {
    fn from(line: PlainLine<I, S, W>) -> Self {
        match line {
            PlainLine::Exact(item) => TaggedLine::Exact(item),
            PlainLine::Spread {
                sku,
                quantity,
                warehouses,
            } => TaggedLine::Spread {
                sku,
                quantity,
                warehouses,
            },
        }
    }
}

impl<I, S, W> From<TaggedLine<I, S, W>> for PlainLine<I, S, W> {
    fn from(line: TaggedLine<I, S, W>) -> Self {
        match line {
            TaggedLine::Exact(item) => PlainLine::Exact(item),
            TaggedLine::Spread {
                sku,
                quantity,
                warehouses,
            } => PlainLine::Spread {
                sku,
                quantity,
                warehouses,
            },
        }
    }
}

impl Serialize for RequestLine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let plain = match self {
            RequestLine::Exact(item) => PlainLine::Exact(item),
            RequestLine::Spread {
                sku,
                quantity,
                warehouses,
            } => PlainLine::Spread {
                sku,
                quantity: *quantity,
                warehouses,
            },
        };
        crate::tagged::serialize::<_, TaggedLine<_, _, _>, _>(plain, s)
    }
}

impl<'de> Deserialize<'de> for RequestLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let plain = crate::tagged::deserialize::<
            PlainLine<ReservationItem, Sku, Vec<WarehouseId>>,
            TaggedLine<_, _, _>,
            _,
        >(d)?;
        Ok(match plain {
            PlainLine::Exact(item) => RequestLine::Exact(item),
            PlainLine::Spread {
                sku,
                quantity,
                warehouses,
            } => RequestLine::Spread {
                sku,
                quantity,
                warehouses,
            },
        })
    }
}

impl RequestLine {
    /// The line's sku.
    pub fn sku(&self) -> &Sku {
        match self {
            RequestLine::Exact(item) => &item.sku,
            RequestLine::Spread { sku, .. } => sku,
        }
    }

    /// Units wanted.
    pub fn quantity(&self) -> u64 {
        match self {
            RequestLine::Exact(item) => item.quantity,
            RequestLine::Spread { quantity, .. } => *quantity,
        }
    }

    /// The warehouses the line may draw on.
    pub fn warehouses(&self) -> Vec<&WarehouseId> {
        match self {
            RequestLine::Exact(item) => vec![&item.warehouse],
            RequestLine::Spread { warehouses, .. } => warehouses.iter().collect(),
        }
    }
}

/// Split `quantity` over warehouses in the given order, each giving at most its available
/// units. Returns `(warehouse index, units)` for every warehouse that gives something, and the
/// units still missing.
///
/// ```
/// use oms_core::inventory::spread_quantity;
/// assert_eq!(spread_quantity(2, &[1, 10]), (vec![(0, 1), (1, 1)], 0));
/// assert_eq!(spread_quantity(5, &[0, 3]), (vec![(1, 3)], 2));
/// ```
pub fn spread_quantity(quantity: u64, available: &[u64]) -> (Vec<(usize, u64)>, u64) {
    let mut missing = quantity;
    let mut parts = Vec::new();
    for (i, &avail) in available.iter().enumerate() {
        if missing == 0 {
            break;
        }
        let take = avail.min(missing);
        if take > 0 {
            parts.push((i, take));
            missing -= take;
        }
    }
    (parts, missing)
}

/// A request to hold stock for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRequest {
    /// The order the units are for.
    pub order_id: u64,
    /// What to hold (at least one line).
    pub lines: Vec<RequestLine>,
    /// How long the hold lasts; the store's default (15 minutes) when `None`.
    #[serde(default)]
    pub ttl: Option<Duration>,
}

impl ReservationRequest {
    /// An empty request for `order_id`; add lines with [`Self::item`] and [`Self::spread`].
    pub fn new(order_id: u64) -> Self {
        ReservationRequest {
            order_id,
            lines: Vec::new(),
            ttl: None,
        }
    }

    /// Add `quantity` units of `sku` from `warehouse`.
    pub fn item(mut self, sku: Sku, warehouse: WarehouseId, quantity: u64) -> Self {
        self.lines.push(RequestLine::Exact(ReservationItem::new(
            sku, warehouse, quantity,
        )));
        self
    }

    /// Add `quantity` units of `sku`, spread over `warehouses` in order.
    pub fn spread(mut self, sku: Sku, quantity: u64, warehouses: Vec<WarehouseId>) -> Self {
        self.lines.push(RequestLine::Spread {
            sku,
            quantity,
            warehouses,
        });
        self
    }

    /// Hold for `ttl` instead of the store's default.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Check the request's shape: lines present, quantities 1 ..= 1,000,000, ttl positive,
    /// spread lines naming at least one warehouse and none twice. Whether the skus and
    /// warehouses exist is the store's check.
    pub fn validate(&self) -> OmsResult<()> {
        if self.lines.is_empty() {
            return Err(OmsError::MissingField {
                field: "lines".into(),
            });
        }
        for line in &self.lines {
            let q = line.quantity();
            if q == 0 {
                return Err(non_positive(q));
            }
            if q > MAX_LINE_QUANTITY {
                return Err(OmsError::InvalidQuantity {
                    quantity: q.to_string(),
                    reason: "more than 1,000,000 units on one line".into(),
                });
            }
            if let RequestLine::Spread { warehouses, .. } = line {
                if warehouses.is_empty() {
                    return Err(OmsError::MissingField {
                        field: "warehouses".into(),
                    });
                }
                let distinct: BTreeSet<_> = warehouses.iter().collect();
                if distinct.len() != warehouses.len() {
                    return Err(OmsError::invalid(
                        "warehouses",
                        "a warehouse is listed twice",
                    ));
                }
            }
        }
        if let Some(ttl) = self.ttl {
            if ttl.millis() <= 0 {
                return Err(OmsError::invalid("ttl", "must be positive"));
            }
        }
        Ok(())
    }
}

/// Reservation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationConfig {
    /// How long a hold lasts when the request does not say (seed 001 §4: 15 minutes).
    pub default_ttl: Duration,
}

impl Default for ReservationConfig {
    fn default() -> Self {
        ReservationConfig {
            default_ttl: Duration::minutes(15),
        }
    }
}

/// A reservation record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Id from the store's [`crate::time::IdGenerator`] (kind `"reservation"`).
    pub id: u64,
    /// The order it holds stock for.
    pub order_id: u64,
    /// The request's lines, as asked.
    pub requested: Vec<RequestLine>,
    /// Per-warehouse units: held when `Reserved`/`Allocated`, offered when awaiting a decision,
    /// formerly held when `Released`/`Shipped`, empty when out of stock.
    pub items: Vec<ReservationItem>,
    /// Current state.
    pub status: ReservationStatus,
    /// Every state passed through, oldest first, ending with `status`.
    pub path: Vec<ReservationStatus>,
    /// When it was requested.
    pub created_at: Timestamp,
    /// When the hold (or the partial offer) lapses.
    pub expires_at: Timestamp,
    /// The hold length, reused when a partial offer is accepted.
    pub ttl: Duration,
    /// Why it was released, once `Released`.
    pub release_reason: Option<ReleaseReason>,
    /// Warehouses whose items have shipped (a split order ships one warehouse at a time).
    #[serde(default)]
    pub shipped_from: BTreeSet<WarehouseId>,
    /// When it last changed.
    pub updated_at: Timestamp,
}

impl Reservation {
    /// A new reservation `id` for `request`, held for `ttl` from `now`, already moved on to
    /// checking availability (every store starts a reserve this way).
    pub fn checking(
        id: u64,
        request: &ReservationRequest,
        ttl: Duration,
        now: Timestamp,
    ) -> OmsResult<Reservation> {
        let mut r = Reservation {
            id,
            order_id: request.order_id,
            requested: request.lines.clone(),
            items: Vec::new(),
            status: ReservationStatus::Requested,
            path: vec![ReservationStatus::Requested],
            created_at: now,
            expires_at: now.plus(ttl),
            ttl,
            release_reason: None,
            shipped_from: BTreeSet::new(),
            updated_at: now,
        };
        r.step(ReservationEvent::QueryInventory, now)?;
        Ok(r)
    }

    /// Whether the hold has lapsed at `now` (`now >= expires_at`).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }

    /// Total units in `items`.
    pub fn total_units(&self) -> u64 {
        self.items
            .iter()
            .fold(0u64, |acc, i| acc.saturating_add(i.quantity))
    }

    /// Items whose warehouse has not shipped yet.
    pub fn unshipped_items(&self) -> Vec<ReservationItem> {
        self.items
            .iter()
            .filter(|i| !self.shipped_from.contains(&i.warehouse))
            .cloned()
            .collect()
    }

    /// Move to the state `event` leads to, recording it in `path`.
    pub fn step(&mut self, event: ReservationEvent, now: Timestamp) -> OmsResult<()> {
        let next = self.status.next(event)?;
        self.enter(next, now);
        Ok(())
    }

    pub(crate) fn enter(&mut self, next: ReservationStatus, now: Timestamp) {
        self.status = next;
        self.path.push(next);
        self.updated_at = now;
    }

    /// `ReservationClosed` naming the current state.
    pub fn closed_error(&self) -> OmsError {
        OmsError::ReservationClosed {
            id: self.id.to_string(),
            state: self.status.as_str().into(),
        }
    }

    /// `ReservationExpired` for this reservation.
    pub fn expired_error(&self) -> OmsError {
        OmsError::ReservationExpired {
            id: self.id.to_string(),
        }
    }

    /// The first requested line not fully covered by `items`, as `InsufficientStock`
    /// (warehouse `*` for a spread line); `None` when everything is covered.
    pub fn shortfall(&self) -> Option<OmsError> {
        let mut offered: Vec<ReservationItem> = self.items.clone();
        for line in &self.requested {
            let mut got = 0u64;
            for wh in line.warehouses() {
                for item in offered
                    .iter_mut()
                    .filter(|i| &i.sku == line.sku() && &i.warehouse == wh)
                {
                    let take = item.quantity.min(line.quantity() - got);
                    item.quantity -= take;
                    got += take;
                }
            }
            if got < line.quantity() {
                let warehouse = match line {
                    RequestLine::Exact(item) => item.warehouse.to_string(),
                    RequestLine::Spread { .. } => "*".into(),
                };
                return Some(OmsError::InsufficientStock {
                    sku: line.sku().to_string(),
                    warehouse,
                    requested: line.quantity(),
                    available: got,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(s: &str) -> Sku {
        Sku::new(s).unwrap()
    }
    fn wh(s: &str) -> WarehouseId {
        WarehouseId::new(s).unwrap()
    }

    #[test]
    fn request_lines_are_tagged_in_json_and_plain_in_binary_formats() {
        let exact = RequestLine::Exact(ReservationItem::new(sku("A"), wh("WH1"), 2));
        let spread = RequestLine::Spread {
            sku: sku("B"),
            quantity: 3,
            warehouses: vec![wh("WH2"), wh("WH1")],
        };
        assert_eq!(
            serde_json::to_value(&exact).unwrap(),
            serde_json::json!({"kind": "exact", "sku": "A", "warehouse": "WH1", "quantity": 2})
        );
        assert_eq!(
            serde_json::to_value(&spread).unwrap(),
            serde_json::json!({"kind": "spread", "sku": "B", "quantity": 3,
                               "warehouses": ["WH2", "WH1"]})
        );
        for line in [exact, spread] {
            let json = serde_json::to_string(&line).unwrap();
            assert_eq!(serde_json::from_str::<RequestLine>(&json).unwrap(), line);
            let bytes = postcard::to_stdvec(&line).unwrap();
            assert!(bytes.len() < json.len());
            assert_eq!(postcard::from_bytes::<RequestLine>(&bytes).unwrap(), line);
        }
        // an unknown kind is refused, not guessed
        assert!(serde_json::from_str::<RequestLine>(r#"{"kind":"some","sku":"A"}"#).is_err());
    }

    #[test]
    fn every_status_has_exactly_the_table_moves() {
        let events = [
            E::QueryInventory,
            E::AllInStock,
            E::Partial,
            E::NoneAvailable,
            E::BeginReservation,
            E::ReservationSuccess,
            E::NotifyCustomer,
            E::OfferPartial,
            E::AcceptPartial,
            E::DeclinePartial,
            E::Commit,
            E::Release,
            E::Deallocate,
            E::Ship,
        ];
        let mut allowed = 0;
        for from in S::ALL {
            for ev in events {
                let in_table = EDGES.iter().any(|e| {
                    e.from == N::Status(from) && e.event == Some(ev) && matches!(e.to, N::Status(_))
                });
                assert_eq!(from.next(ev).is_ok(), in_table, "{from} {ev:?}");
                allowed += usize::from(in_table);
                if !in_table {
                    assert_eq!(from.next(ev).unwrap_err().code(), "invalid_transition");
                }
            }
        }
        // 13 status→status edges carry an event; the join's success edge is taken by the join.
        assert_eq!(allowed, 13);
        for s in [S::Failed, S::Shipped, S::Released] {
            assert!(EDGES.iter().all(|e| e.from != N::Status(s)), "{s} is final");
        }
    }

    #[test]
    fn join_needs_every_branch() {
        assert_eq!(S::Reserved.fork().unwrap_err().code(), "invalid_transition");
        for missing in ReservingBranch::ALL {
            let mut join = S::Reserving.fork().unwrap();
            for b in ReservingBranch::ALL {
                if b != missing {
                    join.complete(b);
                }
            }
            assert_eq!(join.pending(), vec![missing]);
            assert_eq!(join.finish().unwrap_err().code(), "guard_failed");
        }
        let mut join = S::Reserving.fork().unwrap();
        for b in ReservingBranch::ALL {
            join.complete(b);
        }
        assert_eq!(join.finish().unwrap(), S::Reserved);
    }

    #[test]
    fn names_round_trip() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(S::parse("nope"), None);
    }

    #[test]
    fn spread_takes_warehouses_in_order() {
        assert_eq!(
            spread_quantity(4, &[1, 0, 2, 9]),
            (vec![(0, 1), (2, 2), (3, 1)], 0)
        );
        assert_eq!(spread_quantity(4, &[]), (vec![], 4));
        assert_eq!(spread_quantity(0, &[3]), (vec![], 0));
    }

    #[test]
    fn request_validation() {
        let ok = ReservationRequest::new(1).item(sku("A"), wh("W"), 1);
        assert!(ok.validate().is_ok());
        let code = |r: ReservationRequest| r.validate().unwrap_err().code();
        assert_eq!(code(ReservationRequest::new(1)), "missing_field");
        assert_eq!(
            code(ReservationRequest::new(1).item(sku("A"), wh("W"), 0)),
            "invalid_quantity"
        );
        assert_eq!(
            code(ReservationRequest::new(1).item(sku("A"), wh("W"), 1_000_001)),
            "invalid_quantity"
        );
        assert_eq!(
            code(ReservationRequest::new(1).spread(sku("A"), 1, vec![])),
            "missing_field"
        );
        assert_eq!(
            code(ReservationRequest::new(1).spread(sku("A"), 1, vec![wh("W"), wh("W")])),
            "invalid_field"
        );
        assert_eq!(code(ok.clone().with_ttl(Duration(0))), "invalid_field");
        assert!(ok.with_ttl(Duration::minutes(1)).validate().is_ok());
    }

    #[test]
    fn shortfall_names_the_first_short_line() {
        let mut r = Reservation {
            id: 7,
            order_id: 1,
            requested: ReservationRequest::new(1)
                .item(sku("A"), wh("W1"), 2)
                .spread(sku("B"), 3, vec![wh("W1"), wh("W2")])
                .lines,
            items: vec![
                ReservationItem::new(sku("A"), wh("W1"), 2),
                ReservationItem::new(sku("B"), wh("W2"), 1),
            ],
            status: S::AwaitingCustomerDecision,
            path: vec![],
            created_at: Timestamp(0),
            expires_at: Timestamp(10),
            ttl: Duration(10),
            release_reason: None,
            shipped_from: BTreeSet::new(),
            updated_at: Timestamp(0),
        };
        assert_eq!(
            r.shortfall(),
            Some(OmsError::InsufficientStock {
                sku: "B".into(),
                warehouse: "*".into(),
                requested: 3,
                available: 1
            })
        );
        r.items.push(ReservationItem::new(sku("B"), wh("W1"), 2));
        assert_eq!(r.shortfall(), None);
        assert!(r.is_expired(Timestamp(10)) && !r.is_expired(Timestamp(9)));
        assert_eq!(r.total_units(), 5);
    }
}
