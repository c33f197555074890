//! Crash safety of the stores (issue 6): an acknowledged order survives a crash with its audit
//! rows and outbox events, and a write cut short leaves nothing behind.
//!
//! SQLite: the test re-executes its own binary as a child process that streams `create_order`
//! (and some `cancel_order`) calls into a WAL file and prints each acknowledged one; the parent
//! kills it with SIGKILL at a seeded point while it keeps writing, reopens the file and checks
//! every row — with a commit per call, with calls grouped into batches (committed in line, or
//! pipelined: each batch's commit running while the next batch is written), and with four
//! writer threads sharing one store's group commit.
//!
//! PostgreSQL: a transaction is cut off by terminating its backend (and by dropping the client
//! without commit), both on a raw connection and inside `PostgresStore` writes held mid-way by
//! a lock; nothing of the interrupted write is visible and the store's next call works.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use oms_core::events::{names, Event};
use oms_core::fraud::InMemoryFraudSignals;
use oms_core::inventory::{InventoryStore, MemoryInventory, WarehouseId};
use oms_core::lifecycle::{Actor, OrderStatus};
use oms_core::money::{Currency, Money};
use oms_core::order::{AddressInput, Customer, LineItemInput, Order, OrderDraft, Sku};
use oms_core::payment::{FakeGateway, NoJitter};
use oms_core::pricing::{PricingContext, TaxTable};
use oms_core::service::{Dependencies, MemoryNotifier, OrderService, PaymentInput, ServiceConfig};
use oms_core::store::{IdempotencyRecord, MemoryStore, OrderStore};
use oms_core::time::{ManualClock, SequentialIds, Timestamp};
use oms_store::{PostgresStore, SqliteStore};
use rust_decimal::Decimal;

// ---------------------------------------------------------------------------------------------
// A service on a given order store (inventory, gateway and fraud facts stay in memory)

fn service(orders: Arc<dyn OrderStore>, first_id: u64) -> OrderService {
    let clock = Arc::new(ManualClock::new(Timestamp::from_civil(2026, 5, 6, 9, 0, 0)));
    let ids = Arc::new(SequentialIds::starting_at(first_id));
    let inventory = Arc::new(MemoryInventory::new(ids.clone()));
    let wh = WarehouseId::new("WH1").unwrap();
    inventory.add_warehouse(&wh).unwrap();
    for sku in ["A", "B"] {
        inventory
            .receive(&Sku::new(sku).unwrap(), &wh, 10_000_000)
            .unwrap();
    }
    let deps = Dependencies {
        orders,
        inventory,
        gateway: Arc::new(FakeGateway::honouring_keys()),
        fraud: Arc::new(InMemoryFraudSignals::new()),
        notifier: Arc::new(MemoryNotifier::default()),
        clock: clock.clone(),
        ids,
        pause: clock,
        jitter: Arc::new(NoJitter),
    };
    let pricing = PricingContext {
        tax: TaxTable::new().with_rate("US", "standard", Decimal::ZERO),
        ..PricingContext::default()
    };
    OrderService::new(deps, ServiceConfig::new(vec![wh], pricing)).unwrap()
}

/// The `n`th order of a stream: its own customer, one or two lines.
fn draft(n: u64) -> OrderDraft {
    let usd = |s: &str| Money::parse(s, Currency::USD).unwrap();
    let mut lines = vec![LineItemInput::new("A", 1 + sql(n % 3), usd("10.00"))];
    if n % 2 == 1 {
        lines.push(LineItemInput::new("B", 1, usd("25.00")));
    }
    OrderDraft {
        customer: Customer {
            id: format!("c{n}").into(),
            email: format!("c{n}@example.com").into(),
            name: format!("Customer {n}").into(),
        },
        shipping_address: AddressInput {
            name: format!("Customer {n}"),
            line1: "1 Main St".into(),
            city: "New York".into(),
            region: "NY".into(),
            postal_code: "10001".into(),
            country: "US".into(),
            ..AddressInput::default()
        },
        billing_address: None,
        currency: Currency::USD,
        lines,
        promo_codes: vec![],
    }
}

fn place(svc: &OrderService, n: u64) -> Order {
    svc.create_order(
        &draft(n),
        &PaymentInput::new("card-4242"),
        &Actor::Customer(format!("c{n}").into()),
        Some(&key(n)),
    )
    .unwrap()
}

fn key(n: u64) -> String {
    format!("create-{n}")
}

