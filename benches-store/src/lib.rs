//! Benchmark rig for the storage adapters: one full order lifecycle (create → reserve →
//! authorize → allocate → pick → pack → ship → deliver → capture) driven through
//! `OrderService` over the SQLite or PostgreSQL stores, by one or many worker threads.
//!
//! Every worker gets its own connections and its own `OrderService`; the database, the id
//! generator, the fake gateway and the fraud signals are shared, as they would be between
//! processes of one deployment.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oms_core::error::{OmsError, OmsResult};
use oms_core::fraud::InMemoryFraudSignals;
use oms_core::inventory::{InventoryStore, WarehouseId};
use oms_core::lifecycle::{Actor, OrderStatus};
use oms_core::money::{Currency, Money};
use oms_core::order::{AddressInput, Customer, LineItemInput, Order, OrderDraft, Sku};
use oms_core::payment::{FakeGateway, NoJitter, NoPause};
use oms_core::pricing::{PricingContext, TaxTable};
use oms_core::service::{
    CarrierUpdate, Dependencies, Notification, Notifier, OrderService, PaymentInput, ServiceConfig,
};
use oms_core::time::{IdGenerator, ManualClock, Timestamp};
use oms_store::{PostgresInventory, PostgresStore, SqliteInventory, SqliteStore};
use rust_decimal::Decimal;

/// Units of each benchmark SKU received up front: far more than any run ships.
pub const STOCK: u64 = 1_000_000_000;

/// How many SKUs the catalog holds. Order `n` buys SKU `n mod SKUS`, so concurrent workers
/// mostly reserve different stock rows, as a real catalog's orders do, rather than all queueing
/// on one row's lock (a flash sale of one SKU is the oversell test's case, not this one's).
pub const SKUS: u64 = 64;

/// The SKU order number `n` buys.
pub fn sku(n: u64) -> String {
    format!("BENCH-{}", n % SKUS)
}

/// The one warehouse stock is held in.
pub const WAREHOUSE: &str = "WH1";

/// Ids unique across every worker of one rig: a single counter behind an `Arc`.
#[derive(Debug, Default)]
pub struct AtomicIds(AtomicU64);

impl IdGenerator for AtomicIds {
    fn next_id(&self, _kind: &str) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Drops notifications: a benchmark measures the stores, not a notification buffer growing
/// without bound.
#[derive(Debug, Default)]
pub struct NullNotifier;

impl Notifier for NullNotifier {
    fn notify(&self, _notification: &Notification) -> OmsResult<()> {
        Ok(())
    }
}

/// Which database a rig writes to.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A SQLite file (WAL) at this path.
    Sqlite(PathBuf),
    /// A PostgreSQL database and the schema private to this rig.
    Postgres {
        /// Connection URL.
        url: String,
        /// Schema the rig's tables live in.
        schema: String,
    },
}

/// An order store and an inventory store on one SQLite connection.
type SharedConnection = (Arc<SqliteStore>, Arc<dyn InventoryStore>);

/// One shared database with stock received, from which worker services are made.
pub struct Rig {
    backend: Backend,
    ids: Arc<dyn IdGenerator>,
    gateway: Arc<FakeGateway>,
    fraud: Arc<InMemoryFraudSignals>,
    clock: Arc<ManualClock>,
    customers: AtomicU64,
}

impl Rig {
    /// A fresh SQLite file `orders.db` in `dir`, stocked.
    pub fn sqlite(dir: &Path) -> OmsResult<Rig> {
        let path = dir.join("orders.db");
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            // A leftover file from an earlier run would make ids collide.
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
        Rig::stocked(Backend::Sqlite(path))
    }

