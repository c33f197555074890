//! PostgreSQL: seed 002's tables (`orders`, `order_items`, `order_state_transitions`, …) plus
//! the events outbox and idempotency keys, with migrations applied on connect.
//!
//! Writes run in one transaction each; an order row is locked with `SELECT … FOR UPDATE` before
//! its version is checked, so two writers of the same order serialize and the loser gets a typed
//! `Conflict`. Serialization failures (40001) and deadlocks (40P01) are retried a bounded number
//! of times.

use std::sync::{Mutex, MutexGuard};

use postgres::error::SqlState;
use postgres::{Client, NoTls, Transaction};

use oms_core::error::{OmsError, OmsResult};
use oms_core::events::Event;
use oms_core::lifecycle::OrderStatus;
use oms_core::order::Order;
use oms_core::store::{IdempotencyRecord, Keyed, OrderStore};

use crate::codec::{
    actor_text, from_json, order_from_json, order_to_json, storage, to_i64, to_json, to_u64,
};

/// Embedded migrations, applied in order on connect; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE orders (
    id               BIGINT PRIMARY KEY,
    order_number     VARCHAR(50) UNIQUE NOT NULL,
    user_id          TEXT NOT NULL,
    status           VARCHAR(50) NOT NULL DEFAULT 'pending',
    currency         CHAR(3) NOT NULL,
    total_amount     NUMERIC NOT NULL,
    version          BIGINT NOT NULL,
    shipping_address JSONB NOT NULL,
    billing_address  JSONB NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    document         TEXT NOT NULL
);
CREATE INDEX idx_orders_user ON orders(user_id);
CREATE INDEX idx_orders_status ON orders(status);
CREATE INDEX idx_orders_created ON orders(created_at);
CREATE TABLE order_items (
    order_id   BIGINT NOT NULL REFERENCES orders(id),
    line_id    INTEGER NOT NULL,
    sku        VARCHAR(100) NOT NULL,
    quantity   INTEGER NOT NULL,
    unit_price NUMERIC NOT NULL,
    discount   NUMERIC NOT NULL DEFAULT 0,
    tax_class  TEXT NOT NULL,
    PRIMARY KEY (order_id, line_id)
);
CREATE TABLE order_state_transitions (
    id         BIGSERIAL PRIMARY KEY,
    order_id   BIGINT NOT NULL REFERENCES orders(id),
    from_state VARCHAR(50),
    to_state   VARCHAR(50) NOT NULL,
    event      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    metadata   JSONB NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idx_transitions_order ON order_state_transitions(order_id);
CREATE TABLE events_outbox (
    seq       BIGSERIAL PRIMARY KEY,
    order_id  BIGINT NOT NULL,
    version   BIGINT NOT NULL,
    name      TEXT NOT NULL,
    at        BIGINT NOT NULL,
    data      TEXT NOT NULL,
    published BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX idx_outbox_pending ON events_outbox(seq) WHERE NOT published;
CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    response    TEXT NOT NULL
);
",
    r"
CREATE TABLE warehouses (
    warehouse_id VARCHAR(64) PRIMARY KEY
);
CREATE TABLE inventory (
    sku          VARCHAR(64) NOT NULL,
    warehouse_id VARCHAR(64) NOT NULL REFERENCES warehouses(warehouse_id),
    on_hand      BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved     BIGINT NOT NULL CHECK (reserved >= 0),
    allocated    BIGINT NOT NULL CHECK (allocated >= 0),
    damaged      BIGINT NOT NULL CHECK (damaged >= 0),
    CHECK (reserved + allocated <= on_hand),
    PRIMARY KEY (sku, warehouse_id)
);
CREATE TABLE inventory_reservations (
    id         BIGINT PRIMARY KEY,
    order_id   BIGINT NOT NULL,
    status     VARCHAR(50) NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    document   TEXT NOT NULL
);
CREATE INDEX idx_reservations_order ON inventory_reservations(order_id);
CREATE INDEX idx_reservations_open_expiry ON inventory_reservations(expires_at)
    WHERE status IN ('reserved', 'awaiting_customer_decision');
CREATE TABLE inventory_reservation_items (
    reservation_id BIGINT NOT NULL REFERENCES inventory_reservations(id),
    line_no        INTEGER NOT NULL,
    sku            VARCHAR(64) NOT NULL,
    warehouse_id   VARCHAR(64) NOT NULL REFERENCES warehouses(warehouse_id),
    quantity       BIGINT NOT NULL CHECK (quantity > 0),
    shipped        BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (reservation_id, line_no)
);
",
];

