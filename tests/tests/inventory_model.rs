//! Reference-model test of the inventory stores: random sequences of receive, adjust,
//! reserve (exact and spread lines), partial accept/decline, release, commit, ship (whole or
//! one warehouse at a time), extend, return, clock advances and expiry sweeps, run against a
//! plain model. After every step the store matches the model,
//! `on_hand = available + reserved + allocated` with `available >= 0` holds on every row, and
//! no reservation is released or committed twice.
//!
//! The model and the step generator are written once; each backend is one test:
//! - memory: 500 cases × 200 steps = 100,000 steps per run;
//! - SQLite (in-memory database): 40 cases × 200 steps = 8,000 steps;
//! - PostgreSQL: 15 cases × 200 steps = 3,000 steps (each step is several round trips).
//!
//! `backends_agree_on_seeded_sequences` replays the same seeded step sequences on all three
//! stores and requires identical results: every outcome and error in full, the final ledger
//! and every reservation record.

// Helpers outside #[test] functions stop the test on a failed setup, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use oms_core::inventory::{
    Adjustment, ExpiredReservation, InventoryStore, MemoryInventory, Reservation, ReservationItem,
    ReservationRequest, ReservationStatus, ReserveOutcome, ReturnCondition, StockLevel, StockRow,
    WarehouseId,
};
use oms_core::order::Sku;
use oms_core::time::{Duration, SequentialIds, Timestamp};
use oms_core::OmsError;
use oms_store::{PostgresInventory, SqliteInventory};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

mod common;

/// "C" is only known once received; "W9" is never added.
const SKUS: [&str; 3] = ["A", "B", "C"];
const WHS: [&str; 3] = ["W1", "W2", "W9"];
const KNOWN_WHS: usize = 2;
const T0: i64 = 1_000_000;
const MINUTE: i64 = 60_000;
const DEFAULT_TTL: i64 = 15 * MINUTE;

