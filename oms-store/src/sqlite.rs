//! SQLite: the embedded default store.
//!
//! Durability: WAL with `synchronous = NORMAL`. A committed transaction survives the process
//! being killed at any instant (the WAL is written before commit returns); only an operating
//! system crash or power loss may drop the last few commits, and never leaves a torn one.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use oms_core::error::{OmsError, OmsResult};
use oms_core::events::Event;
use oms_core::lifecycle::OrderStatus;
use oms_core::order::Order;
use oms_core::store::{IdempotencyRecord, Keyed, OrderStore};

use crate::codec::{
    actor_text, from_json, order_from_json, order_to_json, storage, to_i64, to_json, to_u64,
};

/// Embedded migrations, applied in order on open; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE orders (
    id               INTEGER PRIMARY KEY,
    order_number     TEXT    NOT NULL UNIQUE,
    user_id          TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    currency         TEXT    NOT NULL,
    total_amount     TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    shipping_address TEXT    NOT NULL,
    billing_address  TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    document         TEXT    NOT NULL
);
CREATE INDEX idx_orders_user ON orders(user_id);
CREATE INDEX idx_orders_status ON orders(status);
CREATE INDEX idx_orders_created ON orders(created_at);
CREATE TABLE order_items (
    order_id   INTEGER NOT NULL REFERENCES orders(id),
    line_id    INTEGER NOT NULL,
    sku        TEXT    NOT NULL,
    quantity   INTEGER NOT NULL,
    unit_price TEXT    NOT NULL,
    discount   TEXT    NOT NULL,
    tax_class  TEXT    NOT NULL,
    PRIMARY KEY (order_id, line_id)
);
CREATE TABLE order_state_transitions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id   INTEGER NOT NULL REFERENCES orders(id),
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    event      TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    metadata   TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX idx_transitions_order ON order_state_transitions(order_id);
CREATE TABLE events_outbox (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id  INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    data      TEXT    NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX idx_outbox_pending ON events_outbox(seq) WHERE published = 0;
CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL
);
",
    r"
CREATE TABLE warehouses (
    warehouse_id TEXT PRIMARY KEY
);
CREATE TABLE inventory (
    sku          TEXT    NOT NULL,
    warehouse_id TEXT    NOT NULL REFERENCES warehouses(warehouse_id),
    on_hand      INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved     INTEGER NOT NULL CHECK (reserved >= 0),
    allocated    INTEGER NOT NULL CHECK (allocated >= 0),
    damaged      INTEGER NOT NULL CHECK (damaged >= 0),
    CHECK (reserved + allocated <= on_hand),
    PRIMARY KEY (sku, warehouse_id)
);
CREATE TABLE inventory_reservations (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL,
    status     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    document   TEXT    NOT NULL
);
CREATE INDEX idx_reservations_order ON inventory_reservations(order_id);
CREATE INDEX idx_reservations_open_expiry ON inventory_reservations(expires_at)
    WHERE status IN ('reserved', 'awaiting_customer_decision');
CREATE TABLE inventory_reservation_items (
    reservation_id INTEGER NOT NULL REFERENCES inventory_reservations(id),
    line_no        INTEGER NOT NULL,
    sku            TEXT    NOT NULL,
    warehouse_id   TEXT    NOT NULL REFERENCES warehouses(warehouse_id),
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    shipped        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (reservation_id, line_no)
);
",
];

/// An [`OrderStore`] on one SQLite connection (open one store per worker thread).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, or an in-memory one for `":memory:"`,
    /// and apply pending migrations.
    pub fn open(path: impl AsRef<Path>) -> OmsResult<SqliteStore> {
        let conn = Connection::open(path).map_err(storage)?;
        Self::setup(conn)
    }

    /// A private in-memory database.
    pub fn open_in_memory() -> OmsResult<SqliteStore> {
        Self::setup(Connection::open_in_memory().map_err(storage)?)
    }

    fn setup(conn: Connection) -> OmsResult<SqliteStore> {
        conn.busy_timeout(StdDuration::from_secs(10))
            .map_err(storage)?;
        // journal_mode returns a row, so it is read rather than executed.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(storage)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(storage)?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    pub(crate) fn lock(&self) -> OmsResult<MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| storage("sqlite connection lock poisoned"))
    }

    /// The schema version after migrations.
    pub fn schema_version(&self) -> OmsResult<u32> {
        let conn = self.lock()?;
        conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(storage)
    }

    fn migrate(&self) -> OmsResult<()> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            .map_err(storage)?;
        let current: usize = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_version",
                [],
                |r| r.get(0),
            )
            .map_err(storage)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            tx.execute_batch(sql).map_err(storage)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                params![i + 1],
            )
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }
}

