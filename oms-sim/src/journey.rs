//! The run: orders placed on a simulated clock, later stages scheduled on an agenda, and the
//! invariant checks at the end.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use oms_core::error::{OmsError, OmsResult};
use oms_core::events::Event;
use oms_core::fraud::InMemoryFraudSignals;
use oms_core::fulfillment::FulfillmentStatus;
use oms_core::inventory::{InventoryStore, ReservationStatus, StockRow};
use oms_core::lifecycle::{Actor, OrderStatus};
use oms_core::metrics::{AlertThresholds, MetricsSnapshot};
use oms_core::money::{Currency, Money};
use oms_core::order::{Address, LineItemInput, Order, OrderDraft};
use oms_core::payment::{FakeGateway, FakeStep, GatewayOp, SeededJitter};
use oms_core::pricing::charged_total;
use oms_core::service::{
    CarrierUpdate, Dependencies, Notification, Notifier, OrderService, PaymentInput, ServiceConfig,
};
use oms_core::store::{pages, OrderStore};
use oms_core::time::{Clock, Duration, IdGenerator, ManualClock, SequentialIds, Timestamp};
use oms_core::Text;

use crate::digest::{Digest, DigestError};
use crate::prefetch::read_ahead;
use crate::rng::Rng;
use crate::world::{generate, World};
use crate::{BackendFactory, SimConfig};

/// Units in and out, summed over every SKU and warehouse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StockTotals {
    /// On hand before the first order.
    pub initial: u64,
    /// Received during the run.
    pub received: u64,
    /// Handed to carriers.
    pub shipped: u64,
    /// Returned in sellable condition.
    pub restocked: u64,
    /// Returned damaged (kept out of on-hand).
    pub damaged: u64,
    /// On hand at the end.
    pub final_on_hand: u64,
}

/// Money in and out, in minor units of USD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MoneyTotals {
    /// Captured by the gateway.
    pub captured: i64,
    /// Refunded by the gateway.
    pub refunded: i64,
    /// What the orders say they net: charges of captured orders minus processed refunds.
    pub net_charges: i64,
}

/// The checks run at the end; `violations` lists every failure in words.
// Five independent verdicts of a report, not an encoded state: separate bools are the honest shape.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Invariants {
    /// `initial + received − shipped + restocked == final on hand`, and every ledger row
    /// consistent with `available >= 0`.
    pub stock_conserved: bool,
    /// `captured − refunded == net charges`, and the gateway's ledger equals the payments'.
    pub money_conserved: bool,
    /// `refunded <= captured <= authorized` on every payment, nothing captured twice.
    pub payments_bounded: bool,
    /// Every event once per (order, version, name), and every version announced.
    pub events_complete: bool,
    /// Every order in a terminal or valid resting state.
    pub states_valid: bool,
    /// Every failure, in words (empty when all hold).
    pub violations: Vec<String>,
}