type Key = (usize, usize);
/// `(sku, warehouse, units)` by index.
type Item = (usize, usize, u64);
/// `(reservation id, order id, items)` of one expired hold, as the store reports it.
type Expired = (u64, u64, Vec<ReservationItem>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Level {
    on_hand: u64,
    reserved: u64,
    allocated: u64,
    damaged: u64,
}

impl Level {
    fn available(self) -> u64 {
        self.on_hand - self.reserved - self.allocated
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Line {
    Exact(usize, usize, u64),
    Spread(usize, u64, Vec<usize>),
}

impl Line {
    fn sku(&self) -> usize {
        match self {
            Line::Exact(s, _, _) | Line::Spread(s, _, _) => *s,
        }
    }
    fn qty(&self) -> u64 {
        match self {
            Line::Exact(_, _, q) | Line::Spread(_, q, _) => *q,
        }
    }
    fn whs(&self) -> Vec<usize> {
        match self {
            Line::Exact(_, w, _) => vec![*w],
            Line::Spread(_, _, ws) => ws.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Receive(usize, usize, u64),
    Count(usize, usize, u64),
    Delta(usize, usize, i64),
    Return(usize, usize, u64, bool),
    Reserve {
        order: u64,
        lines: Vec<Line>,
        ttl_minutes: Option<i64>,
    },
    Accept(u64),
    Decline(u64),
    Release(u64),
    Commit(u64),
    Ship(u64),
    ShipFrom(u64, usize),
    Extend(u64, i64),
    Advance(i64),
    Expire,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Awaiting,
    Failed,
    Reserved,
    Allocated,
    Shipped,
    Released,
}

impl St {
    fn closed(self) -> bool {
        matches!(self, St::Failed | St::Shipped | St::Released)
    }
    fn real(self) -> ReservationStatus {
        match self {
            St::Awaiting => ReservationStatus::AwaitingCustomerDecision,
            St::Failed => ReservationStatus::Failed,
            St::Reserved => ReservationStatus::Reserved,
            St::Allocated => ReservationStatus::Allocated,
            St::Shipped => ReservationStatus::Shipped,
            St::Released => ReservationStatus::Released,
        }
    }
}

impl Res {
    fn unshipped(&self) -> Vec<Item> {
        self.items
            .iter()
            .copied()
            .filter(|it| !self.shipped.contains(&it.1))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Res {
    order: u64,
    status: St,
    items: Vec<Item>,
    expires_at: i64,
    ttl: i64,
    shipped: BTreeSet<usize>,
}

/// What the last step should have produced.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Err(&'static str),
    Level(Key),
    Res(u64),
    Expired(Vec<(u64, u64, Vec<Item>)>),
    Nothing,
}

#[derive(Debug, Clone)]
struct Model {
    now: i64,
    skus: BTreeSet<usize>,
    levels: BTreeMap<Key, Level>,
    res: Vec<Res>,
    last: Expect,
}

impl Model {
    fn level(&self, k: Key) -> Level {
        self.levels.get(&k).copied().unwrap_or_default()
    }

    fn known(&self, s: usize, w: usize) -> Result<(), &'static str> {
        if !self.skus.contains(&s) {
            Err("unknown_sku")
        } else if w >= KNOWN_WHS {
            Err("unknown_warehouse")
        } else {
            Ok(())
        }
    }

    fn per_key(items: &[Item]) -> BTreeMap<Key, u64> {
        let mut m = BTreeMap::new();
        for &(s, w, q) in items {
            *m.entry((s, w)).or_default() += q;
        }
        m
    }

    /// Hold `items` if every key has enough available; otherwise leave everything as is.
    fn hold(&mut self, items: &[Item]) -> bool {
        let need = Self::per_key(items);
        if need.iter().any(|(k, q)| self.level(*k).available() < *q) {
            return false;
        }
        for (k, q) in need {
            self.levels.entry(k).or_default().reserved += q;
        }
        true
    }

    fn apply_items(&mut self, items: &[Item], f: impl Fn(&mut Level, u64)) {
        for (k, q) in Self::per_key(items) {
            f(self.levels.entry(k).or_default(), q);
        }
    }

    fn get(&self, id: u64) -> Result<usize, &'static str> {
        let i = usize::try_from(id).unwrap() - 1;
        if i < self.res.len() {
            Ok(i)
        } else {
            Err("not_found")
        }
    }

    fn step(&mut self, step: &Step) -> Expect {
        match self.try_step(step) {
            Ok(e) => e,
            Err(code) => Expect::Err(code),
        }
    }

    fn try_step(&mut self, step: &Step) -> Result<Expect, &'static str> {
        let now = self.now;
        match step {
            Step::Receive(s, w, q) => {
                if *q == 0 {
                    return Err("invalid_quantity");
                }
                if *w >= KNOWN_WHS {
                    return Err("unknown_warehouse");
                }
                self.skus.insert(*s);
                self.levels.entry((*s, *w)).or_default().on_hand += q;
                Ok(Expect::Level((*s, *w)))
            }
            Step::Count(s, w, n) => {
                self.known(*s, *w)?;
                let l = self.level((*s, *w));
                if *n < l.reserved + l.allocated {
                    return Err("insufficient_stock");
                }
                self.levels.entry((*s, *w)).or_default().on_hand = *n;
                Ok(Expect::Level((*s, *w)))
            }
            Step::Delta(s, w, d) => {
                if *d == 0 {
                    return Err("invalid_quantity");
                }
                self.known(*s, *w)?;
                let l = self.levels.entry((*s, *w)).or_default();
                if *d < 0 && d.unsigned_abs() > l.available() {
                    // Undo the row this lookup may have created: a refused step changes nothing.
                    if *l == Level::default() {
                        self.levels.remove(&(*s, *w));
                    }
                    return Err("insufficient_stock");
                }
                l.on_hand = l.on_hand.checked_add_signed(*d).unwrap();
                Ok(Expect::Level((*s, *w)))
            }
            Step::Return(s, w, q, damaged) => {
                if *q == 0 {
                    return Err("invalid_quantity");
                }
                self.known(*s, *w)?;
                let l = self.levels.entry((*s, *w)).or_default();
                if *damaged {
                    l.damaged += q;
                } else {
                    l.on_hand += q;
                }
                Ok(Expect::Level((*s, *w)))
            }
            Step::Reserve {
                order,
                lines,
                ttl_minutes,
            } => {
                if lines.iter().any(|l| l.qty() == 0) {
                    return Err("invalid_quantity");
                }
                if lines.iter().any(|l| !self.skus.contains(&l.sku())) {
                    return Err("unknown_sku");
                }
                if lines
                    .iter()
                    .any(|l| l.whs().iter().any(|w| *w >= KNOWN_WHS))
                {
                    return Err("unknown_warehouse");
                }
                let mut left: BTreeMap<Key, u64> = BTreeMap::new();
                let mut items = Vec::new();
                let mut complete = true;
                for line in lines {
                    let mut missing = line.qty();
                    for w in line.whs() {
                        let k = (line.sku(), w);
                        let avail = *left.entry(k).or_insert_with(|| self.level(k).available());
                        let take = avail.min(missing);
                        if take > 0 {
                            left.insert(k, avail - take);
                            items.push((k.0, k.1, take));
                            missing -= take;
                        }
                    }
                    complete &= missing == 0;
                }
                let ttl = ttl_minutes.map_or(DEFAULT_TTL, |m| m * MINUTE);
                let status = if complete {
                    assert!(
                        self.hold(&items),
                        "model: a complete offer must be holdable"
                    );
                    St::Reserved
                } else if items.is_empty() {
                    St::Failed
                } else {
                    St::Awaiting
                };
                self.res.push(Res {
                    order: *order,
                    status,
                    items,
                    expires_at: now + ttl,
                    ttl,
                    shipped: BTreeSet::new(),
                });
                Ok(Expect::Res(self.res.len() as u64))
            }
            Step::Accept(id) => {
                let i = self.get(*id)?;
                let r = self.res[i].clone();
                if r.status.closed() {
                    return Err("reservation_closed");
                }
                if r.status != St::Awaiting {
                    return Err("invalid_transition");
                }
                if now >= r.expires_at {
                    return Err("reservation_expired");
                }
                if !self.hold(&r.items) {
                    return Err("insufficient_stock");
                }
                let r = &mut self.res[i];
                r.status = St::Reserved;
                r.expires_at = now + r.ttl;
                Ok(Expect::Res(*id))
            }
            Step::Decline(id) => {
                let i = self.get(*id)?;
                let st = self.res[i].status;
                if st.closed() {
                    return Err("reservation_closed");
                }
                if st != St::Awaiting {
                    return Err("invalid_transition");
                }
                self.res[i].status = St::Failed;
                Ok(Expect::Res(*id))
            }
            Step::Release(id) => {
                let i = self.get(*id)?;
                let r = self.res[i].clone();
                match r.status {
                    s if s.closed() => return Err("reservation_closed"),
                    St::Reserved => self.apply_items(&r.items, |l, q| l.reserved -= q),
                    St::Allocated => {
                        self.apply_items(&r.unshipped(), |l, q| l.allocated -= q);
                    }
                    _ => return Err("invalid_transition"),
                }
                self.res[i].status = St::Released;
                Ok(Expect::Res(*id))
            }
            Step::Commit(id) => {
                let i = self.get(*id)?;
                let r = self.res[i].clone();
                if r.status.closed() || r.status == St::Allocated {
                    return Err("reservation_closed");
                }
                if r.status != St::Reserved {
                    return Err("invalid_transition");
                }
                if now >= r.expires_at {
                    return Err("reservation_expired");
                }
                self.apply_items(&r.items, |l, q| {
                    l.reserved -= q;
                    l.allocated += q;
                });
                self.res[i].status = St::Allocated;
                Ok(Expect::Res(*id))
            }
            Step::Ship(id) => {
                let i = self.get(*id)?;
                let r = self.res[i].clone();
                if r.status.closed() {
                    return Err("reservation_closed");
                }
                if r.status != St::Allocated {
                    return Err("invalid_transition");
                }
                self.apply_items(&r.unshipped(), |l, q| {
                    l.allocated -= q;
                    l.on_hand -= q;
                });
                let r = &mut self.res[i];
                r.status = St::Shipped;
                r.shipped = r.items.iter().map(|it| it.1).collect();
                Ok(Expect::Res(*id))
            }
            Step::ShipFrom(id, w) => {
                let i = self.get(*id)?;
                let r = self.res[i].clone();
                if r.status.closed() {
                    return Err("reservation_closed");
                }
                if r.status != St::Allocated {
                    return Err("invalid_transition");
                }
                let here: Vec<Item> = r.items.iter().copied().filter(|it| it.1 == *w).collect();
                if here.is_empty() {
                    return Err("invalid_field");
                }
                if r.shipped.contains(w) {
                    return Err("guard_failed");
                }
                self.apply_items(&here, |l, q| {
                    l.allocated -= q;
                    l.on_hand -= q;
                });
                let r = &mut self.res[i];
                r.shipped.insert(*w);
                if r.unshipped().is_empty() {
                    r.status = St::Shipped;
                }
                Ok(Expect::Res(*id))
            }
            Step::Extend(id, minutes) => {
                if *minutes <= 0 {
                    return Err("invalid_field");
                }
                let i = self.get(*id)?;
                let r = &mut self.res[i];
                if r.status.closed() || r.status == St::Allocated {
                    return Err("reservation_closed");
                }
                if now >= r.expires_at {
                    return Err("reservation_expired");
                }
                r.expires_at += minutes * MINUTE;
                Ok(Expect::Res(*id))
            }
            Step::Advance(minutes) => {
                self.now += minutes * MINUTE;
                Ok(Expect::Nothing)
            }
            Step::Expire => {
                let mut report = Vec::new();
                for i in 0..self.res.len() {
                    let r = self.res[i].clone();
                    if now < r.expires_at {
                        continue;
                    }
                    match r.status {
                        St::Reserved => {
                            self.apply_items(&r.items, |l, q| l.reserved -= q);
                            self.res[i].status = St::Released;
                            report.push((i as u64 + 1, r.order, r.items));
                        }
                        St::Awaiting => self.res[i].status = St::Failed,
                        _ => {}
                    }
                }
                Ok(Expect::Expired(report))
            }
        }
    }
}

struct InventoryModel;

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        4 => (0..3usize, 0..3usize, 0..6u64).prop_map(|(s, w, q)| Line::Exact(s, w, q)),
        2 => (0..3usize, 1..9u64, any::<bool>()).prop_map(|(s, q, flip)| {
            Line::Spread(s, q, if flip { vec![1, 0] } else { vec![0, 1] })
        }),
    ]
}

impl ReferenceStateMachine for InventoryModel {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            now: T0,
            skus: BTreeSet::new(),
            levels: BTreeMap::new(),
            res: Vec::new(),
            last: Expect::Nothing,
        })
        .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Step> {
        let id = 1..=(state.res.len() as u64 + 1);
        // Mostly the newest reservations, where the interesting moves are.
        let recent =
            (state.res.len() as u64).saturating_sub(4).max(1)..=(state.res.len() as u64 + 1);
        let any_id = prop_oneof![id, recent];
        let sw = (0..3usize, 0..3usize);
        prop_oneof![
            5 => (sw.clone(), 0..8u64).prop_map(|((s, w), q)| Step::Receive(s, w, q)),
            1 => (sw.clone(), 0..10u64).prop_map(|((s, w), n)| Step::Count(s, w, n)),
            1 => (sw.clone(), -4..4i64).prop_map(|((s, w), d)| Step::Delta(s, w, d)),
            1 => (sw, 0..3u64, any::<bool>()).prop_map(|((s, w), q, d)| Step::Return(s, w, q, d)),
            8 => (1..6u64, prop::collection::vec(line(), 1..4), prop::option::of(1..20i64))
                .prop_map(|(order, lines, ttl_minutes)| Step::Reserve { order, lines, ttl_minutes }),
            2 => any_id.clone().prop_map(Step::Accept),
            1 => any_id.clone().prop_map(Step::Decline),
            3 => any_id.clone().prop_map(Step::Release),
            3 => any_id.clone().prop_map(Step::Commit),
            1 => any_id.clone().prop_map(Step::Ship),
            2 => (any_id.clone(), 0..3usize).prop_map(|(id, w)| Step::ShipFrom(id, w)),
            1 => (any_id, 0..10i64).prop_map(|(id, m)| Step::Extend(id, m)),
            3 => (0..7i64).prop_map(Step::Advance),
            2 => Just(Step::Expire),
        ]
        .boxed()
    }

    fn apply(mut state: Model, step: &Step) -> Model {
        state.last = state.step(step);
        state
    }
}