/// Prepared statements of one connection, by their SQL text.
pub(crate) type Statements = std::collections::BTreeMap<&'static str, postgres::Statement>;

/// A pooled connection and the statements prepared on it.
struct Pooled {
    client: Client,
    statements: Statements,
}

/// How many times a transaction is retried after a serialization failure or deadlock.
const MAX_RETRIES: u32 = 8;

/// An [`OrderStore`] on PostgreSQL with a small pool of connections.
pub struct PostgresStore {
    url: String,
    schema: Option<String>,
    pool: Mutex<Vec<Pooled>>,
    retries: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// Validate a schema name: it is interpolated into `SET search_path`, so only
/// `[a-z_][a-z0-9_]{0,62}` is accepted.
fn valid_schema(name: &str) -> OmsResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| b == b'_' || b.is_ascii_lowercase() || (i > 0 && b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(OmsError::invalid(
            "schema",
            "must match [a-z_][a-z0-9_]{0,62}",
        ))
    }
}

/// A PostgreSQL error with its SQLSTATE and server message (the plain Display says only
/// "db error").
fn pg(e: &postgres::Error) -> OmsError {
    match e.as_db_error() {
        Some(d) => storage(format!(
            "{} ({}): {}",
            d.message(),
            d.code().code(),
            d.detail().unwrap_or("")
        )),
        None => storage(e),
    }
}

fn is_retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// A failure inside a transaction: `BEGIN` failing (nothing ran), a database error (maybe
/// retryable), a domain refusal, or a lost race the transaction should simply run again.
pub(crate) enum TxError {
    Begin(postgres::Error),
    Db(postgres::Error),
    Oms(OmsError),
    /// Another transaction created a row this one found absent: run it again.
    Retry(&'static str),
}

impl From<postgres::Error> for TxError {
    fn from(e: postgres::Error) -> Self {
        TxError::Db(e)
    }
}

impl From<OmsError> for TxError {
    fn from(e: OmsError) -> Self {
        TxError::Oms(e)
    }
}

impl PostgresStore {
    /// Connect to `url` (e.g. `postgresql://user@127.0.0.1:5432/db`) and apply migrations in the
    /// default schema.
    pub fn connect(url: &str) -> OmsResult<PostgresStore> {
        Self::build(url, None)
    }

    /// Connect and use (creating it if needed) the schema `schema`: lets tests and tenants share
    /// one database without seeing each other's tables.
    pub fn connect_with_schema(url: &str, schema: &str) -> OmsResult<PostgresStore> {
        valid_schema(schema)?;
        Self::build(url, Some(schema.to_owned()))
    }

    fn build(url: &str, schema: Option<String>) -> OmsResult<PostgresStore> {
        let store = PostgresStore {
            url: url.to_owned(),
            schema,
            pool: Mutex::new(Vec::new()),
            retries: std::sync::atomic::AtomicU64::new(0),
        };
        store.migrate()?;
        Ok(store)
    }