    /// A fresh schema `schema` in the PostgreSQL database at `url` (dropped first if it
    /// exists), stocked.
    pub fn postgres(url: &str, schema: &str) -> OmsResult<Rig> {
        if !schema.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(OmsError::Storage {
                reason: format!("benchmark schema name {schema:?} is not plain lowercase"),
            });
        }
        let mut client =
            postgres::Client::connect(url, postgres::NoTls).map_err(|e| OmsError::Storage {
                reason: format!("connect {url}: {e}"),
            })?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .map_err(|e| OmsError::Storage {
                reason: format!("drop schema {schema}: {e}"),
            })?;
        Rig::stocked(Backend::Postgres {
            url: url.to_owned(),
            schema: schema.to_owned(),
        })
    }

    fn stocked(backend: Backend) -> OmsResult<Rig> {
        let rig = Rig {
            backend,
            ids: Arc::new(AtomicIds::default()),
            gateway: Arc::new(FakeGateway::honouring_keys()),
            fraud: Arc::new(InMemoryFraudSignals::new()),
            clock: Arc::new(ManualClock::new(Timestamp::from_civil(2026, 5, 6, 9, 0, 0))),
            customers: AtomicU64::new(0),
        };
        let (_, inventory) = rig.stores()?;
        let wh = WarehouseId::new(WAREHOUSE)?;
        inventory.add_warehouse(&wh)?;
        for n in 0..SKUS {
            inventory.receive(&Sku::new(&sku(n))?, &wh, STOCK)?;
        }
        Ok(rig)
    }

    /// The database this rig writes to.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// New connections: an order store and an inventory store over the shared database.
    fn stores(
        &self,
    ) -> OmsResult<(
        Arc<dyn oms_core::store::OrderStore>,
        Arc<dyn InventoryStore>,
    )> {
        Ok(match &self.backend {
            Backend::Sqlite(path) => (
                Arc::new(SqliteStore::open(path)?),
                Arc::new(SqliteInventory::new(
                    SqliteStore::open(path)?,
                    self.ids.clone(),
                )),
            ),
            Backend::Postgres { url, schema } => (
                Arc::new(PostgresStore::connect_with_schema(url, schema)?),
                Arc::new(PostgresInventory::new(
                    PostgresStore::connect_with_schema(url, schema)?,
                    self.ids.clone(),
                )),
            ),
        })
    }

    /// A service for one worker, with its own connections.
    pub fn worker(&self) -> OmsResult<OrderService> {
        let (orders, inventory) = self.stores()?;
        self.service(orders, inventory)
    }

    /// A service over the given stores and the rig's shared gateway, fraud signals and clock.
    fn service(
        &self,
        orders: Arc<dyn oms_core::store::OrderStore>,
        inventory: Arc<dyn InventoryStore>,
    ) -> OmsResult<OrderService> {
        let deps = Dependencies {
            orders,
            inventory,
            gateway: self.gateway.clone(),
            fraud: self.fraud.clone(),
            notifier: Arc::new(NullNotifier),
            clock: self.clock.clone(),
            ids: self.ids.clone(),
            pause: Arc::new(NoPause),
            jitter: Arc::new(NoJitter),
        };
        let pricing = PricingContext {
            tax: TaxTable::new().with_rate("US", "standard", Decimal::ZERO),
            ..PricingContext::default()
        };
        let config = ServiceConfig::new(vec![WarehouseId::new(WAREHOUSE)?], pricing);
        OrderService::new(deps, config)
    }

    /// A service whose order and inventory stores share one SQLite connection, and that
    /// connection's order store for grouping commits ([`Rig::run_grouped`]). `None` on
    /// PostgreSQL, whose stores make every write durable on its own.
    pub fn grouped_worker(&self) -> OmsResult<Option<(OrderService, Arc<SqliteStore>)>> {
        let Some((store, inventory)) = self.one_connection()? else {
            return Ok(None);
        };
        let svc = self.service(store.clone(), inventory)?;
        Ok(Some((svc, store)))
    }

    /// [`Rig::grouped_worker`] with its batches pipelined
    /// ([`SqliteStore::pipeline_batches`]): each commit runs on a thread of its own while the
    /// next batch runs. `None` on PostgreSQL.
    pub fn pipelined_worker(&self) -> OmsResult<Option<(OrderService, Arc<SqliteStore>)>> {
        let Some((svc, store)) = self.grouped_worker()? else {
            return Ok(None);
        };
        store.pipeline_batches()?;
        Ok(Some((svc, store)))
    }

    /// A new SQLite connection as an order store and an inventory store sharing it; `None` on
    /// PostgreSQL.
    fn one_connection(&self) -> OmsResult<Option<SharedConnection>> {
        let Backend::Sqlite(path) = &self.backend else {
            return Ok(None);
        };
        let store = Arc::new(SqliteStore::open(path)?);
        let inventory = SqliteInventory::sharing(
            store.clone(),
            self.ids.clone(),
            oms_core::inventory::ReservationConfig::default(),
        );
        Ok(Some((store, Arc::new(inventory))))
    }

    /// Run `total` lifecycles on one grouped worker, committing once per `per_commit`
    /// lifecycles (each operation still atomic on its own); the wall time taken, up to the
    /// moment the last commit has ended (a pipelined one included).
    pub fn run_grouped(
        &self,
        svc: &OrderService,
        store: &SqliteStore,
        total: u64,
        per_commit: u64,
    ) -> OmsResult<Duration> {
        let start = Instant::now();
        let mut done = 0;
        while done < total {
            let n = per_commit.max(1).min(total - done);
            store.begin_batch()?;
            for _ in 0..n {
                if let Err(e) = self.lifecycle(svc) {
                    let _ = store.rollback_batch();
                    return Err(e);
                }
            }
            store.commit_batch()?;
            done += n;
        }
        store.wait_for_commit()?;
        Ok(start.elapsed())
    }

    /// `n` worker services sharing one SQLite connection with group commit on
    /// ([`SqliteStore::enable_group_commit`]): every write durable on return, concurrent writes
    /// sharing a commit. `None` on PostgreSQL.
    pub fn group_commit_workers(
        &self,
        n: usize,
    ) -> OmsResult<Option<(Vec<OrderService>, Arc<SqliteStore>)>> {
        let Some((store, inventory)) = self.one_connection()? else {
            return Ok(None);
        };
        store.enable_group_commit()?;
        let workers = (0..n)
            .map(|_| self.service(store.clone(), inventory.clone()))
            .collect::<OmsResult<Vec<_>>>()?;
        Ok(Some((workers, store)))
    }

    /// `n` worker services sharing one store and its batches, for [`Rig::run_shared`]: on
    /// SQLite one connection whose batches are pipelined, on PostgreSQL one pool whose
    /// batches run on memory until their commit. Every operation atomic on its own, durable
    /// with its batch.
    pub fn shared_batch_workers(
        &self,
        n: usize,
    ) -> OmsResult<(Vec<OrderService>, Arc<dyn SharedBatches>)> {
        let (orders, inventory, batches): (
            Arc<dyn oms_core::store::OrderStore>,
            Arc<dyn InventoryStore>,
            Arc<dyn SharedBatches>,
        ) = match &self.backend {
            Backend::Sqlite(_) => {
                let Some((store, inventory)) = self.one_connection()? else {
                    return Err(OmsError::Storage {
                        reason: "no SQLite connection".into(),
                    });
                };
                store.pipeline_batches()?;
                (store.clone(), inventory, store)
            }
            Backend::Postgres { url, schema } => {
                let store = Arc::new(PostgresStore::connect_with_schema(url, schema)?);
                let inventory = Arc::new(PostgresInventory::sharing(
                    store.clone(),
                    self.ids.clone(),
                    oms_core::inventory::ReservationConfig::default(),
                ));
                (store.clone(), inventory, store)
            }
        };
        let workers = (0..n)
            .map(|_| self.service(orders.clone(), inventory.clone()))
            .collect::<OmsResult<Vec<_>>>()?;
        Ok((workers, batches))
    }

    /// Run `total` lifecycles spread over `workers` (one thread each) in one batch shared by
    /// them all, cut every `per_commit` lifecycles by the worker that finishes the last of
    /// them (`rotate_batch`); the wall time taken, up to the moment the last commit has
    /// ended.
    pub fn run_shared(
        &self,
        workers: &[OrderService],
        store: &dyn SharedBatches,
        total: u64,
        per_commit: u64,
    ) -> OmsResult<Duration> {
        let per_commit = per_commit.max(1);
        let finished = AtomicU64::new(0);
        let start = Instant::now();
        store.begin_batch()?;
        let ran = Rig::spread(workers, total, &|svc| {
            self.lifecycle(svc)?;
            if (finished.fetch_add(1, Ordering::AcqRel) + 1).is_multiple_of(per_commit) {
                store.rotate_batch()?;
            }
            Ok(())
        });
        if let Err(e) = ran {
            let _ = store.rollback_batch();
            let _ = store.wait_for_commit();
            return Err(e);
        }
        store.commit_batch()?;
        store.wait_for_commit()?;
        Ok(start.elapsed())
    }

    /// `n` worker services.
    pub fn workers(&self, n: usize) -> OmsResult<Vec<OrderService>> {
        (0..n).map(|_| self.worker()).collect()
    }

    /// A draft for a new customer (a fresh customer per order keeps fraud velocity rules
    /// out of the measurement).
    pub fn draft(&self) -> OmsResult<(OrderDraft, Actor)> {
        let n = self.customers.fetch_add(1, Ordering::Relaxed);
        let id = format!("c{n}");
        let draft = OrderDraft {
            customer: Customer {
                id: id.as_str().into(),
                email: format!("{id}@example.com").into(),
                name: "Bench Customer".into(),
            },
            shipping_address: AddressInput {
                name: "Bench Customer".into(),
                line1: "1 Main St".into(),
                city: "New York".into(),
                region: "NY".into(),
                postal_code: "10001".into(),
                country: "US".into(),
                location: Some((40.71, -74.0)),
                ..AddressInput::default()
            },
            billing_address: None,
            currency: Currency::USD,
            lines: vec![LineItemInput::new(
                &sku(n),
                1,
                Money::parse("10.00", Currency::USD)?,
            )],
            promo_codes: vec![],
        };
        Ok((draft, Actor::Customer(id.into())))
    }

    /// One order created (reserved and authorized) by `svc`.
    pub fn create(&self, svc: &OrderService) -> OmsResult<Order> {
        let (draft, customer) = self.draft()?;
        svc.create_order(&draft, &PaymentInput::new("card-4242"), &customer, None)
    }

    /// One full lifecycle on `svc`, ending delivered and captured.
    pub fn lifecycle(&self, svc: &OrderService) -> OmsResult<Order> {
        let staff = staff();
        let order = self.create(svc)?;
        let mut order = svc.request_fulfillment(order.id, &staff, None)?;
        let shipments: Vec<_> = order
            .shipments
            .iter()
            .map(|s| {
                let units: Vec<String> = s
                    .lines()
                    .iter()
                    .flat_map(|(sku, q)| std::iter::repeat_n(sku.as_str().to_owned(), *q as usize))
                    .collect();
                (s.id(), units)
            })
            .collect();
        for (id, units) in &shipments {
            order = svc.record_pick(order.id, *id, "picker-1", units, &staff, None)?;
            order = svc.record_pack(order.id, *id, None, &staff, None)?;
            order = svc.notify_shipped(order.id, *id, &staff, None)?;
            order = svc.update_shipment(order.id, *id, CarrierUpdate::Delivered, &staff, None)?;
        }
        if order.status != OrderStatus::Delivered {
            return Err(OmsError::Storage {
                reason: format!("lifecycle ended in {:?}", order.status),
            });
        }
        Ok(order)
    }

    /// Run `total` lifecycles spread over `workers` (one thread each); the wall time taken.
    pub fn run(&self, workers: &[OrderService], total: u64) -> OmsResult<Duration> {
        let start = Instant::now();
        Rig::spread(workers, total, &|svc| self.lifecycle(svc).map(|_| ()))?;
        Ok(start.elapsed())
    }

    /// Run `one` `total` times spread over `workers`, one thread each; every failure is
    /// reported (the first one returned).
    fn spread(
        workers: &[OrderService],
        total: u64,
        one: &(dyn Fn(&OrderService) -> OmsResult<()> + Sync),
    ) -> OmsResult<()> {
        let n = workers.len().max(1) as u64;
        let results: Vec<OmsResult<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = workers
                .iter()
                .enumerate()
                .map(|(i, svc)| {
                    // The first `total % n` workers take one extra lifecycle.
                    let share = total / n + u64::from((i as u64) < total % n);
                    scope.spawn(move || {
                        for _ in 0..share {
                            one(svc)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(OmsError::Storage {
                            reason: "benchmark worker panicked".into(),
                        })
                    })
                })
                .collect()
        });
        results.into_iter().collect::<OmsResult<Vec<()>>>()?;
        Ok(())
    }
}