/// A store under test, used only through the trait, with reservation ids starting at 1.
trait Backend {
    /// Cases of 200 steps per run.
    const CASES: u32;
    /// A new empty store.
    fn new_store() -> Box<dyn InventoryStore>;
}

struct Memory;
impl Backend for Memory {
    const CASES: u32 = 500;
    fn new_store() -> Box<dyn InventoryStore> {
        Box::new(MemoryInventory::new(Arc::new(SequentialIds::default())))
    }
}

struct Sqlite;
impl Backend for Sqlite {
    const CASES: u32 = 40;
    fn new_store() -> Box<dyn InventoryStore> {
        Box::new(SqliteInventory::open_in_memory(Arc::new(SequentialIds::default())).unwrap())
    }
}

/// SQLite inside batches: every operation runs on the batch's in-memory rows, and every
/// third write commits the batch and opens the next, so operations also start from rows the
/// database holds after a flush.
struct SqliteBatched;
impl Backend for SqliteBatched {
    const CASES: u32 = 40;
    fn new_store() -> Box<dyn InventoryStore> {
        Box::new(Batched::new(
            SqliteInventory::open_in_memory(Arc::new(SequentialIds::default())).unwrap(),
        ))
    }
}

/// A [`SqliteInventory`] whose writes run inside batches that commit every [`Batched::EVERY`]
/// writes (refused ones included).
struct Batched {
    inner: SqliteInventory,
    writes: AtomicU32,
}