    /// How many transactions were retried after a serialization failure, a deadlock, or a
    /// concurrent insert of a row they found absent.
    pub fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn new_client(&self) -> OmsResult<Client> {
        let mut c = Client::connect(&self.url, NoTls).map_err(|e| pg(&e))?;
        if let Some(s) = &self.schema {
            // The name was validated in connect_with_schema.
            c.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s}"
            ))
            .map_err(|e| pg(&e))?;
        }
        Ok(c)
    }

    fn pool(&self) -> OmsResult<MutexGuard<'_, Vec<Pooled>>> {
        self.pool
            .lock()
            .map_err(|_| storage("postgres pool lock poisoned"))
    }

    /// Run `f` in a transaction on a pooled connection, retrying serialization failures and
    /// deadlocks. A connection that failed is dropped rather than returned to the pool; a pooled
    /// connection that died while idle (its `BEGIN` fails) is replaced by a new one.
    pub(crate) fn in_tx<T>(
        &self,
        mut f: impl FnMut(&mut Transaction<'_>) -> Result<T, TxError>,
    ) -> OmsResult<T> {
        self.in_tx_cached(|tx, _| f(tx))
    }

    /// [`Self::in_tx`], with the connection's cache of prepared statements: a statement is
    /// parsed and planned once per connection instead of once per use.
    pub(crate) fn in_tx_cached<T>(
        &self,
        mut f: impl FnMut(&mut Transaction<'_>, &mut Statements) -> Result<T, TxError>,
    ) -> OmsResult<T> {
        let fresh = |store: &Self| -> OmsResult<Pooled> {
            Ok(Pooled {
                client: store.new_client()?,
                statements: Statements::new(),
            })
        };
        let (mut conn, mut pooled) = match self.pool()?.pop() {
            Some(c) if !c.client.is_closed() => (c, true),
            _ => (fresh(self)?, false),
        };
        let mut attempt = 0;
        loop {
            let result = (|| {
                let mut tx = conn.client.transaction().map_err(TxError::Begin)?;
                let v = f(&mut tx, &mut conn.statements)?;
                tx.commit()?;
                Ok(v)
            })();
            match result {
                Ok(v) => {
                    self.pool()?.push(conn);
                    return Ok(v);
                }
                Err(TxError::Oms(e)) => {
                    self.pool()?.push(conn);
                    return Err(e);
                }
                // Nothing ran on it, so the work can start over on a fresh connection.
                Err(TxError::Begin(_)) if pooled => {
                    conn = fresh(self)?;
                    pooled = false;
                }
                Err(TxError::Db(e)) if is_retryable(&e) && attempt < MAX_RETRIES => {
                    attempt += 1;
                    self.retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(TxError::Retry(_)) if attempt < MAX_RETRIES => {
                    attempt += 1;
                    self.retries
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(TxError::Retry(what)) => {
                    self.pool()?.push(conn);
                    return Err(storage(format!(
                        "gave up after {MAX_RETRIES} retries: {what}"
                    )));
                }
                Err(TxError::Begin(e) | TxError::Db(e)) => return Err(pg(&e)),
            }
        }
    }

    fn migrate(&self) -> OmsResult<()> {
        self.in_tx(|tx| {
            // One migrator at a time, across processes.
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(7351001);
                 CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)",
            )?;
            let current: i32 = tx
                .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
                .get(0);
            for (i, sql) in MIGRATIONS
                .iter()
                .enumerate()
                .skip(usize::try_from(current).unwrap_or(0))
            {
                tx.batch_execute(sql)?;
                let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
                tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&v])?;
            }
            Ok(())
        })
    }

    /// The schema version after migrations.
    pub fn schema_version(&self) -> OmsResult<u32> {
        self.in_tx(|tx| {
            let v: i32 = tx
                .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
                .get(0);
            Ok(u32::try_from(v).unwrap_or(0))
        })
    }
}

fn put_key(tx: &mut Transaction<'_>, key: &str, record: &IdempotencyRecord) -> Result<(), TxError> {
    tx.execute(
        "INSERT INTO idempotency_keys (key, fingerprint, response) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO NOTHING",
        &[&key, &record.fingerprint, &record.response],
    )?;
    Ok(())
}