/// A store whose batches many workers share (see [`Rig::shared_batch_workers`]).
pub trait SharedBatches: Send + Sync {
    /// Open a batch.
    fn begin_batch(&self) -> OmsResult<()>;
    /// Commit the open batch and open the next at once.
    fn rotate_batch(&self) -> OmsResult<()>;
    /// Commit the open batch.
    fn commit_batch(&self) -> OmsResult<()>;
    /// Drop the open batch.
    fn rollback_batch(&self) -> OmsResult<()>;
    /// Wait until every committed batch is durable.
    fn wait_for_commit(&self) -> OmsResult<()>;
    /// Whether a batch is open.
    fn in_batch(&self) -> OmsResult<bool>;
}

impl SharedBatches for SqliteStore {
    fn begin_batch(&self) -> OmsResult<()> {
        SqliteStore::begin_batch(self)
    }
    fn rotate_batch(&self) -> OmsResult<()> {
        SqliteStore::rotate_batch(self)
    }
    fn commit_batch(&self) -> OmsResult<()> {
        SqliteStore::commit_batch(self)
    }
    fn rollback_batch(&self) -> OmsResult<()> {
        SqliteStore::rollback_batch(self)
    }
    fn wait_for_commit(&self) -> OmsResult<()> {
        SqliteStore::wait_for_commit(self)
    }
    fn in_batch(&self) -> OmsResult<bool> {
        SqliteStore::in_batch(self)
    }
}