impl Batched {
    const EVERY: u32 = 3;

    fn new(inner: SqliteInventory) -> Self {
        inner.store().begin_batch().unwrap();
        Batched {
            inner,
            writes: AtomicU32::new(0),
        }
    }

    /// Count a write; commit the batch and open the next one every [`Self::EVERY`] writes.
    fn wrote<T>(&self, out: Result<T, OmsError>) -> Result<T, OmsError> {
        if (self.writes.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(Self::EVERY) {
            let store = self.inner.store();
            store.commit_batch().unwrap();
            store.begin_batch().unwrap();
        }
        out
    }
}

impl InventoryStore for Batched {
    fn add_warehouse(&self, warehouse: &WarehouseId) -> Result<(), OmsError> {
        self.wrote(self.inner.add_warehouse(warehouse))
    }
    fn receive(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        quantity: u64,
    ) -> Result<StockLevel, OmsError> {
        self.wrote(self.inner.receive(sku, warehouse, quantity))
    }
    fn adjust(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        adjustment: Adjustment,
    ) -> Result<StockLevel, OmsError> {
        self.wrote(self.inner.adjust(sku, warehouse, adjustment))
    }
    fn restock_return(
        &self,
        sku: &Sku,
        warehouse: &WarehouseId,
        quantity: u64,
        condition: ReturnCondition,
    ) -> Result<StockLevel, OmsError> {
        self.wrote(
            self.inner
                .restock_return(sku, warehouse, quantity, condition),
        )
    }
    fn stock(&self, sku: &Sku, warehouse: &WarehouseId) -> Result<StockLevel, OmsError> {
        self.inner.stock(sku, warehouse)
    }
    fn levels(&self) -> Result<Vec<StockRow>, OmsError> {
        self.inner.levels()
    }
    fn reserve(
        &self,
        request: &ReservationRequest,
        now: Timestamp,
    ) -> Result<ReserveOutcome, OmsError> {
        self.wrote(self.inner.reserve(request, now))
    }
    fn accept_partial(&self, id: u64, now: Timestamp) -> Result<Reservation, OmsError> {
        self.wrote(self.inner.accept_partial(id, now))
    }
    fn decline_partial(&self, id: u64, now: Timestamp) -> Result<Reservation, OmsError> {
        self.wrote(self.inner.decline_partial(id, now))
    }
    fn release(&self, id: u64, now: Timestamp) -> Result<Reservation, OmsError> {
        self.wrote(self.inner.release(id, now))
    }
    fn commit(&self, id: u64, now: Timestamp) -> Result<Reservation, OmsError> {
        self.wrote(self.inner.commit(id, now))
    }
    fn ship(&self, id: u64, now: Timestamp) -> Result<Reservation, OmsError> {
        self.wrote(self.inner.ship(id, now))
    }
    fn ship_from(
        &self,
        id: u64,
        warehouse: &WarehouseId,
        now: Timestamp,
    ) -> Result<Reservation, OmsError> {
        self.wrote(self.inner.ship_from(id, warehouse, now))
    }
    fn extend(&self, id: u64, by: Duration, now: Timestamp) -> Result<Reservation, OmsError> {
        self.wrote(self.inner.extend(id, by, now))
    }
    fn expire(&self, now: Timestamp) -> Result<Vec<ExpiredReservation>, OmsError> {
        self.wrote(self.inner.expire(now))
    }
    fn reservation(&self, id: u64) -> Result<Reservation, OmsError> {
        self.inner.reservation(id)
    }
    fn reservations_for_order(&self, order_id: u64) -> Result<Vec<Reservation>, OmsError> {
        self.inner.reservations_for_order(order_id)
    }
}

/// Every case gets the same schema, emptied: migrating a new schema per case would dominate
/// the run time.
struct Postgres;
impl Backend for Postgres {
    const CASES: u32 = 15;
    fn new_store() -> Box<dyn InventoryStore> {
        static SCHEMA: OnceLock<String> = OnceLock::new();
        let schema = SCHEMA.get_or_init(|| common::fresh_schema("inventory_model"));
        let store = common::postgres_connect(schema);
        let mut c = postgres::Client::connect(&common::postgres_url(), postgres::NoTls).unwrap();
        c.batch_execute(&format!(
            "TRUNCATE {schema}.inventory_reservation_items, {schema}.inventory_reservations,
                      {schema}.inventory, {schema}.warehouses"
        ))
        .unwrap();
        Box::new(PostgresInventory::new(
            store,
            Arc::new(SequentialIds::default()),
        ))
    }
}

struct Sut {
    store: Box<dyn InventoryStore>,
    released: BTreeMap<u64, u32>,
    committed: BTreeMap<u64, u32>,
    expired: BTreeSet<u64>,
}

fn sku(i: usize) -> Sku {
    Sku::new(SKUS[i]).unwrap()
}
fn wh(i: usize) -> WarehouseId {
    WarehouseId::new(WHS[i]).unwrap()
}
fn item((s, w, q): Item) -> ReservationItem {
    ReservationItem::new(sku(s), wh(w), q)
}

/// The full result of one step: every value and every error, for comparing backends.
#[derive(Debug, PartialEq)]
enum Outcome {
    Level(Result<StockLevel, OmsError>),
    Reserve(Result<ReserveOutcome, OmsError>),
    Res(Result<Reservation, OmsError>),
    Expired(Result<Vec<ExpiredReservation>, OmsError>),
    Nothing,
}

impl Outcome {
    fn code(&self) -> Result<(), &'static str> {
        let err = match self {
            Outcome::Level(r) => r.as_ref().err(),
            Outcome::Reserve(r) => r.as_ref().err(),
            Outcome::Res(r) => r.as_ref().err(),
            Outcome::Expired(r) => r.as_ref().err(),
            Outcome::Nothing => None,
        };
        err.map_or(Ok(()), |e| Err(e.code()))
    }
}