impl Invariants {
    /// True when every invariant holds.
    pub fn all_hold(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Sourcing cost of the run's orders under each strategy, in USD (decimal strings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AllocationSummary {
    /// Orders sourced.
    pub orders: u64,
    /// Total cost with the exact optimiser.
    pub optimal_cost: String,
    /// Total cost with the nearest-warehouse baseline.
    pub nearest_cost: String,
    /// Total cost with the priority-list baseline (what most platforms do).
    pub priority_cost: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// The seed used.
    pub seed: u64,
    /// Orders attempted.
    pub orders: usize,
    /// How journeys ended or what they met, by name.
    pub outcomes: BTreeMap<String, u64>,
    /// The seed 001 §10 dashboard at the end of the run.
    pub metrics: MetricsSnapshot,
    /// Stock flow.
    pub stock: StockTotals,
    /// Money flow.
    pub money: MoneyTotals,
    /// The invariant checks.
    pub invariants: Invariants,
    /// Orders created per simulated hour since the start.
    pub orders_per_hour: Vec<u64>,
    /// Simulated time covered, in hours.
    pub simulated_hours: u64,
    /// Outbox events written.
    pub events: usize,
    /// Customer notifications sent.
    pub notifications: u64,
    /// Digest of every order, event and stock row at the end (see `digest.rs`): equal for
    /// two runs exactly when they stored the same.
    pub digest: String,
    /// Sourcing cost of the run's orders: optimal against the greedy baselines.
    pub allocation: Option<AllocationSummary>,
}

/// The run's customer notifier: nothing reads the messages, so it counts them instead of
/// keeping every one for the whole run.
#[derive(Debug, Default)]
struct NotificationCount(AtomicU64);

impl NotificationCount {
    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Notifier for NotificationCount {
    fn notify(&self, _notification: &Notification) -> OmsResult<()> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Later stages of an order, scheduled on the agenda.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Task {
    Resume(u64),
    Review(u64),
    Fulfill(u64),
    Ship(u64),
    Transit(u64),
    Deliver(u64),
    Return(u64),
    Receive(u64),
}

struct Sim {
    svc: OrderService,
    orders: Arc<dyn OrderStore>,
    inventory: Arc<dyn InventoryStore>,
    gateway: Arc<FakeGateway>,
    signals: Arc<InMemoryFraudSignals>,
    notifications: Arc<NotificationCount>,
    clock: Arc<ManualClock>,
    rng: Rng,
    world: World,
    agenda: BTreeMap<(Timestamp, u64), Task>,
    seq: u64,
    outcomes: BTreeMap<String, u64>,
    received: u64,
    created_hours: Vec<u64>,
    start: Timestamp,
    /// Who placed each order, and the parcels it was packed into: what the warehouse and the
    /// customer know without asking the store again.
    customers: HashMap<u64, Text>,
    parcels: HashMap<u64, Vec<u64>>,
}

fn count(outcomes: &mut BTreeMap<String, u64>, what: &str) {
    *outcomes.entry(what.to_owned()).or_insert(0) += 1;
}

/// Run a simulation: generate the world from `config.seed`, build the stores with `backend`,
/// drive `config.orders` orders through the service, and check the invariants. `progress` is
/// called with the number of orders placed so far.
pub fn run(
    config: &SimConfig,
    backend: Box<BackendFactory<'_>>,
    progress: &mut dyn FnMut(usize),
) -> OmsResult<SimReport> {
    let mut rng = Rng::new(config.seed);
    let world = generate(&mut rng, config.orders)?;
    let ids: Arc<dyn IdGenerator> = Arc::new(SequentialIds::default());
    let stores = backend(ids.clone())?;
    let clock = Arc::new(ManualClock::new(config.start));
    let gateway = Arc::new(FakeGateway::honouring_keys());
    let signals = Arc::new(InMemoryFraudSignals::new());
    for s in world.shoppers.iter().filter(|s| s.risky) {
        if s.customer.id.ends_with('0') {
            signals.blacklist(&Address::new(&s.address)?);
        }
        signals.flag_device(&s.device);
    }
    let mut initial = 0;
    for wh in &world.warehouses {
        stores.inventory.add_warehouse(&wh.id)?;
        for (i, units) in &wh.stock {
            stores
                .inventory
                .receive(&world.catalog[*i].sku, &wh.id, *units)?;
            initial += units;
        }
    }
    let mut svc_config = ServiceConfig::new(
        world.warehouses.iter().map(|w| w.id.clone()).collect(),
        world.pricing.clone(),
    );
    svc_config.flow = config.flow;
    // Reserve where the optimal sourcing plan takes stock: parcel 8, 0.50 + 0.01/km per unit.
    svc_config.sourcing = Some(oms_core::service::SourcingNetwork {
        sites: world
            .warehouses
            .iter()
            .map(|w| {
                Ok(oms_core::service::Site {
                    warehouse: w.id.clone(),
                    location: oms_core::order::GeoPoint::new(w.location.0, w.location.1)?,
                    parcel_cost: rust_decimal::Decimal::new(8, 0),
                    item_cost: BTreeMap::new(),
                })
            })
            .collect::<OmsResult<_>>()?,
        shipping: oms_core::allocation::ShippingRates {
            base_per_unit: rust_decimal::Decimal::new(5, 1),
            per_unit_km: rust_decimal::Decimal::new(1, 2),
        },
    });
    svc_config.capture = config.capture;
    let notifications = Arc::new(NotificationCount::default());
    let deps = Dependencies {
        orders: stores.orders.clone(),
        inventory: stores.inventory.clone(),
        gateway: gateway.clone(),
        fraud: signals.clone(),
        notifier: notifications.clone(),
        clock: clock.clone(),
        ids,
        pause: clock.clone(),
        jitter: Arc::new(SeededJitter { seed: config.seed }),
    };
    let mut sim = Sim {
        svc: OrderService::new(deps, svc_config)?,
        orders: stores.orders,
        inventory: stores.inventory,
        gateway,
        signals,
        notifications,
        clock,
        rng,
        world,
        agenda: BTreeMap::new(),
        seq: 0,
        outcomes: BTreeMap::new(),
        received: 0,
        created_hours: Vec::new(),
        start: config.start,
        customers: HashMap::new(),
        parcels: HashMap::new(),
    };
    let group = config.orders_per_commit;
    if group > 0 {
        sim.orders.begin_batch()?;
    }
    for i in 0..config.orders {
        if group > 0 && i > 0 && i % group == 0 {
            sim.orders.commit_batch()?;
            sim.orders.begin_batch()?;
        }
        sim.clock.advance(Duration::seconds(
            i64::try_from(sim.rng.range(20, 600)).unwrap_or(60),
        ));
        sim.run_due()?;
        if i % 10 == 0 {
            sim.expire()?;
        }
        if i % 500 == 499 {
            sim.restock()?;
        }
        sim.place()?;
        if i % 100 == 99 || i + 1 == config.orders {
            progress(i + 1);
        }
    }
    // Let every scheduled stage happen, then let abandoned payments expire.
    while let Some((&(at, _), _)) = sim.agenda.iter().next() {
        if at > sim.clock.now() {
            sim.clock.set(at);
        }
        sim.run_due()?;
    }
    sim.clock.advance(Duration::hours(1));
    sim.expire()?;
    if group > 0 {
        sim.orders.commit_batch()?;
    }
    sim.finish(config, initial)
}

impl Sim {
    fn schedule(&mut self, after: Duration, task: Task) {
        self.seq += 1;
        self.agenda
            .insert((self.clock.now().plus(after), self.seq), task);
    }

    fn run_due(&mut self) -> OmsResult<()> {
        let now = self.clock.now();
        while let Some((&key, &task)) = self.agenda.iter().next() {
            if key.0 > now {
                break;
            }
            self.agenda.remove(&key);
            self.step(task)?;
        }
        Ok(())
    }

    fn expire(&mut self) -> OmsResult<()> {
        for e in self.svc.expire_reservations()? {
            if e.cancelled {
                count(&mut self.outcomes, "abandoned_payment_expired");
            }
        }
        Ok(())
    }

    /// A delivery truck: top up the popular half of the catalog at the first warehouse stocking it.
    fn restock(&mut self) -> OmsResult<()> {
        for i in 0..self.world.catalog.len() / 2 {
            if let Some(wh) = self
                .world
                .warehouses
                .iter()
                .find(|w| w.stock.iter().any(|(s, _)| *s == i))
            {
                let units = self.rng.range(5, 40);
                self.inventory
                    .receive(&self.world.catalog[i].sku, &wh.id, units)?;
                self.received += units;
            }
        }
        Ok(())
    }

    /// Place one order with the gateway scripted for a realistic mix of answers.
    fn place(&mut self) -> OmsResult<()> {
        let shopper =
            self.world.shoppers[self.rng.below(self.world.shoppers.len() as u64) as usize].clone();
        let n_lines = self.rng.range(1, 4);
        let mut lines: Vec<LineItemInput> = Vec::new();
        for _ in 0..n_lines {
            let p = &self.world.catalog[self.rng.skewed(self.world.catalog.len())];
            if lines.iter().any(|l| l.sku == p.sku.as_str()) {
                continue;
            }
            let mut l = LineItemInput::new(
                p.sku.as_str(),
                i64::try_from(self.rng.range(1, 3)).unwrap_or(1),
                p.price,
            );
            l.tax_class.clone_from(&p.tax_class);
            l.weight_grams = p.weight_grams;
            l.capacity_units = p.capacity_units;
            lines.push(l);
        }
        let promo_codes = if self.rng.chance(150) {
            vec![self.world.promo_codes
                [self.rng.below(self.world.promo_codes.len() as u64) as usize]
                .clone()]
        } else {
            vec![]
        };
        let draft = OrderDraft {
            customer: shopper.customer.clone(),
            shipping_address: shopper.address.clone(),
            billing_address: None,
            currency: Currency::USD,
            lines,
            promo_codes,
        };
        let roll = self.rng.below(1000);
        let step = match roll {
            0..=39 => Some(FakeStep::Decline),
            40..=64 => Some(FakeStep::TimeoutAfterSuccess),
            65..=79 => Some(FakeStep::TimeoutNothingBehind),
            80..=94 => Some(FakeStep::DuplicateResponse),
            _ => None,
        };
        if let Some(s) = &step {
            self.gateway.script([s.clone()]);
        }
        // Sometimes the gateway's status endpoint is down too: the answer stays unknown.
        let lookups_down = step.is_some() && self.rng.chance(300);
        if lookups_down {
            self.gateway.time_out_lookups(50);
        }
        let payment = PaymentInput {
            method: shopper.card.clone(),
            device: Some(shopper.device.clone()),
        };
        let key = format!("checkout-{}", self.created_hours.len() + 1);
        let result = self.svc.create_order(
            &draft,
            &payment,
            &Actor::Customer(shopper.customer.id.as_str().into()),
            Some(&key),
        );
        self.gateway.clear_script();
        self.gateway.time_out_lookups(0);
        let now = self.clock.now();
        let hour = u64::try_from(now.since(self.start).millis() / 3_600_000).unwrap_or(0);
        self.created_hours.push(hour);
        match result {
            Ok(order) => {
                self.customers
                    .insert(order.id, shopper.customer.id.as_str().into());
                let address = Address::new(&shopper.address)?;
                self.signals.record_order(
                    &shopper.customer.id,
                    Some(&shopper.device),
                    &address,
                    now,
                );
                match order.status {
                    OrderStatus::Confirmed => {
                        count(&mut self.outcomes, "confirmed");
                        self.schedule(Duration::minutes(30), Task::Fulfill(order.id));
                    }
                    OrderStatus::OnHold => {
                        count(&mut self.outcomes, "held_for_review");
                        self.schedule(Duration::hours(2), Task::Review(order.id));
                    }
                    OrderStatus::PaymentPending => {
                        if self.rng.chance(500) {
                            count(&mut self.outcomes, "payment_unknown_resumed");
                            self.schedule(Duration::minutes(5), Task::Resume(order.id));
                        } else {
                            count(&mut self.outcomes, "payment_unknown_abandoned");
                        }
                    }
                    other => count(&mut self.outcomes, &format!("created_{other}")),
                }
            }
            Err(e) => count(&mut self.outcomes, e.code()),
        }
        Ok(())
    }

    fn step(&mut self, task: Task) -> OmsResult<()> {
        let staff = Actor::Staff(Text::from_static("ops"));
        match task {
            Task::Resume(id) => match self.svc.resume_payment(id, &Actor::System) {
                Ok(o) if o.status == OrderStatus::Confirmed => {
                    self.schedule(Duration::minutes(30), Task::Fulfill(id));
                }
                Ok(o) if o.status == OrderStatus::OnHold => {
                    self.schedule(Duration::hours(2), Task::Review(id));
                }
                Ok(_) => {}
                Err(e) => count(&mut self.outcomes, &format!("resume_{}", e.code())),
            },
            Task::Review(id) => {
                if self.rng.chance(600) {
                    self.svc
                        .approve_review(id, &staff, "verified by phone", None)?;
                    count(&mut self.outcomes, "review_approved");
                    self.schedule(Duration::minutes(30), Task::Fulfill(id));
                } else {
                    self.svc
                        .reject_review(id, &staff, "could not verify", None)?;
                    count(&mut self.outcomes, "review_rejected");
                }
            }
            Task::Fulfill(id) => {
                if self.rng.chance(30) {
                    self.svc
                        .cancel_order(id, &self.customer_of(id)?, "changed my mind", None)?;
                    count(&mut self.outcomes, "cancelled_before_packing");
                    return Ok(());
                }
                let mut order = self.svc.request_fulfillment(id, &staff, None)?;
                for i in 0..order.shipments.len() {
                    let sid = order.shipments[i].id();
                    let scans: Vec<String> = order.shipments[i]
                        .lines()
                        .iter()
                        .flat_map(|(sku, q)| {
                            std::iter::repeat_n(sku.as_str().to_owned(), *q as usize)
                        })
                        .collect();
                    self.svc
                        .record_pick(id, sid, "picker", &scans, &staff, None)?;
                    order = self.svc.record_pack(id, sid, None, &staff, None)?;
                }
                if self.rng.chance(20) {
                    match self
                        .svc
                        .cancel_order(id, &self.customer_of(id)?, "too late?", None)
                    {
                        Err(e) if e.code() == "not_cancellable" => {
                            count(&mut self.outcomes, "cancel_refused_after_packing");
                        }
                        other => {
                            return other.map(drop).and(Err(OmsError::Storage {
                                reason: "cancel after packing was accepted".into(),
                            }))
                        }
                    }
                }
                if order.shipments.len() > 1 {
                    count(&mut self.outcomes, "split_shipments");
                }
                self.parcels.insert(
                    id,
                    order
                        .shipments
                        .iter()
                        .map(oms_core::fulfillment::Shipment::id)
                        .collect(),
                );
                // A few parcels wait in the warehouse past the 7-day payment hold.
                let wait = if self.rng.chance(10) {
                    Duration::days(8)
                } else {
                    Duration::hours(2)
                };
                self.schedule(wait, Task::Ship(id));
            }
            Task::Ship(id) => {
                for sid in self.parcels_of(id)? {
                    self.svc.notify_shipped(id, sid, &staff, None)?;
                }
                self.schedule(Duration::hours(3), Task::Transit(id));
            }
            Task::Transit(id) => {
                for sid in self.parcels_of(id)? {
                    self.svc
                        .update_shipment(id, sid, CarrierUpdate::InTransit, &staff, None)?;
                }
                self.schedule(Duration::hours(20), Task::Deliver(id));
            }
            Task::Deliver(id) => {
                let mut last = None;
                for sid in self.parcels_of(id)? {
                    if self.rng.chance(10) {
                        self.gateway.script([FakeStep::CaptureFailure]);
                    }
                    last = Some(self.svc.update_shipment(
                        id,
                        sid,
                        CarrierUpdate::Delivered,
                        &staff,
                        None,
                    )?);
                    self.gateway.clear_script();
                }
                let order = match last {
                    Some(order) => order,
                    None => self.orders.order(id)?,
                };
                if order
                    .payments
                    .iter()
                    .any(|p| p.status() == oms_core::payment::PaymentStatus::CaptureFailed)
                {
                    count(&mut self.outcomes, "capture_failed");
                }
                if order
                    .payments
                    .iter()
                    .any(|p| p.status() == oms_core::payment::PaymentStatus::Expired)
                {
                    count(&mut self.outcomes, "authorization_expired");
                }
                count(&mut self.outcomes, "delivered");
                let paid = order.payments.iter().any(|p| !p.captured().is_zero());
                if paid && self.rng.chance(80) {
                    self.schedule(Duration::days(2), Task::Return(id));
                }
            }
            Task::Return(id) => {
                let order = self.orders.order(id)?;
                let line = &order.lines[self.rng.below(order.lines.len() as u64) as usize];
                let qty = i64::try_from(self.rng.range(1, u64::from(line.quantity))).unwrap_or(1);
                let order = self.svc.request_return(
                    id,
                    &[(line.line_id, qty)],
                    &self.customer_of(id)?,
                    None,
                )?;
                let rid = order.returns[order.returns.len() - 1].id();
                if self.rng.chance(750) {
                    self.svc
                        .approve_return(id, rid, self.rng.chance(200), &staff, None)?;
                    self.schedule(Duration::days(3), Task::Receive(id));
                } else {
                    self.svc
                        .reject_return(id, rid, "outside the policy", &staff, None)?;
                    count(&mut self.outcomes, "return_rejected");
                }
            }
            Task::Receive(id) => {
                let order = self.orders.order(id)?;
                let rid = order.returns[order.returns.len() - 1].id();
                let ok = self.rng.chance(850);
                self.svc.receive_return(
                    id,
                    rid,
                    ok,
                    if ok { "" } else { "damaged in transit" },
                    &staff,
                    None,
                )?;
                count(
                    &mut self.outcomes,
                    if ok {
                        "return_refunded"
                    } else {
                        "return_damaged"
                    },
                );
            }
        }
        Ok(())
    }

    /// Source up to 200 of the run's orders from the world's initial stock with each strategy
    /// (item cost 0, parcel 8, 0.5 + 0.01·km per unit), one order at a time against fresh
    /// stock, and total the costs: what the optimiser saves over the greedy baselines.
    fn sourcing_costs(&self, orders: &[Order]) -> OmsResult<AllocationSummary> {
        use oms_core::allocation::{
            allocate, AllocationOptions, AllocationOrder, AllocationProblem, OrderLine,
            ShippingRates, Sla, Strategy, Warehouse,
        };
        use oms_core::order::GeoPoint;
        let warehouses: Vec<Warehouse> = self
            .world
            .warehouses
            .iter()
            .map(|w| {
                Ok(Warehouse {
                    id: w.id.as_str().to_owned(),
                    location: GeoPoint::new(w.location.0, w.location.1)?,
                    stock: w
                        .stock
                        .iter()
                        .map(|(i, units)| {
                            (
                                self.world.catalog[*i].sku.clone(),
                                u32::try_from(*units).unwrap_or(u32::MAX),
                            )
                        })
                        .collect(),
                    item_cost: BTreeMap::new(),
                    parcel_cost: rust_decimal::Decimal::new(8, 0),
                    parcel_capacity: None,
                })
            })
            .collect::<OmsResult<_>>()?;
        let shipping = ShippingRates {
            base_per_unit: rust_decimal::Decimal::new(5, 1),
            per_unit_km: rust_decimal::Decimal::new(1, 2),
        };
        let options = AllocationOptions {
            allow_partial: true,
            ..AllocationOptions::default()
        };
        let mut totals = [rust_decimal::Decimal::ZERO; 3];
        let mut n = 0;
        for o in orders
            .iter()
            .filter(|o| !o.shipments.is_empty())
            .take(SOURCING_SAMPLE)
        {
            let Some(location) = o.shipping_address.location else {
                continue;
            };
            let order = AllocationOrder {
                id: o.number.to_string(),
                customer_location: location,
                sla: Sla::Standard,
                lines: o
                    .lines
                    .iter()
                    .map(|l| OrderLine {
                        sku: l.sku.clone(),
                        quantity: l.quantity,
                        capacity: l.capacity_units,
                    })
                    .collect(),
            };
            let problem = AllocationProblem {
                warehouses: warehouses.clone(),
                drivers: vec![],
                orders: vec![order],
                shipping: shipping.clone(),
            };
            for (slot, strategy) in [Strategy::Optimal, Strategy::Nearest, Strategy::Priority]
                .into_iter()
                .enumerate()
            {
                totals[slot] += allocate(&problem, strategy, &options)?.total_cost;
            }
            n += 1;
        }
        Ok(AllocationSummary {
            orders: n,
            optimal_cost: totals[0].round_dp(2).to_string(),
            nearest_cost: totals[1].round_dp(2).to_string(),
            priority_cost: totals[2].round_dp(2).to_string(),
        })
    }

    fn customer_of(&self, id: u64) -> OmsResult<Actor> {
        Ok(Actor::Customer(match self.customers.get(&id) {
            Some(customer) => customer.clone(),
            None => self.orders.order(id)?.customer.id,
        }))
    }

    /// The parcels `id` was packed into, in shipment order.
    fn parcels_of(&self, id: u64) -> OmsResult<Vec<u64>> {
        Ok(match self.parcels.get(&id) {
            Some(parcels) => parcels.clone(),
            None => self
                .orders
                .order(id)?
                .shipments
                .iter()
                .map(oms_core::fulfillment::Shipment::id)
                .collect(),
        })
    }

    /// Check the world and build the report: the orders a page at a time (so memory does not
    /// grow with the size of the book) while the outbox is drained beside them, then the stock
    /// rows.
    fn finish(self, config: &SimConfig, initial: u64) -> OmsResult<SimReport> {
        let mut inv = Invariants::default();
        let mut digest = Digest::default();
        let mut stock = StockTotals {
            initial,
            received: self.received,
            ..StockTotals::default()
        };
        let mut money = MoneyTotals::default();
        let (mut v_money, mut v_payments, mut v_states) = (Vec::new(), Vec::new(), Vec::new());
        let mut versions: Vec<(u64, u64, Text)> = Vec::new();
        let mut sample: Vec<Order> = Vec::new();
        let mut metrics = self.svc.metrics_tally();
        let store = self.orders.as_ref();
        let inventory = self.inventory.as_ref();
        // The two reads share nothing until the end, so each runs on its own thread (and the
        // outbox's digest is mixed into the orders' as one word).
        let (outbox, orders) = std::thread::scope(|scope| {
            let outbox = scope.spawn(|| drain_outbox(store));
            let orders = read_ahead(
                {
                    let mut book = pages(store);
                    move || book.next().transpose()
                },
                |page| {
                    for o in &page {
                        stock_of_order(o, &mut stock);
                        money_of_order(o, &mut money, &mut v_money)?;
                        payments_of_order(o, &mut v_payments);
                        state_of_order(o, inventory, &mut v_states)?;
                        versions.push((o.id, o.version, o.number.clone()));
                        metrics.add(o);
                        digest.value(o)?;
                    }
                    if sample.len() < SOURCING_SAMPLE {
                        sample.extend(
                            page.iter()
                                .filter(|o| !o.shipments.is_empty())
                                .take(SOURCING_SAMPLE - sample.len())
                                .cloned(),
                        );
                    }
                    Ok(())
                },
            );
            let outbox = outbox.join().unwrap_or_else(|_| {
                Err(OmsError::Storage {
                    reason: "the thread reading the outbox panicked".into(),
                })
            });
            (outbox, orders)
        });
        orders?;
        let (events, outbox_digest) = outbox?;
        digest.word(outbox_digest.finish());
        let levels = self.inventory.levels()?;
        check_stock(&levels, &mut stock, &mut inv.violations);
        inv.violations.extend(v_money);
        check_money(&money, &self.gateway, &mut inv.violations);
        inv.violations.extend(v_payments);
        let event_count = events.count;
        events.check(&versions, &mut inv.violations);
        inv.violations.extend(v_states);
        let has = |prefix: &str, v: &[String]| v.iter().any(|x| x.starts_with(prefix));
        inv.stock_conserved = !has("stock", &inv.violations);
        inv.money_conserved = !has("money", &inv.violations);
        inv.payments_bounded = !has("payment", &inv.violations);
        inv.events_complete = !has("event", &inv.violations);
        inv.states_valid = !has("state", &inv.violations);
        let allocation = Some(self.sourcing_costs(&sample)?);
        let metrics = self
            .svc
            .metrics_of_tally(metrics, &AlertThresholds::default())?;
        let hours =
            u64::try_from(self.clock.now().since(self.start).millis() / 3_600_000).unwrap_or(0);
        let mut per_hour = vec![0u64; usize::try_from(hours + 1).unwrap_or(1)];
        for h in &self.created_hours {
            if let Some(slot) = per_hour.get_mut(usize::try_from(*h).unwrap_or(usize::MAX)) {
                *slot += 1;
            }
        }
        for row in &levels {
            digest.value(row)?;
        }
        Ok(SimReport {
            seed: config.seed,
            orders: config.orders,
            outcomes: self.outcomes,
            metrics,
            stock,
            money,
            invariants: inv,
            orders_per_hour: per_hour,
            simulated_hours: hours,
            events: event_count,
            notifications: self.notifications.count(),
            digest: format!("{:016x}", digest.finish()),
            allocation,
        })
    }
}

/// A digest that could not be taken, as the error the run reports.
impl From<DigestError> for OmsError {
    fn from(e: DigestError) -> OmsError {
        OmsError::Storage {
            reason: e.to_string(),
        }
    }
}

/// Drain the outbox as a publisher would (read, acknowledge, read on), tallying every event
/// and taking the digest of all of them in order.
fn drain_outbox(store: &dyn OrderStore) -> OmsResult<(EventTally, Digest)> {
    let mut events = EventTally::default();
    let mut digest = Digest::default();
    let next_events = || {
        let batch = store.pending_events(10_000)?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            return Ok(None);
        };
        store.ack_events(last)?;
        Ok(Some(batch))
    };
    read_ahead(next_events, |batch| {
        for e in &batch {
            events.add(e);
            digest.value(e)?;
        }
        Ok(())
    })?;
    Ok((events, digest))
}

/// Orders whose sourcing is compared with the nearest-warehouse and priority baselines.
const SOURCING_SAMPLE: usize = 200;

/// One order's units shipped, restocked and written off by returns.
fn stock_of_order(o: &Order, t: &mut StockTotals) {
    for s in &o.shipments {
        if s.status() >= FulfillmentStatus::HandedToCarrier
            && s.status() != FulfillmentStatus::Cancelled
        {
            t.shipped += s.lines().iter().map(|(_, q)| u64::from(*q)).sum::<u64>();
        }
    }
    for r in &o.returns {
        let units: u64 = r.lines().iter().map(|l| u64::from(l.quantity)).sum();
        match r.order_status() {
            OrderStatus::Refunded => t.restocked += units,
            OrderStatus::Completed => t.damaged += units,
            _ => {}
        }
    }
}

/// Every stock row consistent, units conserved, damaged units matching damaged returns.
fn check_stock(levels: &[StockRow], t: &mut StockTotals, v: &mut Vec<String>) {
    let mut damaged = 0;
    for row in levels {
        if !row.level.is_consistent() {
            v.push(format!(
                "stock row {} at {} inconsistent: {:?}",
                row.sku, row.warehouse, row.level
            ));
        }
        t.final_on_hand += row.level.on_hand;
        damaged += row.level.damaged;
    }
    let expected = (t.initial + t.received + t.restocked).checked_sub(t.shipped);
    if expected != Some(t.final_on_hand) {
        v.push(format!("stock not conserved: initial {} + received {} − shipped {} + restocked {} ≠ on hand {}", t.initial, t.received, t.shipped, t.restocked, t.final_on_hand));
    }
    if damaged != t.damaged {
        v.push(format!(
            "stock damaged bucket {damaged} ≠ damaged returns {}",
            t.damaged
        ));
    }
}

/// One order's payments against what its lines, refunds and returns say it was charged.
fn money_of_order(o: &Order, t: &mut MoneyTotals, v: &mut Vec<String>) -> OmsResult<()> {
    let cap: Money = Money::checked_sum(
        o.currency,
        &o.payments
            .iter()
            .map(oms_core::payment::Payment::captured)
            .collect::<Vec<_>>(),
    )?;
    let refd: Money = Money::checked_sum(
        o.currency,
        &o.payments
            .iter()
            .map(oms_core::payment::Payment::refunded)
            .collect::<Vec<_>>(),
    )?;
    t.captured += cap.to_minor()?;
    t.refunded += refd.to_minor()?;
    let processed: Money = Money::checked_sum(
        o.currency,
        &o.returns
            .iter()
            .filter(|r| r.order_status() == OrderStatus::Refunded)
            .filter_map(|r| r.refund().map(|p| p.total))
            .collect::<Vec<_>>(),
    )?;
    let charge = if cap.is_zero() {
        Money::zero(o.currency)
    } else {
        charged_total(o)?
    };
    let net = charge.checked_sub(&processed)?;
    if cap.checked_sub(&refd)? != net {
        v.push(format!(
            "money: order {} nets {} but its charges say {}",
            o.number,
            cap.checked_sub(&refd)?,
            net
        ));
    }
    t.net_charges += net.to_minor()?;
    Ok(())
}

/// The gateway's totals against the payments', and money conserved over the book.
fn check_money(t: &MoneyTotals, gateway: &FakeGateway, v: &mut Vec<String>) {
    let (captured, refunded) = (t.captured, t.refunded);
    if gateway.total(GatewayOp::Capture) != captured {
        v.push(format!(
            "money: gateway captured {} but payments say {captured}",
            gateway.total(GatewayOp::Capture)
        ));
    }
    if gateway.total(GatewayOp::Refund) != refunded {
        v.push(format!(
            "money: gateway refunded {} but payments say {refunded}",
            gateway.total(GatewayOp::Refund)
        ));
    }
    if captured - refunded != t.net_charges {
        v.push(format!(
            "money not conserved: captured {captured} − refunded {refunded} ≠ net charges {}",
            t.net_charges
        ));
    }
}

/// Every payment of one order within its buckets.
fn payments_of_order(o: &Order, v: &mut Vec<String>) {
    for p in &o.payments {
        if let Err(e) = p.check_invariants() {
            v.push(format!("payment {} of {}: {e}", p.id(), o.number));
        }
    }
}

/// What the outbox held: per order, the (version, name) of each of its events as they arrived;
/// checked once everything is in.
#[derive(Default)]
struct EventTally {
    count: usize,
    /// Event names, numbered as first seen, so the lists below hold numbers, not strings.
    numbers: BTreeMap<String, u32>,
    names: Vec<String>,
    /// Each order's events as (version, name number), in arrival order.
    per_order: HashMap<u64, Vec<(u64, u32)>, BuildIdHasher>,
}

impl EventTally {
    fn add(&mut self, e: &Event) {
        self.count += 1;
        // Looked up before inserting: most names are known, and a key costs a copy.
        let name = if let Some(n) = self.numbers.get(&e.name) {
            *n
        } else {
            let next = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
            self.numbers.insert(e.name.clone(), next);
            self.names.push(e.name.clone());
            next
        };
        self.per_order
            .entry(e.order_id)
            .or_default()
            .push((e.version, name));
    }