impl SharedBatches for PostgresStore {
    fn begin_batch(&self) -> OmsResult<()> {
        PostgresStore::begin_batch(self)
    }
    fn rotate_batch(&self) -> OmsResult<()> {
        PostgresStore::rotate_batch(self)
    }
    fn commit_batch(&self) -> OmsResult<()> {
        PostgresStore::commit_batch(self)
    }
    fn rollback_batch(&self) -> OmsResult<()> {
        PostgresStore::rollback_batch(self)
    }
    /// A PostgreSQL batch is durable when its commit returns.
    fn wait_for_commit(&self) -> OmsResult<()> {
        Ok(())
    }
    fn in_batch(&self) -> OmsResult<bool> {
        PostgresStore::in_batch(self)
    }
}

/// The staff actor that drives fulfillment.
pub fn staff() -> Actor {
    Actor::Staff("bench-staff".into())
}

/// Latency percentiles of individual calls.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Calls measured.
    pub samples: usize,
}

impl Latency {
    /// Percentiles of `samples` (sorted here), nearest-rank.
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let at = |p: usize| {
            let rank = (samples.len() * p).div_ceil(100).max(1);
            samples.get(rank - 1).copied().unwrap_or_default()
        };
        Latency {
            p50: at(50),
            p99: at(99),
            samples: samples.len(),
        }
    }
}