/// Run `step` on `store` at `now`.
fn exec(s: &dyn InventoryStore, step: &Step, now: Timestamp) -> Outcome {
    match step.clone() {
        Step::Receive(k, w, q) => Outcome::Level(s.receive(&sku(k), &wh(w), q)),
        Step::Count(k, w, n) => Outcome::Level(s.adjust(&sku(k), &wh(w), Adjustment::Count(n))),
        Step::Delta(k, w, d) => Outcome::Level(s.adjust(&sku(k), &wh(w), Adjustment::Delta(d))),
        Step::Return(k, w, q, damaged) => {
            let c = if damaged {
                ReturnCondition::Damaged
            } else {
                ReturnCondition::Sellable
            };
            Outcome::Level(s.restock_return(&sku(k), &wh(w), q, c))
        }
        Step::Reserve {
            order,
            lines,
            ttl_minutes,
        } => {
            let mut req = ReservationRequest::new(order);
            for l in lines {
                req = match l {
                    Line::Exact(k, w, q) => req.item(sku(k), wh(w), q),
                    Line::Spread(k, q, ws) => {
                        req.spread(sku(k), q, ws.into_iter().map(wh).collect())
                    }
                };
            }
            if let Some(m) = ttl_minutes {
                req = req.with_ttl(Duration::minutes(m));
            }
            Outcome::Reserve(s.reserve(&req, now))
        }
        Step::Accept(id) => Outcome::Res(s.accept_partial(id, now)),
        Step::Decline(id) => Outcome::Res(s.decline_partial(id, now)),
        Step::Release(id) => Outcome::Res(s.release(id, now)),
        Step::Commit(id) => Outcome::Res(s.commit(id, now)),
        Step::Ship(id) => Outcome::Res(s.ship(id, now)),
        Step::ShipFrom(id, w) => Outcome::Res(s.ship_from(id, &wh(w), now)),
        Step::Extend(id, m) => Outcome::Res(s.extend(id, Duration::minutes(m), now)),
        Step::Advance(_) => Outcome::Nothing,
        Step::Expire => Outcome::Expired(s.expire(now)),
    }
}