    /// Events published twice, then every order whose events do not cover versions 1 to its
    /// own; orders in `orders`' order.
    fn check(mut self, orders: &[(u64, u64, Text)], v: &mut Vec<String>) {
        let mut gaps = Vec::new();
        for (id, version, number) in orders {
            let Some(events) = self.per_order.get_mut(id) else {
                if *version != 0 {
                    gaps.push(format!(
                        "event versions of {number} are 0, expected 1..={version}"
                    ));
                }
                continue;
            };
            events.sort_unstable();
            for pair in events.windows(2) {
                if pair[0] == pair[1] {
                    let name = self
                        .names
                        .get(pair[0].1 as usize)
                        .map_or("?", String::as_str);
                    v.push(format!(
                        "event {name} v{} of order {id} published twice",
                        pair[0].0
                    ));
                }
            }
            let mut seen: Vec<u64> = events.iter().map(|(v, _)| *v).collect();
            seen.dedup();
            if !seen.iter().copied().eq(1..=*version) {
                gaps.push(format!(
                    "event versions of {number} are {}, expected 1..={version}",
                    seen.len()
                ));
            }
        }
        v.extend(gaps);
    }
}

/// Hashes an order id for the event tally: ids are distinct integers, so one multiplication
/// spreads them well enough, at a fraction of the default hasher's cost.
#[derive(Default, Clone, Copy)]
struct BuildIdHasher;

impl std::hash::BuildHasher for BuildIdHasher {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// See [`BuildIdHasher`].
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// One order at rest, and a cancelled one holding no stock.
fn state_of_order(o: &Order, inventory: &dyn InventoryStore, v: &mut Vec<String>) -> OmsResult<()> {
    let resting = o.status.is_terminal() || o.status == OrderStatus::Delivered;
    if !resting {
        v.push(format!("state: order {} left in {}", o.number, o.status));
    }
    if o.status == OrderStatus::Cancelled {
        for id in &o.reservations {
            let r = inventory.reservation(*id)?;
            if r.status != ReservationStatus::Released {
                v.push(format!(
                    "state: cancelled order {} still holds reservation {id} ({:?})",
                    o.number, r.status
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_core::inventory::{StockLevel, WarehouseId};
    use oms_core::order::Sku;

    fn row(on_hand: u64, reserved: u64, damaged: u64) -> StockRow {
        StockRow {
            sku: Sku::new("SKU-1").unwrap(),
            warehouse: WarehouseId::new("WH-1").unwrap(),
            level: StockLevel {
                on_hand,
                reserved,
                allocated: 0,
                damaged,
            },
        }
    }

    #[test]
    fn stock_that_is_not_conserved_is_reported() {
        let mut t = StockTotals {
            initial: 10,
            received: 5,
            shipped: 3,
            ..StockTotals::default()
        };
        let mut v = Vec::new();
        check_stock(&[row(12, 0, 0)], &mut t.clone(), &mut v);
        assert!(v.is_empty(), "{v:?}");
        check_stock(&[row(11, 0, 0)], &mut t, &mut v);
        assert_eq!(v.len(), 1);
        assert!(v[0].starts_with("stock not conserved"), "{v:?}");
        let mut v = Vec::new();
        let mut damaged = StockTotals {
            initial: 12,
            damaged: 1,
            ..StockTotals::default()
        };
        check_stock(&[row(12, 13, 0)], &mut damaged, &mut v);
        assert!(v.iter().any(|m| m.contains("inconsistent")), "{v:?}");
        assert!(
            v.iter().any(|m| m.starts_with("stock damaged bucket")),
            "{v:?}"
        );
    }

    #[test]
    fn money_that_does_not_add_up_is_reported() {
        let gateway = FakeGateway::honouring_keys();
        let mut v = Vec::new();
        check_money(&MoneyTotals::default(), &gateway, &mut v);
        assert!(v.is_empty(), "{v:?}");
        let off = MoneyTotals {
            captured: 1_000,
            refunded: 100,
            net_charges: 800,
        };
        check_money(&off, &gateway, &mut v);
        // The gateway captured nothing, and 1,000 − 100 is not 800.
        assert!(
            v.iter().any(|m| m.starts_with("money: gateway captured 0")),
            "{v:?}"
        );
        assert!(
            v.iter().any(|m| m.starts_with("money not conserved")),
            "{v:?}"
        );
    }

    #[test]
    fn duplicate_and_missing_events_are_reported() {
        let at = Timestamp(0);
        let mut t = EventTally::default();
        for (order, version, name) in [
            (1, 1, "order.created"),
            (1, 2, "order.validated"),
            (1, 2, "order.validated"),
            (2, 1, "order.created"),
            (2, 3, "order.updated"),
        ] {
            t.add(&Event::new(order, version, name, at));
        }
        assert_eq!(t.count, 5);
        let mut v = Vec::new();
        t.check(
            &[
                (1, 2, "ORD-1".into()),
                (2, 3, "ORD-2".into()),
                (3, 0, "ORD-3".into()),
            ],
            &mut v,
        );
        assert_eq!(
            v,
            [
                "event order.validated v2 of order 1 published twice",
                "event versions of ORD-2 are 2, expected 1..=3",
            ]
        );
    }
}