/// An id or version as the signed column type.
fn sql(v: u64) -> i64 {
    i64::try_from(v).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Row-level completeness, the same for both databases

/// Raw reads of the tables under a store, bypassing it.
trait Rows {
    /// `(line_id, sku, quantity)` of an order's item rows, by line.
    fn items(&mut self, order_id: u64) -> Vec<(i64, String, i64)>;
    /// `to_state` of an order's audit rows, oldest first.
    fn audit(&mut self, order_id: u64) -> Vec<String>;
    /// `(name, version)` of an order's outbox rows, in sequence.
    fn events(&mut self, order_id: u64) -> Vec<(String, i64)>;
    /// Item, audit and outbox rows whose order is not stored.
    fn orphans(&mut self) -> i64;
    /// Whether an idempotency key is stored.
    fn has_key(&mut self, key: &str) -> bool;
}

/// An order is whole: its document parses, its item rows are its lines, its audit rows are its
/// history, and its outbox starts with `order.created` and reaches its version.
fn assert_whole(store: &dyn OrderStore, rows: &mut dyn Rows, id: u64) -> Order {
    let order = store
        .order(id)
        .unwrap_or_else(|e| panic!("order {id}: {e}"));
    let lines: Vec<(i64, String, i64)> = order
        .lines
        .iter()
        .map(|l| {
            (
                i64::from(l.line_id),
                l.sku.as_str().to_owned(),
                i64::from(l.quantity),
            )
        })
        .collect();
    assert_eq!(rows.items(id), lines, "{}: item rows", order.number);
    let history: Vec<String> = order.history.iter().map(|h| h.to.as_str().into()).collect();
    assert_eq!(rows.audit(id), history, "{}: audit rows", order.number);
    let events = rows.events(id);
    assert_eq!(
        events.first().map(|e| e.0.as_str()),
        Some(names::ORDER_CREATED),
        "{}: outbox {events:?}",
        order.number
    );
    assert_eq!(
        events.iter().map(|e| e.1).max(),
        Some(sql(order.version)),
        "{}: outbox reaches the order's version",
        order.number
    );
    order
}

/// Every stored order is whole and no row belongs to an order that is not stored.
fn assert_no_torn_order(store: &dyn OrderStore, rows: &mut dyn Rows) -> Vec<Order> {
    let orders: Vec<Order> = store
        .order_ids()
        .unwrap()
        .into_iter()
        .map(|id| assert_whole(store, rows, id))
        .collect();
    assert_eq!(rows.orphans(), 0, "rows of an order that is not stored");
    orders
}

impl Rows for rusqlite::Connection {
    fn items(&mut self, order_id: u64) -> Vec<(i64, String, i64)> {
        let mut s = self
            .prepare("SELECT line_id, sku, quantity FROM order_items WHERE order_id = ?1 ORDER BY line_id")
            .unwrap();
        s.query_map([sql(order_id)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn audit(&mut self, order_id: u64) -> Vec<String> {
        let mut s = self
            .prepare("SELECT to_state FROM order_state_transitions WHERE order_id = ?1 ORDER BY id")
            .unwrap();
        s.query_map([sql(order_id)], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn events(&mut self, order_id: u64) -> Vec<(String, i64)> {
        let mut s = self
            .prepare("SELECT name, version FROM events_outbox WHERE order_id = ?1 ORDER BY seq")
            .unwrap();
        s.query_map([sql(order_id)], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn orphans(&mut self) -> i64 {
        self.query_row(ORPHANS, [], |r| r.get(0)).unwrap()
    }

    fn has_key(&mut self, key: &str) -> bool {
        self.query_row(
            "SELECT COUNT(*) FROM idempotency_keys WHERE key = ?1",
            [key],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            == 1
    }
}

const ORPHANS: &str = "SELECT
    (SELECT COUNT(*) FROM order_items WHERE order_id NOT IN (SELECT id FROM orders))
  + (SELECT COUNT(*) FROM order_state_transitions WHERE order_id NOT IN (SELECT id FROM orders))
  + (SELECT COUNT(*) FROM events_outbox WHERE order_id NOT IN (SELECT id FROM orders))";

impl Rows for postgres::Client {
    fn items(&mut self, order_id: u64) -> Vec<(i64, String, i64)> {
        self.query(
            "SELECT line_id, sku, quantity FROM order_items WHERE order_id = $1 ORDER BY line_id",
            &[&sql(order_id)],
        )
        .unwrap()
        .iter()
        .map(|r| {
            (
                i64::from(r.get::<_, i32>(0)),
                r.get(1),
                i64::from(r.get::<_, i32>(2)),
            )
        })
        .collect()
    }

    fn audit(&mut self, order_id: u64) -> Vec<String> {
        self.query(
            "SELECT to_state FROM order_state_transitions WHERE order_id = $1 ORDER BY id",
            &[&sql(order_id)],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    fn events(&mut self, order_id: u64) -> Vec<(String, i64)> {
        self.query(
            "SELECT name, version FROM events_outbox WHERE order_id = $1 ORDER BY seq",
            &[&sql(order_id)],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }

    fn orphans(&mut self) -> i64 {
        self.query_one(ORPHANS, &[]).unwrap().get(0)
    }

    fn has_key(&mut self, key: &str) -> bool {
        self.query_one(
            "SELECT COUNT(*) FROM idempotency_keys WHERE key = $1",
            &[&key],
        )
        .unwrap()
        .get::<_, i64>(0)
            == 1
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite: kill a writer process mid-stream

/// Set in the child: the SQLite file it writes to.
const WRITER_DB: &str = "OMS_CRASH_WRITER_DB";
/// The child's test name, run with `--exact`.
const WRITER_TEST: &str = "sqlite_writer_acknowledges_only_committed_orders";

/// Set in the child: orders per batch commit (absent or 0: every call commits by itself).
const WRITER_BATCH: &str = "OMS_CRASH_WRITER_BATCH";
/// Set in the child: orders per pipelined batch (each batch commits on a thread of its own
/// while the next one runs).
const WRITER_PIPELINED: &str = "OMS_CRASH_WRITER_PIPELINED";

/// Cancel `before` with an idempotency key of its own; the `ack` line for it.
fn cancel(svc: &OrderService, before: &Order) -> String {
    let key = format!("cancel-{}", before.id);
    let cancelled = svc
        .cancel_order(
            before.id,
            &Actor::Staff("s1".into()),
            "changed mind",
            Some(&key),
        )
        .unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    format!("ack {} {key}", before.number)
}

/// Set in the child: writer threads sharing one store with group commit (absent or 0: one
/// writer, no group commit).
const WRITER_THREADS: &str = "OMS_CRASH_WRITER_THREADS";

/// `threads` writers share one store with group commit on; writer `t` places orders
/// `t * 1_000_000 + 1, + 2, …` (and every third, cancels its order before), each on a service of
/// its own, calling `say("ack <number> <idempotency key>")` as soon as a call returns — which
/// with group commit means it is durable. Stops when `say` returns false.
fn write_stream_grouped(
    path: &Path,
    limit: u64,
    threads: u64,
    say: &(dyn Fn(String) -> bool + Sync),
) {
    let store = Arc::new(SqliteStore::open(path).unwrap());
    store.enable_group_commit().unwrap();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = store.clone();
            scope.spawn(move || {
                let svc = service(store, 1 + t * 1_000_000_000);
                let mut previous: Option<Order> = None;
                for k in 1..=limit {
                    let n = t * 1_000_000 + k;
                    let order = place(&svc, n);
                    if !say(format!("ack {} {}", order.number, key(n))) {
                        return;
                    }
                    if let (0, Some(before)) = (k % 3, previous.take()) {
                        if !say(cancel(&svc, &before)) {
                            return;
                        }
                    }
                    previous = Some(order);
                }
            });
        }
    });
}

/// Write orders 1, 2, … to the SQLite file at `path` through the order service, printing
/// `write …` before each `create_order` (and, every third order, a `cancel_order` of the order
/// before) and `ack <number> <idempotency key>` once the call is durable: right after it, or,
/// with `batch > 0`, after the commit of the batch of `batch` orders it belongs to — with
/// `pipelined` batches, once the next `commit_batch` (or the final `wait_for_commit`) has
/// reported that commit.
fn write_stream(path: &Path, limit: u64, batch: u64, pipelined: bool, out: &mut dyn Write) {
    let store = Arc::new(SqliteStore::open(path).unwrap());
    if pipelined {
        store.pipeline_batches().unwrap();
    }
    let svc = service(store.clone(), 1);
    // A closed pipe means the parent is gone: stop rather than write into the void.
    let mut say = |line: String| writeln!(out, "{line}").and_then(|()| out.flush()).is_ok();
    let mut previous: Option<Order> = None;
    let mut unacked: Vec<String> = Vec::new();
    // Pipelined: the batch whose commit is running, acknowledged when it is reported.
    let mut committing: Vec<String> = Vec::new();
    for n in 1..=limit {
        if batch > 0 && !store.in_batch().unwrap() {
            store.begin_batch().unwrap();
        }
        if !say(format!("write {n}")) {
            return;
        }
        let order = place(&svc, n);
        unacked.push(format!("ack {} {}", order.number, key(n)));
        if batch == 0 && !unacked.drain(..).all(&mut say) {
            return;
        }
        // Every third order, cancel the one before it, so update_order is cut short too.
        if let (0, Some(before)) = (n % 3, previous.take()) {
            if !say(format!("write cancel {}", before.number)) {
                return;
            }
            unacked.push(cancel(&svc, &before));
            if batch == 0 && !unacked.drain(..).all(&mut say) {
                return;
            }
        }
        previous = Some(order);
        if batch > 0 && (n % batch == 0 || n == limit) {
            store.commit_batch().unwrap();
            if pipelined {
                // The commit before this one has ended well; this one is under way.
                let reported = std::mem::replace(&mut committing, std::mem::take(&mut unacked));
                if !reported.into_iter().all(&mut say) {
                    return;
                }
            } else if !unacked.drain(..).all(&mut say) {
                return;
            }
        }
    }
    store.wait_for_commit().unwrap();
    let _ = committing.into_iter().all(&mut say);
}

/// In the child process this is the writer (it runs until killed). Run directly, it writes a
/// short stream and checks that what it acknowledged is stored whole.
#[test]
fn sqlite_writer_acknowledges_only_committed_orders() {
    if let Ok(path) = std::env::var(WRITER_DB) {
        let mut out = std::io::stdout().lock();
        // The harness has printed `test NAME ... ` without a line end: end it, so the first
        // ack starts a line of its own.
        writeln!(out).unwrap();
        let batch = std::env::var(WRITER_BATCH)
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(0);
        let threads: u64 = std::env::var(WRITER_THREADS)
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(0);
        if threads > 0 {
            drop(out);
            let say = |line: String| {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
            };
            write_stream_grouped(Path::new(&path), 1_000_000, threads, &say);
        } else {
            let pipelined = std::env::var(WRITER_PIPELINED)
                .ok()
                .and_then(|b| b.parse().ok())
                .unwrap_or(0);
            if pipelined > 0 {
                write_stream(Path::new(&path), 1_000_000, pipelined, true, &mut out);
            } else {
                write_stream(Path::new(&path), 1_000_000, batch, false, &mut out);
            }
        }
        return;
    }
    let dir = temp_dir("writer");
    for (batch, pipelined) in [(0, false), (3, false), (3, true)] {
        let path = dir.join(format!("orders-{batch}-{pipelined}.db"));
        let mut out = Vec::new();
        write_stream(&path, 4, batch, pipelined, &mut out);
        let acks = parse_acks(&String::from_utf8(out).unwrap());
        assert_eq!(acks.len(), 5, "four creates and one cancel: {acks:?}");
        check_reopened(&path, &acks);
    }
    let path = dir.join("orders-grouped.db");
    let lines = std::sync::Mutex::new(Vec::new());
    write_stream_grouped(&path, 4, 3, &|line| {
        lines.lock().unwrap().push(line);
        true
    });
    let acks = parse_acks(&lines.into_inner().unwrap().join("\n"));
    assert_eq!(
        acks.len(),
        15,
        "three writers, four creates and one cancel each: {acks:?}"
    );
    assert_eq!(check_reopened(&path, &acks), 12);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The checks above can fail: a stored order missing an audit row, outbox rows whose order is
/// gone, and a lost acknowledged order are each reported.
#[test]
fn torn_rows_are_detected() {
    let dir = temp_dir("torn");
    let path = dir.join("orders.db");
    let mut out = Vec::new();
    write_stream(&path, 2, 0, false, &mut out);
    let acks = parse_acks(&String::from_utf8(out).unwrap());
    let store = SqliteStore::open(&path).unwrap();
    let ids = store.order_ids().unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "DELETE FROM order_state_transitions WHERE id =
         (SELECT MAX(id) FROM order_state_transitions WHERE order_id = ?1)",
        [sql(ids[0])],
    )
    .unwrap();
    assert!(
        refusal(|| check_reopened(&path, &acks)).contains("audit rows"),
        "a missing audit row went unnoticed"
    );
    raw.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    raw.execute("DELETE FROM order_items WHERE order_id = ?1", [sql(ids[0])])
        .unwrap();
    raw.execute(
        "DELETE FROM order_state_transitions WHERE order_id = ?1",
        [sql(ids[0])],
    )
    .unwrap();
    raw.execute("DELETE FROM orders WHERE id = ?1", [sql(ids[0])])
        .unwrap();
    // Order 1 is gone but its outbox rows remain; order 2 alone is acknowledged.
    assert!(
        refusal(|| check_reopened(&path, &acks[1..])).contains("not stored"),
        "orphan outbox rows went unnoticed"
    );
    raw.execute(
        "DELETE FROM events_outbox WHERE order_id = ?1",
        [sql(ids[0])],
    )
    .unwrap();
    assert!(
        refusal(|| check_reopened(&path, &acks)).contains("lost"),
        "a lost acknowledged order went unnoticed"
    );
    assert_eq!(check_reopened(&path, &acks[1..]), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The panic message of a check that must fail.
fn refusal(check: impl FnOnce() -> usize + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(check).expect_err("the check passed");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oms-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `(order number, idempotency key)` of every `ack` line.
fn parse_acks(text: &str) -> Vec<(String, String)> {
    text.lines().filter_map(parse_ack).collect()
}

fn parse_ack(line: &str) -> Option<(String, String)> {
    let mut words = line.strip_prefix("ack ")?.split(' ');
    Some((words.next()?.to_owned(), words.next()?.to_owned()))
}

/// Reopen the file with a new store: every acknowledged order is there, whole, with its
/// idempotency key, and nothing stored is torn. Returns how many orders are stored.
fn check_reopened(path: &Path, acks: &[(String, String)]) -> usize {
    let store = SqliteStore::open(path).unwrap();
    let mut raw = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    let stored = assert_no_torn_order(&store, &mut raw);
    let numbers: BTreeSet<&str> = stored.iter().map(|o| o.number.as_str()).collect();
    for (number, key) in acks {
        assert!(
            numbers.contains(number.as_str()),
            "acknowledged {number} lost"
        );
        assert!(raw.has_key(key), "{number}: idempotency key {key} lost");
        if key.starts_with("cancel-") {
            let order = store.order_by_number(number).unwrap();
            assert_eq!(
                order.status,
                OrderStatus::Cancelled,
                "{number}: cancel lost"
            );
        }
    }
    // The outbox as the store reads it: one `order.created` per stored order.
    let created = store
        .pending_events(usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|e| e.name == names::ORDER_CREATED)
        .count();
    assert_eq!(created, stored.len());
    stored.len()
}

/// A small seeded generator (SplitMix64), so kill points are varied but replayable.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[test]
fn sqlite_kill_mid_stream_keeps_every_acknowledged_order_whole() {
    let mut rng = SplitMix(0x6f6d_735f_6372_6173);
    let exe = std::env::current_exe().unwrap();
    let dir = temp_dir("kill");
    let mut in_flight = 0;
    for run in 0..5 {
        // The last run goes long enough for SQLite to checkpoint the WAL into the main file
        // (1,000 pages) at least once before the kill.
        let kill_after = if run == 4 { 300 } else { 3 } + rng.next() % 60;
        // A further pause spreads the kill over the next write, not just its start.
        let pause = StdDuration::from_micros(rng.next() % 400);
        let path = dir.join(format!("run{run}.db"));
        let mut child = Command::new(&exe)
            .args([WRITER_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(WRITER_DB, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut acks = Vec::new();
        let mut last = String::new();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while (acks.len() as u64) < kill_after {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!("run {run}: the writer stopped after {} acks", acks.len())
                })
                .unwrap();
            acks.extend(parse_ack(&line));
            last = line;
        }
        // The writer is still streaming: it must not have ended on its own.
        assert!(
            child.try_wait().unwrap().is_none(),
            "run {run}: writer exited early"
        );
        std::thread::sleep(pause);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "run {run}: killed writer reported success"
        );
        // Acks the writer printed before dying but the parent had not read yet count too; the
        // last line says whether a call was under way when the kill landed.
        for line in lines.map_while(Result::ok) {
            acks.extend(parse_ack(&line));
            last = line;
        }
        let writing = last.starts_with("write ");
        let size =
            |ext: &str| std::fs::metadata(path.with_extension(ext)).map_or(0, |m| m.len() / 1024);
        let (db_kib, wal_kib) = (size("db"), size("db-wal"));
        let stored = check_reopened(&path, &acks);
        // A create under way may or may not have committed; otherwise every order is acked.
        let created = acks.iter().filter(|a| a.1.starts_with("create-")).count();
        let most = created + usize::from(last.starts_with("write ") && !last.contains("cancel"));
        assert!(
            (created..=most).contains(&stored),
            "run {run}: {stored} stored for {created} acknowledged creates (last line {last:?})"
        );
        in_flight += usize::from(writing);
        eprintln!(
            "run {run}: killed {pause:?} after {kill_after} read acks; {} acknowledged \
             ({created} creates), {stored} orders stored, last line {last:?}; \
             file {db_kib} KiB + WAL {wal_kib} KiB at the kill",
            acks.len()
        );
    }
    // The runs must exercise the interesting case: a kill in the middle of a write.
    assert!(in_flight > 0, "no kill landed during a write");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run the writer child on `path` with `mode` (an environment variable and its value), kill it
/// `pause` after it has printed `kill_after` acks, and return every ack it printed, including
/// those read after the kill.
fn kill_writer(
    path: &Path,
    mode: (&str, usize),
    kill_after: u64,
    pause: StdDuration,
) -> Vec<(String, String)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([WRITER_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(WRITER_DB, path)
        .env(mode.0, mode.1.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut acks = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while (acks.len() as u64) < kill_after {
        let line = lines.next().expect("the writer stopped").unwrap();
        acks.extend(parse_ack(&line));
    }
    std::thread::sleep(pause);
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    acks.extend(lines.map_while(Result::ok).filter_map(|l| parse_ack(&l)));
    acks
}

/// Kill a writer grouping 5 orders per batch (`mode`: in line or pipelined) three times at
/// seeded points; each time, what is stored is whole batches — every acknowledged order, plus
/// at most `unreported` batches whose commit had landed (or was under way) but whose orders had
/// not been acknowledged yet.
fn kill_batched_writer(name: &str, seed: u64, mode: &str, unreported: usize) {
    const BATCH: usize = 5;
    let mut rng = SplitMix(seed);
    let dir = temp_dir(name);
    for run in 0..3 {
        let kill_after = 3 + rng.next() % 40;
        let pause = StdDuration::from_micros(rng.next() % 400);
        let path = dir.join(format!("run{run}.db"));
        let acks = kill_writer(&path, (mode, BATCH), kill_after, pause);
        let stored = check_reopened(&path, &acks);
        let created = acks.iter().filter(|a| a.1.starts_with("create-")).count();
        assert_eq!(
            stored % BATCH,
            0,
            "run {run}: {stored} stored is not whole batches"
        );
        assert!(
            (created..=created + unreported * BATCH).contains(&stored),
            "run {run}: {stored} stored for {created} acknowledged creates"
        );
        eprintln!("run {run}: {created} acknowledged creates, {stored} orders stored");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Batches committed in line: a kill loses at most the batch under way, never part of one, and
/// never an order acknowledged after its batch's commit (at most one batch committed but not
/// yet acknowledged).
#[test]
fn sqlite_kill_mid_batch_loses_only_the_unacknowledged_batch() {
    kill_batched_writer("kill-batch", 0x6261_7463_685f_6b69, WRITER_BATCH, 1);
}

/// Pipelined batches: a kill loses at most the batch whose commit was under way and the one
/// being built, never part of one, and never an order acknowledged after its commit was
/// reported (at most one reported-but-unacknowledged batch and one under way).
#[test]
fn sqlite_kill_mid_pipelined_batches_loses_only_unreported_batches() {
    kill_batched_writer("kill-pipelined", 0x7069_7065_5f6b_696c, WRITER_PIPELINED, 2);
}

#[test]
fn sqlite_kill_mid_group_commit_keeps_every_acknowledged_write() {
    const THREADS: usize = 4;
    let mut rng = SplitMix(0x6772_6f75_705f_6b69);
    let dir = temp_dir("kill-group");
    for run in 0..3 {
        let kill_after = 5 + rng.next() % 80;
        let pause = StdDuration::from_micros(rng.next() % 400);
        let path = dir.join(format!("run{run}.db"));
        let acks = kill_writer(&path, (WRITER_THREADS, THREADS), kill_after, pause);
        // Every write acknowledged by any of the threads is stored whole; a write whose
        // shared commit landed just before the kill may be stored without its ack.
        let stored = check_reopened(&path, &acks);
        let created = acks.iter().filter(|a| a.1.starts_with("create-")).count();
        assert!(
            stored >= created,
            "run {run}: {stored} stored, {created} acknowledged"
        );
        assert!(
            stored <= created + THREADS,
            "run {run}: {stored} stored, but only {created} acknowledged and {THREADS} in flight"
        );
        eprintln!("run {run}: {created} acknowledged creates, {stored} orders stored");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: cut a transaction off

fn postgres_url() -> String {
    std::env::var("OMS_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "OMS_TEST_DATABASE_URL is not set. Run scripts/test (it starts a throwaway PostgreSQL on \
             127.0.0.1), or start one yourself and export \
             OMS_TEST_DATABASE_URL=postgresql://USER@127.0.0.1:PORT/DB"
        )
    })
}

/// A fresh schema for `test`, a store on it whose connections carry the schema's name as their
/// application name (so the test can find its backends), a raw client reading the same schema,
/// and the schema's name.
fn postgres(test: &str) -> (PostgresStore, postgres::Client, String) {
    let schema = format!("crash_{test}_{}", std::process::id());
    let base = postgres_url();
    let mut raw = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    raw.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}application_name={schema}");
    let store = PostgresStore::connect_with_schema(&url, &schema).unwrap();
    raw.batch_execute(&format!("SET search_path TO {schema}"))
        .unwrap();
    (store, raw, schema)
}

/// A connection outside the store on `schema`, named `<schema>_raw`.
fn raw_client(schema: &str) -> postgres::Client {
    let base = postgres_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}application_name={schema}_raw");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute(&format!("SET search_path TO {schema}"))
        .unwrap();
    c
}

/// What is visible through the store: ids and the pending outbox.
fn snapshot(store: &dyn OrderStore) -> (Vec<u64>, Vec<Event>) {
    (
        store.order_ids().unwrap(),
        store.pending_events(usize::MAX).unwrap(),
    )
}

/// Orders made on a memory store (so the test holds each order and its events before any
/// PostgreSQL write): order `n` is placed by customer `n`.
struct Shadow {
    svc: OrderService,
    mem: Arc<MemoryStore>,
}

impl Shadow {
    fn new(first_id: u64) -> Shadow {
        let mem = Arc::new(MemoryStore::new());
        Shadow {
            svc: service(mem.clone(), first_id),
            mem,
        }
    }

    /// The events of `order` with versions in `after < v <= order.version`.
    fn events(&self, order: &Order, after: u64) -> Vec<Event> {
        self.mem
            .pending_events(usize::MAX)
            .unwrap()
            .into_iter()
            .filter(|e| e.order_id == order.id && e.version > after && e.version <= order.version)
            .collect()
    }
}

#[test]
fn postgres_connection_lost_mid_transaction_leaves_nothing() {
    let (store, mut raw, schema) = postgres("raw");
    let svc = service(
        Arc::new(PostgresStore::connect_with_schema(&postgres_url(), &schema).unwrap()),
        1,
    );
    let before: Vec<Order> = (1..=3).map(|n| place(&svc, n)).collect();
    let seen = snapshot(&store);

    // Part of an order written by hand, the way the store writes it, then cut off.
    let shadow = Shadow::new(1_000);
    let torn = place(&shadow.svc, 4);
    let doc = serde_json::to_string(&torn).unwrap();
    let id = sql(torn.id);
    let write_part = |c: &mut postgres::Client| {
        c.batch_execute("BEGIN").unwrap();
        c.execute(
            "INSERT INTO orders (id, order_number, user_id, status, currency, total_amount, version,
                                 shipping_address, billing_address, created_at, updated_at, document)
             VALUES ($1, $2, 'c4', 'confirmed', 'USD', 10, $3, '{}', '{}', 0, 0, $4)",
            &[&id, &torn.number.as_str(), &sql(torn.version), &doc],
        )
        .unwrap();
        c.execute(
            "INSERT INTO order_items (order_id, line_id, sku, quantity, unit_price, tax_class)
             VALUES ($1, 1, 'A', 2, 10, 'standard')",
            &[&id],
        )
        .unwrap();
        c.execute(
            "INSERT INTO order_state_transitions (order_id, to_state, event, reason, metadata, created_by, created_at)
             VALUES ($1, 'pending', 'create', '', '[]', 'system', 0)",
            &[&id],
        )
        .unwrap();
        c.execute(
            "INSERT INTO events_outbox (order_id, version, name, at, data) VALUES ($1, 1, 'order.created', 0, '[]')",
            &[&id],
        )
        .unwrap();
    };

    // 1. The backend is terminated while the transaction is open.
    let mut victim = raw_client(&schema);
    write_part(&mut victim);
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let killed: bool = raw
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(killed);
    assert!(
        victim.batch_execute("COMMIT").is_err(),
        "a terminated backend cannot commit"
    );
    assert_eq!(
        snapshot(&store),
        seen,
        "nothing of the cut-off transaction is visible"
    );
    assert_eq!(store.order(torn.id).unwrap_err().code(), "order_not_found");

    // 2. The client goes away without committing.
    let mut dropped = raw_client(&schema);
    write_part(&mut dropped);
    drop(dropped);
    // The server notices the closed socket asynchronously: wait until the backend is gone.
    wait_until(|| {
        raw.query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("{schema}_raw")],
        )
        .unwrap()
        .get::<_, i64>(0)
            == 0
    });
    assert_eq!(snapshot(&store), seen);
    assert_eq!(
        store.order_by_number(&torn.number).unwrap_err().code(),
        "order_not_found"
    );

    // The orders written before are whole, and the space is free for the real write.
    let stored = assert_no_torn_order(&store, &mut raw);
    assert_eq!(stored, before);
    store
        .insert_order(&torn, &shadow.events(&torn, 0), None)
        .unwrap();
    assert_whole(&store, &mut raw, torn.id);
}

/// Poll `done` for up to five seconds.
fn wait_until(mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < StdDuration::from_secs(5), "timed out");
        std::thread::sleep(StdDuration::from_millis(10));
    }
}

/// The backend of `app` that waits on a lock.
fn waiting_backend(raw: &mut postgres::Client, app: &str) -> i32 {
    let mut pid = None;
    wait_until(|| {
        pid = raw
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&app],
            )
            .unwrap()
            .map(|r| r.get(0));
        pid.is_some()
    });
    pid.unwrap()
}

/// Run `write` on a thread until its backend (application `app`) waits on a lock, terminate
/// that backend, and return what the write returned.
fn cut_off(
    raw: &mut postgres::Client,
    app: &str,
    write: Box<dyn FnOnce() -> oms_core::error::OmsResult<()> + Send>,
) -> oms_core::error::OmsResult<()> {
    let writer = std::thread::spawn(write);
    let pid = waiting_backend(raw, app);
    let killed: bool = raw
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(killed);
    writer.join().unwrap()
}

#[test]
fn postgres_store_write_cut_off_between_statements_then_next_call_works() {
    let (store, mut raw, schema) = postgres("store");
    let store = Arc::new(store);
    let shadow = Shadow::new(1);
    let a = place(&shadow.svc, 1);
    let b = place(&shadow.svc, 2);
    let c = place(&shadow.svc, 3);
    let a_cancelled = shadow
        .svc
        .cancel_order(a.id, &Actor::Staff("s1".into()), "changed mind", None)
        .unwrap();
    assert!(a_cancelled.version > a.version && a_cancelled.history.len() > a.history.len());
    let rec = |n: &str| IdempotencyRecord {
        fingerprint: format!("crash:{n}"),
        response: n.into(),
    };
    store
        .insert_order(&a, &shadow.events(&a, 0), Some(("k-a", &rec("a"))))
        .unwrap();
    store
        .insert_order(&b, &shadow.events(&b, 0), Some(("k-b", &rec("b"))))
        .unwrap();
    let seen = snapshot(store.as_ref());

    // Another transaction holds the idempotency keys the next writes store: each write then
    // waits on that lock after its order row is written and before its audit and outbox rows.
    let mut blocker = raw_client(&schema);
    blocker
        .batch_execute(
            "BEGIN; INSERT INTO idempotency_keys (key, fingerprint, response)
             VALUES ('k-c', 'other', 'other'), ('k-a2', 'other', 'other')",
        )
        .unwrap();

    // An insert cut off after its order row.
    let (s, o, ev) = (store.clone(), c.clone(), shadow.events(&c, 0));
    let err = cut_off(
        &mut raw,
        &schema,
        Box::new(move || s.insert_order(&o, &ev, Some(("k-c", &rec("c"))))),
    )
    .unwrap_err();
    assert_eq!(err.code(), "storage", "{err}");
    assert_eq!(store.order(c.id).unwrap_err().code(), "order_not_found");

    // An update cut off after its order row.
    let (s, o, ev) = (
        store.clone(),
        a_cancelled.clone(),
        shadow.events(&a_cancelled, a.version),
    );
    let version = a.version;
    let err = cut_off(
        &mut raw,
        &schema,
        Box::new(move || s.update_order(&o, version, &ev, Some(("k-a2", &rec("a2"))))),
    )
    .unwrap_err();
    assert_eq!(err.code(), "storage", "{err}");

    blocker.batch_execute("ROLLBACK").unwrap();
    // Nothing of either write is visible; what was there before is whole and unchanged.
    assert_eq!(snapshot(store.as_ref()), seen);
    assert_eq!(store.order(a.id).unwrap(), a);
    assert_eq!(
        assert_no_torn_order(store.as_ref(), &mut raw),
        vec![a.clone(), b.clone()]
    );
    assert!(!raw.has_key("k-c") && !raw.has_key("k-a2"));

    // The store dropped the dead connections: the same writes now go through.
    store
        .insert_order(&c, &shadow.events(&c, 0), Some(("k-c", &rec("c"))))
        .unwrap();
    store
        .update_order(
            &a_cancelled,
            a.version,
            &shadow.events(&a_cancelled, a.version),
            Some(("k-a2", &rec("a2"))),
        )
        .unwrap();
    let stored = assert_no_torn_order(store.as_ref(), &mut raw);
    assert_eq!(stored, vec![a_cancelled, b, c]);
    assert!(raw.has_key("k-c") && raw.has_key("k-a2"));
}

#[test]
fn postgres_store_replaces_a_pooled_connection_that_died_idle() {
    let (store, mut raw, schema) = postgres("idle");
    let shadow = Shadow::new(1);
    let (a, b) = (place(&shadow.svc, 1), place(&shadow.svc, 2));
    store.insert_order(&a, &shadow.events(&a, 0), None).unwrap();
    // The pooled connection's backend goes away between calls (restart, idle timeout, admin).
    let idle: Vec<i32> = raw
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            &[&schema],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(idle.len(), 1, "one pooled connection");
    raw.execute("SELECT pg_terminate_backend($1)", &[&idle[0]])
        .unwrap();
    wait_until(|| {
        raw.query_one(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1",
            &[&idle[0]],
        )
        .unwrap()
        .get::<_, i64>(0)
            == 0
    });
    // The very next write goes through on a new connection.
    store.insert_order(&b, &shadow.events(&b, 0), None).unwrap();
    assert_eq!(assert_no_torn_order(&store, &mut raw), vec![a, b]);
}