impl Sut {
    fn run(&mut self, step: &Step, now: Timestamp) -> Result<Option<Vec<Expired>>, &'static str> {
        let outcome = exec(&*self.store, step, now);
        outcome.code()?;
        match (step, outcome) {
            (Step::Reserve { .. }, Outcome::Reserve(Ok(outcome))) => {
                let r = outcome.reservation();
                let expected = match r.status {
                    ReservationStatus::Reserved => matches!(outcome, ReserveOutcome::Reserved(_)),
                    ReservationStatus::AwaitingCustomerDecision => {
                        matches!(outcome, ReserveOutcome::PartiallyAvailable(_))
                    }
                    ReservationStatus::Failed => matches!(outcome, ReserveOutcome::OutOfStock(_)),
                    _ => false,
                };
                assert!(expected, "outcome {outcome:?} does not match its status");
            }
            (Step::Release(id), _) => *self.released.entry(*id).or_default() += 1,
            (Step::Commit(id), _) => *self.committed.entry(*id).or_default() += 1,
            (Step::Expire, Outcome::Expired(Ok(report))) => {
                for e in &report {
                    assert!(
                        self.expired.insert(e.reservation_id),
                        "reported twice: {e:?}"
                    );
                    *self.released.entry(e.reservation_id).or_default() += 1;
                }
                return Ok(Some(
                    report
                        .into_iter()
                        .map(|e| (e.reservation_id, e.order_id, e.items))
                        .collect(),
                ));
            }
            _ => {}
        }
        Ok(None)
    }

    fn check_reservation(&self, model: &Model, id: u64) {
        let m = &model.res[usize::try_from(id).unwrap() - 1];
        let r = self.store.reservation(id).unwrap();
        assert_eq!(r.status, m.status.real(), "reservation {id}");
        assert_eq!(r.order_id, m.order);
        assert_eq!(r.expires_at, Timestamp(m.expires_at), "reservation {id}");
        let items: Vec<_> = m.items.iter().copied().map(item).collect();
        assert_eq!(r.items, items, "reservation {id}");
        assert_eq!(r.path.last(), Some(&r.status));
        let shipped: BTreeSet<WarehouseId> = m.shipped.iter().map(|w| wh(*w)).collect();
        assert_eq!(r.shipped_from, shipped, "reservation {id}");
    }
}