/// Time `n` `create_order` calls one by one on `svc`; returns their latencies and the ids made.
pub fn create_latency(rig: &Rig, svc: &OrderService, n: usize) -> OmsResult<(Latency, Vec<u64>)> {
    let mut times = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let (draft, customer) = rig.draft()?;
        let payment = PaymentInput::new("card-4242");
        let start = Instant::now();
        let order = svc.create_order(&draft, &payment, &customer, None)?;
        times.push(start.elapsed());
        ids.push(order.id);
    }
    Ok((Latency::of(times), ids))
}

/// Time `n` `get_order` calls on `svc`, cycling through `ids`.
pub fn get_latency(svc: &OrderService, ids: &[u64], n: usize) -> OmsResult<Latency> {
    let staff = staff();
    let mut times = Vec::with_capacity(n);
    for id in ids.iter().cycle().take(n) {
        let start = Instant::now();
        let order = svc.get_order(*id, &staff)?;
        times.push(start.elapsed());
        std::hint::black_box(order);
    }
    Ok(Latency::of(times))
}

/// The PostgreSQL URL benchmarks use: `OMS_BENCH_DATABASE_URL`, else `OMS_TEST_DATABASE_URL`.
pub fn postgres_url() -> Option<String> {
    std::env::var("OMS_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("OMS_TEST_DATABASE_URL"))
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Another connection on the rig's database in `dir` sees `n` orders, each delivered.
    fn assert_delivered(dir: &Path, n: usize) {
        let other = SqliteStore::open(dir.join("orders.db")).unwrap();
        let ids = oms_core::store::OrderStore::order_ids(&other).unwrap();
        assert_eq!(ids.len(), n);
        for id in ids {
            let o = oms_core::store::OrderStore::order(&other, id).unwrap();
            assert_eq!(o.status, OrderStatus::Delivered);
        }
    }

    #[test]
    fn one_sqlite_lifecycle_per_worker_ends_delivered_and_captured() {
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig::sqlite(dir.path()).unwrap();
        let workers = rig.workers(2).unwrap();
        rig.run(&workers, 2).unwrap();
        let order = rig.lifecycle(&workers[0]).unwrap();
        assert_eq!(order.status, OrderStatus::Delivered);
        assert_eq!(
            order.payments[0].status(),
            oms_core::payment::PaymentStatus::Captured
        );
        assert_eq!(
            rig.gateway.total(oms_core::payment::GatewayOp::Capture),
            3000
        );
    }

    #[test]
    fn grouped_lifecycles_are_durable_at_each_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig::sqlite(dir.path()).unwrap();
        let (svc, store) = rig.grouped_worker().unwrap().unwrap();
        // 5 lifecycles in groups of 2: three commits, the last one short.
        rig.run_grouped(&svc, &store, 5, 2).unwrap();
        assert!(!store.in_batch().unwrap());
        assert_delivered(dir.path(), 5);
        let pg = Rig {
            backend: Backend::Postgres {
                url: "postgresql://127.0.0.1:1/none".into(),
                schema: "none".into(),
            },
            ids: Arc::new(AtomicIds::default()),
            gateway: Arc::new(FakeGateway::honouring_keys()),
            fraud: Arc::new(InMemoryFraudSignals::new()),
            clock: Arc::new(ManualClock::new(Timestamp::from_civil(2026, 5, 6, 9, 0, 0))),
            customers: AtomicU64::new(0),
        };
        assert!(pg.grouped_worker().unwrap().is_none());
    }

    #[test]
    fn pipelined_lifecycles_are_all_durable_when_the_run_returns() {
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig::sqlite(dir.path()).unwrap();
        let (svc, store) = rig.pipelined_worker().unwrap().unwrap();
        assert!(store.pipelined().unwrap());
        rig.run_grouped(&svc, &store, 5, 2).unwrap();
        assert_delivered(dir.path(), 5);
    }

    #[test]
    fn workers_sharing_a_pipelined_batch_finish_every_lifecycle_durably() {
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig::sqlite(dir.path()).unwrap();
        let (workers, store) = rig.shared_batch_workers(4).unwrap();
        // 14 lifecycles cut every 3: four rotations, then the last, short batch.
        rig.run_shared(&workers, &*store, 14, 3).unwrap();
        assert!(!store.in_batch().unwrap());
        assert_delivered(dir.path(), 14);
    }

    #[test]
    fn group_commit_workers_share_one_connection_and_finish_every_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig::sqlite(dir.path()).unwrap();
        let (workers, store) = rig.group_commit_workers(4).unwrap().unwrap();
        rig.run(&workers, 12).unwrap();
        let (writes, commits) = store.group_commit_counts().unwrap();
        assert!(
            commits >= 1 && writes >= commits,
            "{writes} writes, {commits} commits"
        );
        assert_delivered(dir.path(), 12);
    }

    #[test]
    fn latency_percentiles_are_nearest_rank() {
        let l = Latency::of((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(l.p50, Duration::from_millis(50));
        assert_eq!(l.p99, Duration::from_millis(99));
        assert_eq!(l.samples, 100);
    }

    #[test]
    fn sqlite_latency_measures_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let rig = Rig::sqlite(dir.path()).unwrap();
        let svc = rig.worker().unwrap();
        let (created, ids) = create_latency(&rig, &svc, 3).unwrap();
        assert_eq!((created.samples, ids.len()), (3, 3));
        assert!(created.p50 <= created.p99);
        let got = get_latency(&svc, &ids, 5).unwrap();
        assert_eq!(got.samples, 5);
    }
}
