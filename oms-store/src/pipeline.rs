//! Pipelined batches on SQLite: a batch's commit runs on a thread of its own while the next
//! batch already runs, in memory, on top of it (see `SqliteStore::pipeline_batches`).
//!
//! A batch keeps its order rows, held rows and inventory rows in memory until its commit
//! anyway (see `SqliteStore::begin_batch`); what a classic batch still needs the connection
//! for is reading the rows it has not touched yet, inserting new order rows (to claim their id
//! and number) and holding the write lock. A pipelined batch reads those rows through a second,
//! read-only connection instead, checks new orders' ids and numbers against that connection
//! and the batches still in memory, and takes the write lock only at its commit, which another
//! thread runs: the batch is sealed (nothing changes it any more) and stays readable, so the
//! next batch reads its rows from it first, then from the database.
//!
//! Reading without the write lock is safe because nothing else writes: the writing connection
//! checks SQLite's `data_version` at the start of each commit, and if any other connection
//! committed since this store's previous commit, the batch is refused (and so is every later
//! one built on it), so a row read earlier can never be overwritten with a stale value.
//!
//! A third connection, on a thread of its own ([`checkpointer`]), copies committed WAL frames
//! into the database file after each commit, so the commit thread rarely pays for SQLite's
//! automatic checkpoint inside a COMMIT.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::Connection;

use oms_core::error::{OmsError, OmsResult};
use oms_core::inventory::{Reservation, StockLevel, StockRow, WarehouseId};
use oms_core::order::Sku;
use oms_core::time::Timestamp;

use crate::children::HeldRows;
use crate::codec::storage;
use crate::inventory::{Key, Ledger};
use crate::overlay::{InventoryOverlay, Known};
use crate::sqlite::DeferredRows;
use crate::sqlite_inventory::SqliteLedger;

/// A batch whose commit is running: its rows, read-only from now on.
#[derive(Debug, Default)]
pub(crate) struct Sealed {
    /// The newest version of every order the batch wrote (new ones marked so).
    pub(crate) orders: DeferredRows,
    /// Its audit, outbox and idempotency rows.
    pub(crate) held: HeldRows,
    /// Its stock, reservation and warehouse rows.
    pub(crate) overlay: InventoryOverlay,
    /// The numbers of the orders it created.
    pub(crate) numbers: HashSet<String>,
}

/// The pipelining state of one store.
#[derive(Debug, Default)]
pub(crate) struct Pipeline {
    /// Batches are pipelined (`SqliteStore::pipeline_batches`).
    pub(crate) enabled: bool,
    /// A pipelined batch is open: its rows are in memory and nothing of it is on the writing
    /// connection.
    pub(crate) open: bool,
    /// The open batch continued as an ordinary one (a read needed the database itself): its
    /// transaction is open on the writing connection.
    pub(crate) continued: bool,
    /// The numbers of the orders the open batch created.
    pub(crate) numbers: HashSet<String>,
    /// The batch whose commit is running (or ran and is not settled yet).
    pub(crate) sealed: Option<Arc<Sealed>>,
    /// The thread running that commit.
    pub(crate) in_flight: Option<JoinHandle<OmsResult<()>>>,
    /// The writing connection's `data_version` after this store's last commit: a different
    /// value at the next commit means another connection wrote in between.
    pub(crate) data_version: i64,
    /// Why the open batch is lost: the commit it was built on failed.
    pub(crate) failed: Option<String>,
    /// Wakes the checkpointer after each commit ([`checkpointer`]).
    pub(crate) checkpoint: Option<Sender<()>>,
    /// The checkpointer's thread.
    pub(crate) checkpointer: Option<JoinHandle<()>>,
}