/// The model test of backend `B`.
struct InventoryTest<B>(PhantomData<B>);

impl<B: Backend> StateMachineTest for InventoryTest<B> {
    type SystemUnderTest = Sut;
    type Reference = InventoryModel;

    fn init_test(_: &Model) -> Sut {
        let store = B::new_store();
        for w in &WHS[..KNOWN_WHS] {
            store.add_warehouse(&WarehouseId::new(w).unwrap()).unwrap();
        }
        Sut {
            store,
            released: BTreeMap::new(),
            committed: BTreeMap::new(),
            expired: BTreeSet::new(),
        }
    }

    fn apply(mut sut: Sut, model: &Model, step: Step) -> Sut {
        let now = Timestamp(model.now);
        let got = sut.run(&step, now);
        match (&model.last, got) {
            (Expect::Err(want), Err(got)) => assert_eq!(*want, got, "{step:?}"),
            (Expect::Err(want), Ok(_)) => panic!("{step:?}: expected {want}, store accepted"),
            (want, Err(got)) => panic!("{step:?}: expected {want:?}, store refused with {got}"),
            (Expect::Expired(want), Ok(Some(got))) => {
                let want: Vec<_> = want
                    .iter()
                    .map(|(id, order, items)| {
                        (
                            *id,
                            *order,
                            items.iter().copied().map(item).collect::<Vec<_>>(),
                        )
                    })
                    .collect();
                assert_eq!(want, got);
            }
            (Expect::Res(id), Ok(_)) => sut.check_reservation(model, *id),
            (Expect::Level(_) | Expect::Nothing, Ok(_)) => {}
            (want, Ok(got)) => panic!("{step:?}: expected {want:?}, got {got:?}"),
        }
        sut
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        let rows = sut.store.levels().unwrap();
        let mut got = BTreeMap::new();
        for row in rows {
            let l = row.level;
            assert!(l.is_consistent(), "{row:?}");
            assert_eq!(l.on_hand, l.available() + l.reserved + l.allocated);
            if l != StockLevel::default() {
                got.insert((row.sku.to_string(), row.warehouse.to_string()), l);
            }
        }
        let want: BTreeMap<_, _> = model
            .levels
            .iter()
            .filter(|(_, l)| **l != Level::default())
            .map(|((s, w), l)| {
                (
                    (SKUS[*s].to_owned(), WHS[*w].to_owned()),
                    StockLevel {
                        on_hand: l.on_hand,
                        reserved: l.reserved,
                        allocated: l.allocated,
                        damaged: l.damaged,
                    },
                )
            })
            .collect();
        assert_eq!(got, want);
        for (s, w) in model.levels.keys() {
            assert_eq!(
                sut.store.stock(&sku(*s), &wh(*w)).unwrap().available(),
                model.level((*s, *w)).available()
            );
        }
        assert!(sut.released.values().all(|n| *n <= 1), "released twice");
        assert!(sut.committed.values().all(|n| *n <= 1), "committed twice");
    }