fn write_children(
    tx: &mut Transaction<'_>,
    order: &Order,
    events: &[Event],
    stored_history: usize,
    idempotency: Option<Keyed<'_>>,
) -> Result<(), TxError> {
    if let Some((key, record)) = idempotency {
        put_key(tx, key, record)?;
    }
    let id = to_i64(order.id, "order id")?;
    tx.execute("DELETE FROM order_items WHERE order_id = $1", &[&id])?;
    let item = tx.prepare(
        "INSERT INTO order_items (order_id, line_id, sku, quantity, unit_price, discount, tax_class)
         VALUES ($1, $2, $3, $4, $5::text::numeric, $6::text::numeric, $7)",
    )?;
    for l in &order.lines {
        let line_id =
            i32::try_from(l.line_id).map_err(|_| OmsError::invalid("line_id", "too large"))?;
        let qty =
            i32::try_from(l.quantity).map_err(|_| OmsError::invalid("quantity", "too large"))?;
        tx.execute(
            &item,
            &[
                &id,
                &line_id,
                &l.sku.as_str(),
                &qty,
                &l.unit_price.amount().to_string(),
                &l.discount.amount().to_string(),
                &l.tax_class,
            ],
        )?;
    }
    let audit = tx.prepare(
        "INSERT INTO order_state_transitions
         (order_id, from_state, to_state, event, reason, metadata, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8)",
    )?;
    for h in order.history.iter().skip(stored_history) {
        tx.execute(
            &audit,
            &[
                &id,
                &h.from.map(oms_core::lifecycle::OrderStatus::as_str),
                &h.to.as_str(),
                &h.event,
                &h.reason,
                &to_json(&h.metadata)?,
                &actor_text(&h.actor),
                &h.at.0,
            ],
        )?;
    }
    let outbox = tx.prepare(
        "INSERT INTO events_outbox (order_id, version, name, at, data) VALUES ($1, $2, $3, $4, $5)",
    )?;
    for e in events {
        tx.execute(
            &outbox,
            &[
                &to_i64(e.order_id, "event order id")?,
                &to_i64(e.version, "event version")?,
                &e.name,
                &e.at.0,
                &to_json(&e.data)?,
            ],
        )?;
    }
    Ok(())
}