/// Copy committed WAL frames back into the database file on a connection and thread of its
/// own, each time a pipelined commit ends (`PRAGMA wal_checkpoint(PASSIVE)`: as much as it can
/// without waiting for or blocking anyone). Otherwise the commit thread does it inside the
/// COMMIT that crosses `wal_autocheckpoint`, while the next batch waits for that commit; done
/// here, that commit finds little left to copy, and the WAL still restarts as usual. A
/// checkpoint that fails or is busy is left to the next one (or to the automatic one).
pub(crate) fn checkpointer(conn: Connection) -> std::io::Result<(Sender<()>, JoinHandle<()>)> {
    let (wake, woken) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("oms-sqlite-checkpoint".into())
        .spawn(move || {
            while woken.recv().is_ok() {
                // Commits that ended meanwhile are covered by one checkpoint.
                while woken.try_recv().is_ok() {}
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        })?;
    Ok((wake, thread))
}

impl Pipeline {
    /// Refuse work on an open batch that was built on a failed commit.
    pub(crate) fn check(&self) -> OmsResult<()> {
        match &self.failed {
            Some(reason) => Err(storage(format!(
                "the batch before this one failed to commit ({reason}); roll this batch back"
            ))),
            None => Ok(()),
        }
    }
}

/// The rows a pipelined batch reads through: the sealed batch's overlay first (its rows are
/// newer than the database's until its commit ends), then the read-only connection. Writes
/// never reach it: the operation's own overlay keeps them.
pub(crate) struct Layered<'a, D = SqliteLedger<'a>> {
    pub(crate) sealed: Option<&'a InventoryOverlay>,
    pub(crate) db: D,
}

fn read_only() -> OmsError {
    storage("a pipelined batch writes inventory rows only at its commit")
}

impl<D: Ledger<Error = OmsError>> Ledger for Layered<'_, D> {
    type Error = OmsError;

    fn sku_known(&mut self, sku: &Sku) -> OmsResult<bool> {
        match self.sealed.and_then(|s| s.known_sku(sku)) {
            Some(known) => Ok(known),
            None => self.db.sku_known(sku),
        }
    }

    fn warehouse_known(&mut self, warehouse: &WarehouseId) -> OmsResult<bool> {
        match self.sealed.and_then(|s| s.known_warehouse(warehouse)) {
            Some(known) => Ok(known),
            None => self.db.warehouse_known(warehouse),
        }
    }

    fn add_warehouse(&mut self, _warehouse: &WarehouseId) -> OmsResult<()> {
        Err(read_only())
    }

    fn level(&mut self, key: &Key, _lock: bool) -> OmsResult<Option<StockLevel>> {
        match self.sealed.map_or(Known::Unknown, |s| s.known_level(key)) {
            Known::Unknown => self.db.level(key, false),
            Known::Absent => Ok(None),
            Known::Present(level) => Ok(Some(level)),
        }
    }

    fn put_level(&mut self, _key: &Key, _level: StockLevel) -> OmsResult<()> {
        Err(read_only())
    }

    fn reserve_units(&mut self, _key: &Key, _quantity: u64) -> OmsResult<bool> {
        Err(read_only())
    }

    fn levels(&mut self) -> OmsResult<Vec<StockRow>> {
        let stored = self.db.levels()?;
        Ok(match self.sealed {
            Some(sealed) => sealed.over_levels(stored),
            None => stored,
        })
    }

    fn reservation(&mut self, id: u64, _lock: bool) -> OmsResult<Option<Reservation>> {
        match self
            .sealed
            .map_or(Known::Unknown, |s| s.known_reservation(id))
        {
            Known::Unknown => self.db.reservation(id, false),
            Known::Absent => Ok(None),
            Known::Present(r) => Ok(Some(r.clone())),
        }
    }

    fn insert_reservation(&mut self, _r: &Reservation) -> OmsResult<bool> {
        Err(read_only())
    }

    fn update_reservation(&mut self, _r: &Reservation, _shipped_changed: bool) -> OmsResult<()> {
        Err(read_only())
    }

    fn expired_open(&mut self, now: Timestamp) -> OmsResult<Vec<Reservation>> {
        let stored = self.db.expired_open(now)?;
        let Some(sealed) = self.sealed else {
            return Ok(stored);
        };
        // The database's due reservations the sealed batch did not touch, then every due one
        // it holds; in id order.
        let mut due: BTreeMap<u64, Reservation> = stored
            .into_iter()
            .filter(|r| sealed.known_reservation(r.id) == Known::Unknown)
            .map(|r| (r.id, r))
            .collect();
        for r in sealed.open_and_due(now) {
            due.insert(r.id, r.clone());
        }
        Ok(due.into_values().collect())
    }

    fn reservations_for_order(&mut self, order_id: u64) -> OmsResult<Vec<Reservation>> {
        let stored = self.db.reservations_for_order(order_id)?;
        let Some(sealed) = self.sealed else {
            return Ok(stored);
        };
        let mut found: BTreeMap<u64, Reservation> = stored
            .into_iter()
            .filter(|r| sealed.known_reservation(r.id) == Known::Unknown)
            .map(|r| (r.id, r))
            .collect();
        for r in sealed.reservations_of_order(order_id) {
            found.insert(r.id, r.clone());
        }
        Ok(found.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use oms_core::events::{names, Event};
    use oms_core::inventory::{
        InventoryStore, ReservationConfig, ReservationRequest, ReservationStatus,
    };
    use oms_core::store::{order_response_json, IdempotencyRecord, OrderStore, Response};
    use oms_core::time::{Duration, SequentialIds, Timestamp};

    use super::*;
    use crate::sqlite::batch_tests::{count, order, refuse_events_named_refused, temp_db};
    use crate::{SqliteInventory, SqliteStore};

    const T0: Timestamp = Timestamp(1_000_000);

    fn sku(s: &str) -> Sku {
        Sku::new(s).unwrap()
    }

    fn wh(s: &str) -> WarehouseId {
        WarehouseId::new(s).unwrap()
    }

    /// A pipelined store on a fresh file, its inventory sharing the connection, with 5 units
    /// of sku A in WH1.
    fn pipelined(name: &str) -> (std::path::PathBuf, Arc<SqliteStore>, SqliteInventory) {
        let path = temp_db(&format!("pipeline-{name}"));
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let inv = SqliteInventory::sharing(
            store.clone(),
            Arc::new(SequentialIds::starting_at(1000)),
            ReservationConfig::default(),
        );
        inv.add_warehouse(&wh("WH1")).unwrap();
        inv.receive(&sku("A"), &wh("WH1"), 5).unwrap();
        store.pipeline_batches().unwrap();
        (path, store, inv)
    }

    #[test]
    fn the_next_batch_reads_and_changes_the_rows_of_the_batch_being_committed() {
        let (path, store, inv) = pipelined("layers");
        let ids = SequentialIds::default();
        let placed = order(&ids);
        store.begin_batch().unwrap();
        let created = Event::new(placed.id, 1, names::ORDER_CREATED, placed.created_at);
        store.insert_order(&placed, &[created], None).unwrap();
        let held = inv
            .reserve(
                &ReservationRequest::new(placed.id).item(sku("A"), wh("WH1"), 2),
                T0,
            )
            .unwrap()
            .into_reserved()
            .unwrap();
        // Another connection holds the write lock, so the commit waits (up to the busy
        // timeout) and the next batch runs while the first one is still only in memory.
        let blocker = SqliteStore::open(&path).unwrap();
        blocker
            .lock()
            .unwrap()
            .execute_batch("BEGIN IMMEDIATE")
            .unwrap();
        store.commit_batch().unwrap();
        assert!(store.sealed().unwrap().is_some());

        store.begin_batch().unwrap();
        assert_eq!(store.order(placed.id).unwrap(), placed);
        let mut changed = placed.clone();
        changed.version = 2;
        store.update_order(&changed, 1, &[], None).unwrap();
        // A second insert of the sealed order is a conflict, as it would be once stored.
        assert_eq!(
            store.insert_order(&placed, &[], None).unwrap_err().code(),
            "conflict"
        );
        assert_eq!(inv.stock(&sku("A"), &wh("WH1")).unwrap().reserved, 2);
        assert_eq!(inv.reservation(held.id).unwrap(), held);
        assert_eq!(
            inv.reservations_for_order(placed.id).unwrap(),
            vec![held.clone()]
        );
        let committed = inv.commit(held.id, T0).unwrap();
        assert_eq!(committed.status, ReservationStatus::Allocated);
        // Only 3 units are left: a request for 4 is refused on the sealed batch's counts.
        let short = inv
            .reserve(
                &ReservationRequest::new(99).item(sku("A"), wh("WH1"), 4),
                T0,
            )
            .unwrap();
        assert!(short.into_reserved().is_err());
        assert_eq!(
            store.order_ids_with_status(placed.status).unwrap(),
            vec![placed.id]
        );
        assert!(
            inv.expire(T0.plus(Duration::hours(1000)))
                .unwrap()
                .is_empty(),
            "a committed reservation never expires"
        );

        blocker.lock().unwrap().execute_batch("ROLLBACK").unwrap();
        store.commit_batch().unwrap();
        store.wait_for_commit().unwrap();
        let other = SqliteStore::open(&path).unwrap();
        assert_eq!(other.order(placed.id).unwrap(), changed);
        assert_eq!(other.pending_events(10).unwrap().len(), 1);
        let stock = SqliteInventory::open(&path, Arc::new(SequentialIds::default())).unwrap();
        assert_eq!(stock.stock(&sku("A"), &wh("WH1")).unwrap().allocated, 2);
        assert_eq!(
            stock.reservation(held.id).unwrap().status,
            ReservationStatus::Allocated
        );
    }

    #[test]
    fn a_record_responding_with_the_written_order_is_stored_as_that_version() {
        let (_path, store, _inv) = pipelined("written");
        let ids = SequentialIds::default();
        let record = IdempotencyRecord {
            fingerprint: "create_order:f".into(),
            response: Response::WrittenOrder,
        };
        let (kept, changed) = (order(&ids), order(&ids));
        store.begin_batch().unwrap();
        // One order is stored at the version its record responds with (the commit reuses the
        // document it encodes anyway), the other changes again in the same batch.
        store
            .insert_order(&kept, &[], Some(("k-kept", &record)))
            .unwrap();
        store
            .insert_order(&changed, &[], Some(("k-changed", &record)))
            .unwrap();
        let mut later = changed.clone();
        later.version = 2;
        later.promo_codes.push("LATER".into());
        store.update_order(&later, 1, &[], None).unwrap();
        store.commit_batch().unwrap();
        store.wait_for_commit().unwrap();
        let (stored, document) = {
            let conn = store.lock().unwrap();
            let column = |sql: &str, key: &dyn rusqlite::ToSql| -> rusqlite::types::Value {
                conn.query_row(sql, [key], |r| r.get(0)).unwrap()
            };
            let response = "SELECT response FROM idempotency_keys WHERE key = ?1";
            let document = "SELECT document FROM orders WHERE id = ?1";
            (
                [column(response, &"k-kept"), column(response, &"k-changed")],
                [column(document, &kept.id), column(document, &changed.id)],
            )
        };
        // The kept order's record holds the very bytes of its row; the changed one's holds the
        // version it responded with, which its row no longer does.
        assert_eq!(stored[0], document[0]);
        assert_ne!(stored[1], document[1]);
        let json =
            |v: &rusqlite::types::Value| crate::codec::response_from_column(v.into()).unwrap();
        assert_eq!(json(&stored[0]), order_response_json(&kept).unwrap());
        assert_eq!(json(&stored[1]), order_response_json(&changed).unwrap());
        for (key, o) in [("k-kept", &kept), ("k-changed", &changed)] {
            let read = store.idempotency(key).unwrap().unwrap();
            assert_eq!(
                read.response_json().unwrap(),
                order_response_json(o).unwrap()
            );
        }
        assert_eq!(store.order(changed.id).unwrap(), later);
    }

    #[test]
    fn another_writer_between_pipelined_batches_refuses_the_next_commit() {
        let (path, store, _inv) = pipelined("foreign");
        let ids = SequentialIds::default();
        let first = order(&ids);
        store.begin_batch().unwrap();
        store.insert_order(&first, &[], None).unwrap();
        store.commit_batch().unwrap();
        store.wait_for_commit().unwrap();
        // Another connection commits: what the next batch reads may be stale by its commit.
        let other = SqliteStore::open(&path).unwrap();
        let foreign = order(&ids);
        other.insert_order(&foreign, &[], None).unwrap();
        store.begin_batch().unwrap();
        let lost = order(&ids);
        store.insert_order(&lost, &[], None).unwrap();
        store.commit_batch().unwrap();
        let err = store.wait_for_commit().unwrap_err();
        assert_eq!(err.code(), "conflict", "{err}");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM orders"), 2);
        assert!(store.order(lost.id).is_err());
        // The store starts over from what is stored: the next batch commits.
        store.begin_batch().unwrap();
        store.insert_order(&lost, &[], None).unwrap();
        store.commit_batch().unwrap();
        store.wait_for_commit().unwrap();
        assert_eq!(other.order(lost.id).unwrap(), lost);
    }

    #[test]
    fn a_failed_commit_is_reported_once_and_loses_the_batch_built_on_it() {
        let (_path, store, _inv) = pipelined("failed");
        refuse_events_named_refused(&store);
        let ids = SequentialIds::default();
        let first = order(&ids);
        store.begin_batch().unwrap();
        let refused = Event::new(first.id, 1, "refused", first.created_at);
        store.insert_order(&first, &[refused], None).unwrap();
        // Handed over: the refusal is not known yet.
        store.commit_batch().unwrap();
        store.begin_batch().unwrap();
        let second = order(&ids);
        let written = store.insert_order(&second, &[], None);
        // The second batch's commit reports the first one's failure, and is lost with it.
        let err = store.commit_batch().unwrap_err();
        assert_eq!(err.code(), "storage", "{err}");
        assert!(err.to_string().contains("refused"), "{err}");
        if let Err(e) = written {
            // The failure was noticed before the write (a commit can end at any moment).
            assert!(e.to_string().contains("refused"), "{e}");
        }
        assert!(!store.in_batch().unwrap());
        store.wait_for_commit().unwrap();
        assert_eq!(count(&store, "SELECT COUNT(*) FROM orders"), 0);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM events_outbox"), 0);
        // Both can be written again.
        store.begin_batch().unwrap();
        store.insert_order(&first, &[], None).unwrap();
        store.insert_order(&second, &[], None).unwrap();
        store.commit_batch().unwrap();
        store.wait_for_commit().unwrap();
        assert_eq!(count(&store, "SELECT COUNT(*) FROM orders"), 2);
    }

    #[test]
    fn reads_after_a_pipelined_commit_returned_see_the_whole_batch() {
        let (_path, store, _inv) = pipelined("read-after-commit");
        let ids = SequentialIds::default();
        let mut expected = Vec::new();
        for round in 0..100 {
            store.begin_batch().unwrap();
            let o = order(&ids);
            let created = Event::new(o.id, 1, names::ORDER_CREATED, o.created_at);
            store.insert_order(&o, &[created], None).unwrap();
            expected.push(o.id);
            store.commit_batch().unwrap();
            // The commit may still be running, but it holds the connection before the batch
            // call returns: whoever gets the connection next finds the batch written.
            if let Some(conn) = store.try_writer() {
                let stored: i64 = conn
                    .query_row(
                        "SELECT COUNT(*) FROM orders WHERE id = ?1",
                        [i64::try_from(o.id).unwrap()],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(
                    stored, 1,
                    "round {round}: the connection was free before the commit"
                );
            }
            let elsewhere = std::thread::scope(|s| {
                s.spawn(|| store.pending_events(1000).unwrap().len())
                    .join()
                    .unwrap()
            });
            assert_eq!(elsewhere, round + 1, "round {round}");
            let seen: Vec<u64> = store
                .orders_after(0, 1000)
                .unwrap()
                .iter()
                .map(|o| o.id)
                .collect();
            assert_eq!(seen, expected, "round {round}");
        }
    }

    #[test]
    fn a_read_of_the_outbox_continues_the_batch_as_an_ordinary_one() {
        let (path, store, _inv) = pipelined("continued");
        let ids = SequentialIds::default();
        let first = order(&ids);
        store.begin_batch().unwrap();
        store.insert_order(&first, &[], None).unwrap();
        store.commit_batch().unwrap();
        store.begin_batch().unwrap();
        let second = order(&ids);
        let created = Event::new(second.id, 1, names::ORDER_CREATED, second.created_at);
        store.insert_order(&second, &[created], None).unwrap();
        // The outbox is read on the writing connection: the batch waits for the commit before
        // it, takes the write lock, and shows its own held event.
        let pending = store.pending_events(10).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].order_id, second.id);
        assert_eq!(store.order_ids().unwrap(), vec![first.id, second.id]);
        assert!(store.in_batch().unwrap());
        assert!(store.pipeline().unwrap().continued);
        // Not visible to another connection until the batch commits, in line.
        let other = SqliteStore::open(&path).unwrap();
        assert_eq!(other.order_ids().unwrap(), vec![first.id]);
        store.commit_batch().unwrap();
        assert_eq!(other.order(second.id).unwrap(), second);
        // The batch after it is pipelined again.
        store.begin_batch().unwrap();
        assert!(store.pipeline().unwrap().open);
        store.rollback_batch().unwrap();
        assert!(!store.in_batch().unwrap());
    }

    #[test]
    fn a_rolled_back_pipelined_batch_leaves_the_one_before_it_to_commit() {
        let (path, store, _inv) = pipelined("rollback");
        let ids = SequentialIds::default();
        let kept = order(&ids);
        store.begin_batch().unwrap();
        store.insert_order(&kept, &[], None).unwrap();
        store.commit_batch().unwrap();
        store.begin_batch().unwrap();
        let dropped = order(&ids);
        store.insert_order(&dropped, &[], None).unwrap();
        store.rollback_batch().unwrap();
        store.wait_for_commit().unwrap();
        let other = SqliteStore::open(&path).unwrap();
        assert_eq!(other.order_ids().unwrap(), vec![kept.id]);
        assert!(store.order(dropped.id).is_err());
    }

    #[test]
    fn concurrent_writes_to_one_pipelined_batch_apply_one_at_a_time() {
        // Threads sharing a pipelined store race to move one order on from the same version
        // (each read it at that version): exactly one wins, every round, and its version is
        // what the commit stores.
        let (path, store, _inv) = pipelined("threads");
        let ids = SequentialIds::default();
        for round in 0..100 {
            let placed = order(&ids);
            store.begin_batch().unwrap();
            store.insert_order(&placed, &[], None).unwrap();
            store.commit_batch().unwrap();
            store.begin_batch().unwrap();
            let barrier = std::sync::Barrier::new(8);
            let wins: usize = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8i64)
                    .map(|t| {
                        let (store, barrier, placed) = (&store, &barrier, &placed);
                        scope.spawn(move || {
                            let mut changed = placed.clone();
                            changed.version = 2;
                            changed.updated_at = Timestamp(changed.updated_at.0 + t);
                            barrier.wait();
                            match store.update_order(&changed, 1, &[], None) {
                                Ok(()) => 1,
                                Err(e) => {
                                    assert_eq!(e.code(), "conflict", "{e}");
                                    0
                                }
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(wins, 1, "round {round}");
            store.commit_batch().unwrap();
            store.wait_for_commit().unwrap();
            assert_eq!(
                SqliteStore::open(&path)
                    .unwrap()
                    .order(placed.id)
                    .unwrap()
                    .version,
                2
            );
        }
    }

    #[test]
    fn committed_batches_are_checkpointed_into_the_database_file_in_the_background() {
        // A few batches write far fewer WAL pages than the automatic checkpoint waits for, and
        // the store stays open (closing would checkpoint): only the checkpointer copies them.
        let (path, store, _inv) = pipelined("checkpoint");
        let file = || std::fs::metadata(&path).unwrap().len();
        let before = file();
        let ids = SequentialIds::default();
        for _ in 0..3 {
            store.begin_batch().unwrap();
            for _ in 0..50 {
                store.insert_order(&order(&ids), &[], None).unwrap();
            }
            store.commit_batch().unwrap();
        }
        store.wait_for_commit().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while file() <= before && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            file() > before,
            "the database file stayed at {before} bytes: nothing was checkpointed"
        );
        assert_eq!(count(&store, "SELECT COUNT(*) FROM orders"), 150);
    }

    #[test]
    fn closing_a_pipelined_store_leaves_only_the_database_file() {
        // As with an ordinary store, the last connection to close checkpoints the WAL and
        // removes it (a read-only connection closing last could not).
        let (path, store, inv) = pipelined("close");
        let ids = SequentialIds::default();
        store.begin_batch().unwrap();
        store.insert_order(&order(&ids), &[], None).unwrap();
        store.commit_batch().unwrap();
        drop(inv);
        drop(store);
        let wal = path.with_extension("db-wal");
        assert!(!wal.exists(), "{} is left behind", wal.display());
        assert_eq!(
            SqliteStore::open(&path).unwrap().order_ids().unwrap().len(),
            1
        );
    }

    #[test]
    fn pipelining_needs_a_file_and_no_group_commit_and_one_batch_at_a_time() {
        let memory = SqliteStore::open_in_memory().unwrap();
        let err = memory.pipeline_batches().unwrap_err();
        assert_eq!(err.code(), "invalid_field", "{err}");
        assert!(err.to_string().contains("database file"), "{err}");
        assert!(!memory.pipelined().unwrap());

        let grouped = SqliteStore::open(temp_db("pipeline-grouped")).unwrap();
        grouped.enable_group_commit().unwrap();
        assert_eq!(
            grouped.pipeline_batches().unwrap_err().code(),
            "invalid_field"
        );

        let (_path, store, _inv) = pipelined("exclusive");
        assert_eq!(
            store.enable_group_commit().unwrap_err().code(),
            "invalid_field"
        );
        store.begin_batch().unwrap();
        assert_eq!(store.begin_batch().unwrap_err().code(), "invalid_field");
        assert_eq!(
            store.pipeline_batches().unwrap_err().code(),
            "invalid_field"
        );
        store.rollback_batch().unwrap();
        store.pipeline_batches().unwrap();

        let open = SqliteStore::open(temp_db("pipeline-open-batch")).unwrap();
        open.begin_batch().unwrap();
        assert_eq!(open.pipeline_batches().unwrap_err().code(), "invalid_field");
    }

    /// Counts a writer out when it ends, however it ends.
    struct Departure<'a>(&'a std::sync::atomic::AtomicUsize);

    impl Drop for Departure<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Sixteen threads write into one shared batch (each order inserted, reserved and moved on
    /// to version 2) while the batch is rotated under them; afterwards another connection
    /// finds every write exactly once.
    fn rotate_under_writers(
        store: &Arc<SqliteStore>,
        inv: &SqliteInventory,
        path: &std::path::Path,
    ) {
        const THREADS: u64 = 16;
        const EACH: u64 = 50;
        let ids = SequentialIds::default();
        let orders: Vec<Vec<oms_core::order::Order>> = (0..THREADS)
            .map(|_| (0..EACH).map(|_| order(&ids)).collect())
            .collect();
        store.begin_batch().unwrap();
        let writing = std::sync::atomic::AtomicUsize::new(THREADS as usize);
        let rotations = std::thread::scope(|scope| {
            for mine in &orders {
                let (store, inv, writing) = (store, inv, &writing);
                scope.spawn(move || {
                    // Counted out even when an assertion fails, so the rotations stop.
                    let _done = Departure(writing);
                    for placed in mine {
                        let created =
                            Event::new(placed.id, 1, names::ORDER_CREATED, placed.created_at);
                        store.insert_order(placed, &[created], None).unwrap();
                        let held = inv
                            .reserve(
                                &ReservationRequest::new(placed.id).item(sku("B"), wh("WH1"), 1),
                                T0,
                            )
                            .unwrap()
                            .into_reserved()
                            .unwrap();
                        let mut changed = placed.clone();
                        changed.version = 2;
                        let paid = Event::new(placed.id, 2, "order.paid", placed.created_at);
                        store.update_order(&changed, 1, &[paid], None).unwrap();
                        // Reads find every row while it moves from the open batch to the
                        // one committing and on to the database.
                        let key = format!("pay-{}", placed.id);
                        let record = IdempotencyRecord {
                            fingerprint: "fingerprint".into(),
                            response: Response::Json("{\"Ok\":1}".into()),
                        };
                        store.put_idempotency(&key, &record).unwrap();
                        for _ in 0..10 {
                            assert_eq!(inv.reservation(held.id).unwrap(), held);
                            assert_eq!(store.order(placed.id).unwrap(), changed);
                            assert!(store.idempotency(&key).unwrap().is_some(), "{key}");
                        }
                    }
                });
            }
            let mut rotations = 0;
            while writing.load(std::sync::atomic::Ordering::Acquire) > 0 {
                store.rotate_batch().unwrap();
                rotations += 1;
            }
            rotations
        });
        assert!(
            rotations > 1,
            "the batch was never rotated under the writers"
        );
        store.commit_batch().unwrap();
        store.wait_for_commit().unwrap();
        let other = SqliteStore::open(path).unwrap();
        let written: Vec<oms_core::order::Order> = orders.iter().flatten().cloned().collect();
        assert_eq!(
            other.order_ids().unwrap(),
            written.iter().map(|o| o.id).collect::<Vec<_>>()
        );
        for placed in &written {
            assert_eq!(other.order(placed.id).unwrap().version, 2);
        }
        assert_eq!(
            count(&other, "SELECT COUNT(*) FROM events_outbox"),
            i64::try_from(2 * THREADS * EACH).unwrap()
        );
        assert_eq!(
            count(
                &other,
                "SELECT COUNT(*) FROM (SELECT DISTINCT order_id, version FROM events_outbox)"
            ),
            i64::try_from(2 * THREADS * EACH).unwrap()
        );
        let stock = SqliteInventory::new(
            SqliteStore::open(path).unwrap(),
            Arc::new(SequentialIds::default()),
        )
        .stock(&sku("B"), &wh("WH1"))
        .unwrap();
        assert_eq!((stock.on_hand, stock.reserved), (1_000, THREADS * EACH));
    }

    #[test]
    fn a_pipelined_batch_rotated_under_many_writers_loses_none_of_their_writes() {
        let (path, store, inv) = pipelined("rotate");
        inv.receive(&sku("B"), &wh("WH1"), 1_000).unwrap();
        rotate_under_writers(&store, &inv, &path);
    }

    #[test]
    fn an_ordinary_batch_rotated_under_many_writers_loses_none_of_their_writes() {
        let path = temp_db("pipeline-rotate-ordinary");
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let inv = SqliteInventory::sharing(
            store.clone(),
            Arc::new(SequentialIds::starting_at(1000)),
            ReservationConfig::default(),
        );
        inv.add_warehouse(&wh("WH1")).unwrap();
        inv.receive(&sku("B"), &wh("WH1"), 1_000).unwrap();
        rotate_under_writers(&store, &inv, &path);
    }

    #[test]
    fn rotating_reports_the_failed_commit_before_it_and_closes_the_batch() {
        let (_path, store, _inv) = pipelined("rotate-failed");
        assert_eq!(store.rotate_batch().unwrap_err().code(), "storage");
        refuse_events_named_refused(&store);
        let ids = SequentialIds::default();
        let first = order(&ids);
        store.begin_batch().unwrap();
        let refused = Event::new(first.id, 1, "refused", first.created_at);
        store.insert_order(&first, &[refused], None).unwrap();
        store.rotate_batch().unwrap();
        assert!(store.in_batch().unwrap(), "the next batch is open");
        let second = order(&ids);
        let written = store.insert_order(&second, &[], None);
        let err = store.rotate_batch().unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        if let Err(e) = written {
            assert!(e.to_string().contains("refused"), "{e}");
        }
        assert!(!store.in_batch().unwrap());
        assert_eq!(count(&store, "SELECT COUNT(*) FROM orders"), 0);
        // Nothing is left to rotate; a new batch works as before.
        assert_eq!(store.rotate_batch().unwrap_err().code(), "storage");
        store.begin_batch().unwrap();
        store.insert_order(&second, &[], None).unwrap();
        store.rotate_batch().unwrap();
        store.commit_batch().unwrap();
        store.wait_for_commit().unwrap();
        assert_eq!(count(&store, "SELECT COUNT(*) FROM orders"), 1);
    }

    #[test]
    fn a_continued_batch_rotates_into_an_ordinary_one() {
        let (path, store, _inv) = pipelined("rotate-continued");
        let ids = SequentialIds::default();
        let first = order(&ids);
        store.begin_batch().unwrap();
        store.insert_order(&first, &[], None).unwrap();
        assert!(store.pending_events(10).unwrap().is_empty());
        assert!(store.pipeline().unwrap().continued);
        store.rotate_batch().unwrap();
        let other = SqliteStore::open(&path).unwrap();
        assert_eq!(other.order_ids().unwrap(), vec![first.id]);
        assert!(store.in_batch().unwrap());
        assert!(store.pipeline().unwrap().continued);
        let second = order(&ids);
        store.insert_order(&second, &[], None).unwrap();
        assert_eq!(other.order_ids().unwrap(), vec![first.id]);
        store.commit_batch().unwrap();
        assert_eq!(other.order_ids().unwrap(), vec![first.id, second.id]);
        assert!(!store.in_batch().unwrap());
    }

    #[test]
    fn a_rotation_waits_for_the_write_in_progress_and_keeps_a_batch_open() {
        let (_path, store, _inv) = pipelined("rotate-waits");
        store.begin_batch().unwrap();
        let write = store
            .pipelined_op()
            .unwrap()
            .expect("a pipelined batch is open");
        let rotated = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                store.rotate_batch().unwrap();
                rotated.store(true, std::sync::atomic::Ordering::Release);
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(
                !rotated.load(std::sync::atomic::Ordering::Acquire),
                "the batch was cut in the middle of a write"
            );
            // Writers arriving meanwhile still find a batch to join.
            assert!(store.pipeline().unwrap().open);
            drop(write);
        });
        assert!(rotated.load(std::sync::atomic::Ordering::Acquire));
        assert!(store.pipeline().unwrap().open);
        store.commit_batch().unwrap();
        store.wait_for_commit().unwrap();
    }

    #[test]
    fn reads_looking_through_a_pipelined_batch_run_between_its_writes_and_rotations() {
        // A rotation moves rows from the open batch to the committing one: a read looking
        // through both must not run across it. It waits as it would for a write in progress.
        let (_path, store, inv) = pipelined("rotate-reads");
        store.begin_batch().unwrap();
        let held = inv
            .reserve(&ReservationRequest::new(7).item(sku("A"), wh("WH1"), 1), T0)
            .unwrap()
            .into_reserved()
            .unwrap();
        let write = store
            .pipelined_op()
            .unwrap()
            .expect("a pipelined batch is open");
        let reads = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert_eq!(inv.reservation(held.id).unwrap(), held);
                reads.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            });
            scope.spawn(|| {
                assert!(store.idempotency("k").unwrap().is_none());
                reads.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(
                reads.load(std::sync::atomic::Ordering::Acquire),
                0,
                "a read ran while a write was in progress"
            );
            drop(write);
        });
        assert_eq!(reads.load(std::sync::atomic::Ordering::Acquire), 2);
        store.rollback_batch().unwrap();
    }
}