    fn teardown(sut: Sut, model: Model) {
        for id in 1..=model.res.len() as u64 {
            sut.check_reservation(&model, id);
        }
        for order in 1..6 {
            let ids: Vec<u64> = sut
                .store
                .reservations_for_order(order)
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect();
            let want: Vec<u64> = (1..=model.res.len() as u64)
                .filter(|id| model.res[usize::try_from(*id).unwrap() - 1].order == order)
                .collect();
            assert_eq!(ids, want);
        }
        STATS.with(|s| s.borrow_mut().record(&model));
    }
}

#[derive(Default)]
struct Stats {
    cases: usize,
    reservations: usize,
    by_status: BTreeMap<String, usize>,
}

impl Stats {
    fn record(&mut self, model: &Model) {
        self.cases += 1;
        self.reservations += model.res.len();
        for r in &model.res {
            *self.by_status.entry(format!("{:?}", r.status)).or_default() += 1;
            if !r.shipped.is_empty() && !r.unshipped().is_empty() {
                *self.by_status.entry("PartlyShipped".into()).or_default() += 1;
            }
        }
    }
}

thread_local! {
    static STATS: std::cell::RefCell<Stats> = std::cell::RefCell::new(Stats::default());
}

/// Run `B::CASES` cases of 200 steps against backend `B` and check every outcome was reached.
fn run_model<B: Backend>() {
    let config = ProptestConfig {
        cases: B::CASES,
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(
        &InventoryModel::sequential_strategy(200..=200),
        |(state, steps, seen)| {
            InventoryTest::<B>::test_sequential(config.clone(), state, steps, seen);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    STATS.with(|s| {
        let s = s.borrow();
        println!(
            "{} cases x 200 steps, {} reservations; final states {:?}",
            s.cases, s.reservations, s.by_status
        );
        assert!(s.cases >= B::CASES as usize);
        // A generator that never reached an outcome would leave its checks unable to fail.
        for st in [
            "Failed",
            "Reserved",
            "Allocated",
            "Shipped",
            "Released",
            "Awaiting",
        ] {
            assert!(
                s.by_status.get(st).copied().unwrap_or(0) > 0,
                "no reservation ended {st}"
            );
        }
    });
}

#[test]
fn memory_inventory_matches_reference_model() {
    run_model::<Memory>();
}

#[test]
fn sqlite_inventory_matches_reference_model() {
    run_model::<Sqlite>();
}

#[test]
fn sqlite_inventory_in_batches_matches_reference_model() {
    run_model::<SqliteBatched>();
}

#[test]
fn postgres_inventory_matches_reference_model() {
    run_model::<Postgres>();
}

/// Everything a store holds at the end of a run: the ledger and every reservation record.
fn final_state(s: &dyn InventoryStore, reservations: u64) -> (Vec<StockRow>, Vec<Reservation>) {
    let rows = s.levels().unwrap();
    let records = (1..=reservations)
        .map(|id| s.reservation(id).unwrap())
        .collect();
    (rows, records)
}

#[test]
fn backends_agree_on_seeded_sequences() {
    const SEEDS: u8 = 4;
    const STEPS: usize = 300;
    let mut compared = 0;
    for seed in 0..SEEDS {
        let mut runner = TestRunner::new_with_rng(
            ProptestConfig::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
        );
        let (mut model, steps, _) = InventoryModel::sequential_strategy(STEPS..=STEPS)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let stores: Vec<(&str, Box<dyn InventoryStore>)> = vec![
            ("memory", Memory::new_store()),
            ("sqlite", Sqlite::new_store()),
            ("sqlite in batches", SqliteBatched::new_store()),
            ("postgres", Postgres::new_store()),
        ];
        for (_, s) in &stores {
            for w in &WHS[..KNOWN_WHS] {
                s.add_warehouse(&WarehouseId::new(w).unwrap()).unwrap();
            }
        }
        for (i, step) in steps.iter().enumerate() {
            let now = Timestamp(model.now);
            let outcomes: Vec<Outcome> =
                stores.iter().map(|(_, s)| exec(&**s, step, now)).collect();
            for ((name, _), got) in stores.iter().zip(&outcomes).skip(1) {
                assert_eq!(
                    &outcomes[0], got,
                    "seed {seed} step {i} {step:?}: {name} differs"
                );
            }
            model = InventoryModel::apply(model, step);
            compared += 1;
        }
        let n = model.res.len() as u64;
        let want = final_state(&*stores[0].1, n);
        assert!(!want.0.is_empty() && n > 0, "seed {seed} built nothing");
        for (name, s) in &stores[1..] {
            assert_eq!(
                final_state(&**s, n),
                want,
                "seed {seed}: {name} final state"
            );
        }
    }
    assert_eq!(compared, usize::from(SEEDS) * STEPS);
}