fn write_children(
    tx: &rusqlite::Transaction<'_>,
    order: &Order,
    events: &[Event],
    stored_history: usize,
    idempotency: Option<Keyed<'_>>,
) -> OmsResult<()> {
    if let Some((key, record)) = idempotency {
        put_key(tx, key, record)?;
    }
    let id = to_i64(order.id, "order id")?;
    tx.execute("DELETE FROM order_items WHERE order_id = ?1", params![id])
        .map_err(storage)?;
    let mut item = tx
        .prepare_cached(
            "INSERT INTO order_items (order_id, line_id, sku, quantity, unit_price, discount, tax_class)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(storage)?;
    for l in &order.lines {
        item.execute(params![
            id,
            l.line_id,
            l.sku.as_str(),
            l.quantity,
            l.unit_price.amount().to_string(),
            l.discount.amount().to_string(),
            l.tax_class,
        ])
        .map_err(storage)?;
    }
    let mut audit = tx
        .prepare_cached(
            "INSERT INTO order_state_transitions
             (order_id, from_state, to_state, event, reason, metadata, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .map_err(storage)?;
    for h in order.history.iter().skip(stored_history) {
        audit
            .execute(params![
                id,
                h.from.map(oms_core::lifecycle::OrderStatus::as_str),
                h.to.as_str(),
                h.event,
                h.reason,
                to_json(&h.metadata)?,
                actor_text(&h.actor),
                h.at.0,
            ])
            .map_err(storage)?;
    }
    let mut outbox = tx
        .prepare_cached(
            "INSERT INTO events_outbox (order_id, version, name, at, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(storage)?;
    for e in events {
        outbox
            .execute(params![
                to_i64(e.order_id, "event order id")?,
                to_i64(e.version, "event version")?,
                e.name,
                e.at.0,
                to_json(&e.data)?
            ])
            .map_err(storage)?;
    }
    Ok(())
}

fn put_key(conn: &Connection, key: &str, record: &IdempotencyRecord) -> OmsResult<()> {
    conn.prepare_cached(
        "INSERT INTO idempotency_keys (key, fingerprint, response) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO NOTHING",
    )
    .and_then(|mut s| s.execute(params![key, record.fingerprint, record.response]))
    .map_err(storage)?;
    Ok(())
}

fn order_row_values(order: &Order) -> OmsResult<(String, String, String, String)> {
    Ok((
        order.book_value()?.amount().to_string(),
        to_json(&order.shipping_address)?,
        to_json(&order.billing_address)?,
        order_to_json(order)?,
    ))
}

impl OrderStore for SqliteStore {
    fn insert_order(
        &self,
        order: &Order,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        let (total, ship, bill, doc) = order_row_values(order)?;
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        let id = to_i64(order.id, "order id")?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT version FROM orders WHERE id = ?1 OR order_number = ?2",
                params![id, order.number],
                |r| r.get(0),
            )
            .optional()
            .map_err(storage)?;
        if let Some(found) = exists {
            return Err(OmsError::Conflict {
                entity: format!("order {}", order.number),
                expected: 0,
                found: to_u64(found, "version")?,
            });
        }
        tx.execute(
            "INSERT INTO orders (id, order_number, user_id, status, currency, total_amount, version,
                                 shipping_address, billing_address, created_at, updated_at, document)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                id,
                order.number,
                order.customer.id,
                order.status.as_str(),
                order.currency.code(),
                total,
                to_i64(order.version, "version")?,
                ship,
                bill,
                order.created_at.0,
                order.updated_at.0,
                doc
            ],
        )
        .map_err(storage)?;
        write_children(&tx, order, events, 0, idempotency)?;
        tx.commit().map_err(storage)
    }

    fn update_order(
        &self,
        order: &Order,
        expected_version: u64,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        let (total, ship, bill, doc) = order_row_values(order)?;
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        let id = to_i64(order.id, "order id")?;
        let found: Option<i64> = tx
            .query_row(
                "SELECT version FROM orders WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(storage)?;
        let found = match found {
            None => {
                return Err(OmsError::OrderNotFound {
                    order: order.id.to_string(),
                })
            }
            Some(v) => to_u64(v, "version")?,
        };
        if found != expected_version || order.version <= expected_version {
            return Err(OmsError::Conflict {
                entity: format!("order {}", order.number),
                expected: expected_version,
                found,
            });
        }
        let stored_history: usize = tx
            .query_row(
                "SELECT COUNT(*) FROM order_state_transitions WHERE order_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(storage)?;
        tx.execute(
            "UPDATE orders SET status = ?2, total_amount = ?3, version = ?4, shipping_address = ?5,
                    billing_address = ?6, updated_at = ?7, document = ?8
             WHERE id = ?1",
            params![
                id,
                order.status.as_str(),
                total,
                to_i64(order.version, "version")?,
                ship,
                bill,
                order.updated_at.0,
                doc
            ],
        )
        .map_err(storage)?;
        write_children(&tx, order, events, stored_history, idempotency)?;
        tx.commit().map_err(storage)
    }

    fn order(&self, id: u64) -> OmsResult<Order> {
        let conn = self.lock()?;
        let doc: Option<String> = conn
            .prepare_cached("SELECT document FROM orders WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row(params![to_i64(id, "order id").unwrap_or(-1)], |r| r.get(0))
                    .optional()
            })
            .map_err(storage)?;
        doc.map_or_else(
            || {
                Err(OmsError::OrderNotFound {
                    order: id.to_string(),
                })
            },
            |d| order_from_json(&d),
        )
    }

    fn order_by_number(&self, number: &str) -> OmsResult<Order> {
        let conn = self.lock()?;
        let doc: Option<String> = conn
            .prepare_cached("SELECT document FROM orders WHERE order_number = ?1")
            .and_then(|mut s| s.query_row(params![number], |r| r.get(0)).optional())
            .map_err(storage)?;
        doc.map_or_else(
            || {
                Err(OmsError::OrderNotFound {
                    order: number.to_owned(),
                })
            },
            |d| order_from_json(&d),
        )
    }

    fn order_ids(&self) -> OmsResult<Vec<u64>> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached("SELECT id FROM orders ORDER BY id")
            .map_err(storage)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(storage)?;
        rows.map(|r| r.map_err(storage).and_then(|v| to_u64(v, "order id")))
            .collect()
    }

    fn order_ids_with_status(&self, status: OrderStatus) -> OmsResult<Vec<u64>> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached("SELECT id FROM orders WHERE status = ?1 ORDER BY id")
            .map_err(storage)?;
        let rows = stmt
            .query_map(params![status.as_str()], |r| r.get::<_, i64>(0))
            .map_err(storage)?;
        rows.map(|r| r.map_err(storage).and_then(|v| to_u64(v, "order id")))
            .collect()
    }

    fn pending_events(&self, limit: usize) -> OmsResult<Vec<Event>> {
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, order_id, version, name, at, data FROM events_outbox
                 WHERE published = 0 ORDER BY seq LIMIT ?1",
            )
            .map_err(storage)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(storage)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, order_id, version, name, at, data) = row.map_err(storage)?;
            out.push(Event {
                seq: to_u64(seq, "seq")?,
                order_id: to_u64(order_id, "order id")?,
                version: to_u64(version, "version")?,
                name,
                at: oms_core::time::Timestamp(at),
                data: from_json(&data)?,
            });
        }
        Ok(out)
    }

    fn ack_events(&self, up_to: u64) -> OmsResult<()> {
        let conn = self.lock()?;
        conn.execute(
            "UPDATE events_outbox SET published = 1 WHERE published = 0 AND seq <= ?1",
            params![i64::try_from(up_to).unwrap_or(i64::MAX)],
        )
        .map_err(storage)?;
        Ok(())
    }

    fn idempotency(&self, key: &str) -> OmsResult<Option<IdempotencyRecord>> {
        let conn = self.lock()?;
        conn.prepare_cached("SELECT fingerprint, response FROM idempotency_keys WHERE key = ?1")
            .and_then(|mut s| {
                s.query_row(params![key], |r| {
                    Ok(IdempotencyRecord {
                        fingerprint: r.get(0)?,
                        response: r.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(storage)
    }

    fn put_idempotency(&self, key: &str, record: &IdempotencyRecord) -> OmsResult<()> {
        put_key(&*self.lock()?, key, record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_reopen_keeps_version() {
        let dir = std::env::temp_dir().join(format!("oms-sqlite-mig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.db");
        let _ = std::fs::remove_file(&path);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        let mode: String = s
            .lock()
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