impl OrderStore for PostgresStore {
    fn insert_order(
        &self,
        order: &Order,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        let total = order.book_value()?.amount().to_string();
        let ship = to_json(&order.shipping_address)?;
        let bill = to_json(&order.billing_address)?;
        let doc = order_to_json(order)?;
        let id = to_i64(order.id, "order id")?;
        let version = to_i64(order.version, "version")?;
        self.in_tx(|tx| {
            let inserted = tx.execute(
                "INSERT INTO orders (id, order_number, user_id, status, currency, total_amount, version,
                                     shipping_address, billing_address, created_at, updated_at, document)
                 VALUES ($1, $2, $3, $4, $5, $6::text::numeric, $7, $8::text::jsonb, $9::text::jsonb, $10, $11, $12)
                 ON CONFLICT DO NOTHING",
                &[
                    &id,
                    &order.number,
                    &order.customer.id,
                    &order.status.as_str(),
                    &order.currency.code(),
                    &total,
                    &version,
                    &ship,
                    &bill,
                    &order.created_at.0,
                    &order.updated_at.0,
                    &doc,
                ],
            )?;
            if inserted == 0 {
                return Err(OmsError::Conflict {
                    entity: format!("order {}", order.number),
                    expected: 0,
                    found: 1,
                }
                .into());
            }
            write_children(tx, order, events, 0, idempotency)
        })
    }

    fn update_order(
        &self,
        order: &Order,
        expected_version: u64,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        let total = order.book_value()?.amount().to_string();
        let ship = to_json(&order.shipping_address)?;
        let bill = to_json(&order.billing_address)?;
        let doc = order_to_json(order)?;
        let id = to_i64(order.id, "order id")?;
        let version = to_i64(order.version, "version")?;
        self.in_tx(|tx| {
            let row = tx.query_opt(
                "SELECT version FROM orders WHERE id = $1 FOR UPDATE",
                &[&id],
            )?;
            let Some(row) = row else {
                return Err(OmsError::OrderNotFound {
                    order: order.id.to_string(),
                }
                .into());
            };
            let found = to_u64(row.get::<_, i64>(0), "version")?;
            if found != expected_version || order.version <= expected_version {
                return Err(OmsError::Conflict {
                    entity: format!("order {}", order.number),
                    expected: expected_version,
                    found,
                }
                .into());
            }
            let stored: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM order_state_transitions WHERE order_id = $1",
                    &[&id],
                )?
                .get(0);
            tx.execute(
                "UPDATE orders SET status = $2, total_amount = $3::text::numeric, version = $4,
                        shipping_address = $5::text::jsonb, billing_address = $6::text::jsonb,
                        updated_at = $7, document = $8
                 WHERE id = $1",
                &[
                    &id,
                    &order.status.as_str(),
                    &total,
                    &version,
                    &ship,
                    &bill,
                    &order.updated_at.0,
                    &doc,
                ],
            )?;
            write_children(
                tx,
                order,
                events,
                usize::try_from(stored).unwrap_or(0),
                idempotency,
            )
        })
    }

    fn order(&self, id: u64) -> OmsResult<Order> {
        let key = to_i64(id, "order id")?;
        let doc: Option<String> = self.in_tx(|tx| {
            Ok(tx
                .query_opt("SELECT document FROM orders WHERE id = $1", &[&key])?
                .map(|r| r.get(0)))
        })?;
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
        let doc: Option<String> = self.in_tx(|tx| {
            Ok(tx
                .query_opt(
                    "SELECT document FROM orders WHERE order_number = $1",
                    &[&number],
                )?
                .map(|r| r.get(0)))
        })?;
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
        let ids: Vec<i64> = self.in_tx(|tx| {
            Ok(tx
                .query("SELECT id FROM orders ORDER BY id", &[])?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        ids.into_iter().map(|v| to_u64(v, "order id")).collect()
    }

    fn order_ids_with_status(&self, status: OrderStatus) -> OmsResult<Vec<u64>> {
        let ids: Vec<i64> = self.in_tx(|tx| {
            Ok(tx
                .query(
                    "SELECT id FROM orders WHERE status = $1 ORDER BY id",
                    &[&status.as_str()],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?;
        ids.into_iter().map(|v| to_u64(v, "order id")).collect()
    }

    fn pending_events(&self, limit: usize) -> OmsResult<Vec<Event>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.in_tx(|tx| {
            Ok(tx.query(
                "SELECT seq, order_id, version, name, at, data FROM events_outbox
                 WHERE NOT published ORDER BY seq LIMIT $1",
                &[&limit],
            )?)
        })?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    seq: to_u64(r.get(0), "seq")?,
                    order_id: to_u64(r.get(1), "order id")?,
                    version: to_u64(r.get(2), "version")?,
                    name: r.get(3),
                    at: oms_core::time::Timestamp(r.get(4)),
                    data: from_json(r.get::<_, &str>(5))?,
                })
            })
            .collect()
    }

    fn ack_events(&self, up_to: u64) -> OmsResult<()> {
        let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
        self.in_tx(|tx| {
            tx.execute(
                "UPDATE events_outbox SET published = TRUE WHERE NOT published AND seq <= $1",
                &[&up_to],
            )?;
            Ok(())
        })
    }

    fn idempotency(&self, key: &str) -> OmsResult<Option<IdempotencyRecord>> {
        self.in_tx(|tx| {
            Ok(tx
                .query_opt(
                    "SELECT fingerprint, response FROM idempotency_keys WHERE key = $1",
                    &[&key],
                )?
                .map(|r| IdempotencyRecord {
                    fingerprint: r.get(0),
                    response: r.get(1),
                }))
        })
    }

    fn put_idempotency(&self, key: &str, record: &IdempotencyRecord) -> OmsResult<()> {
        self.in_tx(|tx| put_key(tx, key, record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_validated() {
        assert!(valid_schema("oms_test_1").is_ok());
        for bad in [
            "",
            "1abc",
            "a-b",
            "A",
            "x; DROP TABLE orders",
            &"a".repeat(64),
        ] {
            assert_eq!(
                valid_schema(bad).unwrap_err().code(),
                "invalid_field",
                "{bad}"
            );
        }
    }
}
