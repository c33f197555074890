//! PostgreSQL: seed 002's tables (`orders`, `order_items`, `order_state_transitions`, …) plus
//! the events outbox and idempotency keys, with migrations applied on connect.
//!
//! Every order write is one statement, and so one transaction: the order row, its line rows,
//! its new audit rows, its outbox events and its idempotency record go in together through
//! data-modifying CTEs (child rows as unnested arrays), or none of them do. The version check
//! is the `UPDATE`'s own `WHERE version = $2`: at READ COMMITTED a second writer of the same
//! row waits for the first and re-checks against the committed row, so the loser gets a typed
//! `Conflict`. Statements are prepared once per pooled connection; each write or read is one
//! round trip (plus an empty query before a write on a pooled connection). Serialization
//! failures (40001) and deadlocks (40P01) are retried a bounded number of times.

use std::sync::{Mutex, MutexGuard};

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Statement, Transaction};

use oms_core::error::{OmsError, OmsResult};
use oms_core::events::Event;
use oms_core::lifecycle::OrderStatus;
use oms_core::order::Order;
use oms_core::store::{order_response_of_json, IdempotencyRecord, Keyed, OrderStore, Response};

use crate::codec::{
    actor_text, event_data_from_json, order_from_json, order_to_json, storage, to_i64, to_json,
    to_u64,
};
use crate::postgres_batch::{Layers, PgBatch, Sealed, Turns};

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
    /// The open batch, if any ([`PostgresStore::begin_batch`]); its lock is held by each
    /// operation on it, so operations of threads sharing it apply one at a time.
    batch: Mutex<Option<PgBatch>>,
    /// Closed batches whose commits are running, oldest first: reads look through them.
    sealed: Mutex<Sealed>,
    /// The batches' turns: each cut batch draws a ticket, and its turn comes when every batch
    /// cut before it has ended, so batches write what depends on the batches before them one
    /// at a time, in the order they were cut.
    turns: Mutex<Turns>,
    /// Signalled whenever a turn ends.
    pub(crate) turn_ended: std::sync::Condvar,
    /// How many batches were opened (each batch's `seq` is the count when it opened).
    pub(crate) opened: std::sync::atomic::AtomicU64,
    /// The batches built on one whose commit failed: every batch up to this `seq`, and why.
    doomed: Mutex<(u64, String)>,
    /// How many batches have finished committing: counted before the committed batch
    /// leaves the layers, so a read of the database that sees no change here between its
    /// start and a look at the layers cannot have missed rows moving from one to the other.
    pub(crate) commits_ended: std::sync::atomic::AtomicU64,
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
pub(crate) fn pg(e: &postgres::Error) -> OmsError {
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

/// `sql` prepared on this connection: parsed and planned by the server once, then reused.
pub(crate) fn prepared<C: GenericClient>(
    client: &mut C,
    statements: &mut Statements,
    sql: &'static str,
) -> Result<Statement, postgres::Error> {
    if let Some(s) = statements.get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(sql)?;
    statements.insert(sql, s.clone());
    Ok(s)
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
    /// A pooled connection found dead before anything with an effect ran on it (`BEGIN`, the
    /// empty query before a write, or a read): the work starts over on a new connection.
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
            batch: Mutex::new(None),
            sealed: Mutex::new(Sealed::default()),
            turns: Mutex::new(Turns::default()),
            turn_ended: std::sync::Condvar::new(),
            opened: std::sync::atomic::AtomicU64::new(0),
            doomed: Mutex::new((0, String::new())),
            commits_ended: std::sync::atomic::AtomicU64::new(0),
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
        // Order documents are large enough to be compressed on every write; lz4 compresses
        // them several times faster than the default pglz. A server built without lz4 keeps
        // pglz, so a refusal is not an error.
        let _ = c.batch_execute("SET default_toast_compression = lz4");
        if let Some(s) = &self.schema {
            // The name was validated in connect_with_schema.
            c.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s}"
            ))
            .map_err(|e| pg(&e))?;
        }
        Ok(c)
    }

    /// The open batch, if any, locked for one operation.
    pub(crate) fn batch(&self) -> OmsResult<MutexGuard<'_, Option<PgBatch>>> {
        self.batch
            .lock()
            .map_err(|_| storage("postgres batch lock poisoned"))
    }

    /// The batches whose commits are running, locked.
    pub(crate) fn sealed_slot(&self) -> OmsResult<MutexGuard<'_, Sealed>> {
        self.sealed
            .lock()
            .map_err(|_| storage("postgres batch lock poisoned"))
    }

    /// The batches whose commits are running.
    pub(crate) fn sealed_batches(&self) -> OmsResult<Sealed> {
        Ok(self.sealed_slot()?.clone())
    }

    /// The batches' turns (see `turns`), locked.
    pub(crate) fn turns(&self) -> OmsResult<MutexGuard<'_, Turns>> {
        self.turns
            .lock()
            .map_err(|_| storage("postgres batch lock poisoned"))
    }

    /// The batches built on a failed one, and why (see `doomed`).
    pub(crate) fn doomed(&self) -> OmsResult<MutexGuard<'_, (u64, String)>> {
        self.doomed
            .lock()
            .map_err(|_| storage("postgres batch lock poisoned"))
    }

    fn pool(&self) -> OmsResult<MutexGuard<'_, Vec<Pooled>>> {
        self.pool
            .lock()
            .map_err(|_| storage("postgres pool lock poisoned"))
    }

    /// A connection from the pool, or a new one; the flag says whether it came from the pool.
    fn checkout(&self) -> OmsResult<(Pooled, bool)> {
        if let Some(c) = self.pool()?.pop() {
            if !c.client.is_closed() {
                return Ok((c, true));
            }
        }
        Ok((self.fresh()?, false))
    }

    fn fresh(&self) -> OmsResult<Pooled> {
        Ok(Pooled {
            client: self.new_client()?,
            statements: Statements::new(),
        })
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
        self.run_pooled(|conn, _| {
            let mut tx = conn.client.transaction().map_err(TxError::Begin)?;
            let v = f(&mut tx, &mut conn.statements)?;
            tx.commit()?;
            Ok(v)
        })
    }

    /// Run `f`, one write statement, on a pooled connection outside a transaction block:
    /// PostgreSQL runs a lone statement as a transaction of its own, so it commits or rolls
    /// back whole, and the client reports success only after the server's ReadyForQuery,
    /// which follows the commit. This saves the `COMMIT` round trip.
    ///
    /// A pooled connection is first checked with an empty query (the round trip `BEGIN`
    /// would have cost): a backend that went away while the connection sat idle is then
    /// replaced before the write is sent, since once a write has been sent, a lost
    /// connection no longer says whether it committed. Retries as [`Self::in_tx`] does.
    pub(crate) fn autocommit<T>(
        &self,
        mut f: impl FnMut(&mut Client, &mut Statements) -> Result<T, TxError>,
    ) -> OmsResult<T> {
        self.run_pooled(|conn, first_use_of_pooled| {
            if first_use_of_pooled {
                conn.client.batch_execute("").map_err(TxError::Begin)?;
            }
            f(&mut conn.client, &mut conn.statements)
        })
    }

    /// Run `f`, statements that only read, on a pooled connection outside a transaction
    /// block, with no check first: a read that fails because its pooled connection had died
    /// changed nothing, so it runs again on a new connection.
    pub(crate) fn read_only<T>(
        &self,
        mut f: impl FnMut(&mut Client, &mut Statements) -> Result<T, TxError>,
    ) -> OmsResult<T> {
        self.run_pooled(|conn, first_use_of_pooled| {
            match f(&mut conn.client, &mut conn.statements) {
                Err(TxError::Db(e)) if first_use_of_pooled && conn.client.is_closed() => {
                    Err(TxError::Begin(e))
                }
                other => other,
            }
        })
    }

    /// Run `attempt_once` on a connection until it succeeds, is refused, or fails for good.
    /// Its flag is true on the first attempt on a connection taken from the pool.
    fn run_pooled<T>(
        &self,
        mut attempt_once: impl FnMut(&mut Pooled, bool) -> Result<T, TxError>,
    ) -> OmsResult<T> {
        let (mut conn, mut pooled) = self.checkout()?;
        let mut attempt = 0;
        loop {
            let first_use_of_pooled = pooled && attempt == 0;
            match attempt_once(&mut conn, first_use_of_pooled) {
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
                    conn = self.fresh()?;
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

/// Store an idempotency record unless its key is taken.
const PUT_KEY: &str =
    "INSERT INTO idempotency_keys (key, fingerprint, response) VALUES ($1, $2, $3)
     ON CONFLICT (key) DO NOTHING";

/// A new order with its lines, audit rows, outbox events and idempotency record, as one
/// statement. Every child insert reads `ins`, which holds a row only if the order row was
/// inserted, so a taken id or number writes nothing. Arrays are unnested into rows
/// server-side: one round trip whatever the number of lines, audit rows and events.
pub(crate) const INSERT_ORDER: &str = "
WITH ins AS (
    INSERT INTO orders (id, order_number, user_id, status, currency, total_amount, version,
                        shipping_address, billing_address, created_at, updated_at, document)
    VALUES ($1, $2, $3, $4, $5, $6::text::numeric, $7, $8::text::jsonb, $9::text::jsonb,
            $10, $11, $12)
    ON CONFLICT DO NOTHING
    RETURNING id
), items AS (
    INSERT INTO order_items (order_id, line_id, sku, quantity, unit_price, discount, tax_class)
    SELECT ins.id, l.line_id, l.sku, l.quantity, l.unit_price::numeric, l.discount::numeric,
           l.tax_class
    FROM ins, unnest($13::int4[], $14::text[], $15::int4[], $16::text[], $17::text[], $18::text[])
        AS l(line_id, sku, quantity, unit_price, discount, tax_class)
), audit AS (
    INSERT INTO order_state_transitions
        (order_id, from_state, to_state, event, reason, metadata, created_by, created_at)
    SELECT ins.id, h.from_state, h.to_state, h.event, h.reason, h.metadata::jsonb, h.created_by,
           h.created_at
    FROM ins, unnest($19::text[], $20::text[], $21::text[], $22::text[], $23::text[],
                     $24::text[], $25::int8[]) WITH ORDINALITY
        AS h(from_state, to_state, event, reason, metadata, created_by, created_at, n)
    ORDER BY h.n
), outbox AS (
    INSERT INTO events_outbox (order_id, version, name, at, data)
    SELECT e.order_id, e.version, e.name, e.at, e.data
    FROM ins, unnest($26::int8[], $27::int8[], $28::text[], $29::int8[], $30::text[])
        WITH ORDINALITY AS e(order_id, version, name, at, data, n)
    ORDER BY e.n
), idem AS (
    INSERT INTO idempotency_keys (key, fingerprint, response)
    SELECT $31::text, $32::text, $33::text FROM ins WHERE $31::text IS NOT NULL
    ON CONFLICT (key) DO NOTHING
)
SELECT COUNT(*) FROM ins";

/// A changed order with its new audit rows, outbox events and idempotency record, as one
/// statement. The version check is the `UPDATE`'s own condition: at READ COMMITTED a
/// concurrent writer of the row makes it wait and then re-check `version = $2` against the
/// committed row, so exactly one of two writers from the same version succeeds. Every child
/// write reads `upd`, so a failed check writes nothing.
///
/// The audit rows already stored are counted in the statement's snapshot, which, when the
/// check passes, shows the order as of the version checked (every write bumps the version).
/// Line rows are rewritten only where they differ from the order's lines.
pub(crate) const UPDATE_ORDER: &str = "
WITH upd AS (
    UPDATE orders SET status = $3, total_amount = $4::text::numeric, version = $5,
           shipping_address = $6::text::jsonb, billing_address = $7::text::jsonb,
           updated_at = $8, document = $9
    WHERE id = $1 AND version = $2
    RETURNING id
), stored AS (
    SELECT COUNT(*) AS n FROM order_state_transitions WHERE order_id = $1
), gone AS (
    DELETE FROM order_items d USING upd
    WHERE d.order_id = upd.id AND d.line_id <> ALL($10::int4[])
), items AS (
    INSERT INTO order_items AS o
        (order_id, line_id, sku, quantity, unit_price, discount, tax_class)
    SELECT upd.id, l.line_id, l.sku, l.quantity, l.unit_price::numeric, l.discount::numeric,
           l.tax_class
    FROM upd, unnest($10::int4[], $11::text[], $12::int4[], $13::text[], $14::text[], $15::text[])
        AS l(line_id, sku, quantity, unit_price, discount, tax_class)
    ON CONFLICT (order_id, line_id) DO UPDATE
    SET sku = EXCLUDED.sku, quantity = EXCLUDED.quantity, unit_price = EXCLUDED.unit_price,
        discount = EXCLUDED.discount, tax_class = EXCLUDED.tax_class
    WHERE (o.sku, o.quantity, o.unit_price::text, o.discount::text, o.tax_class)
          IS DISTINCT FROM (EXCLUDED.sku, EXCLUDED.quantity, EXCLUDED.unit_price::text,
                            EXCLUDED.discount::text, EXCLUDED.tax_class)
), audit AS (
    INSERT INTO order_state_transitions
        (order_id, from_state, to_state, event, reason, metadata, created_by, created_at)
    SELECT upd.id, h.from_state, h.to_state, h.event, h.reason, h.metadata::jsonb, h.created_by,
           h.created_at
    FROM upd, stored, unnest($16::text[], $17::text[], $18::text[], $19::text[], $20::text[],
                             $21::text[], $22::int8[]) WITH ORDINALITY
        AS h(from_state, to_state, event, reason, metadata, created_by, created_at, n)
    WHERE h.n > stored.n
    ORDER BY h.n
), outbox AS (
    INSERT INTO events_outbox (order_id, version, name, at, data)
    SELECT e.order_id, e.version, e.name, e.at, e.data
    FROM upd, unnest($23::int8[], $24::int8[], $25::text[], $26::int8[], $27::text[])
        WITH ORDINALITY AS e(order_id, version, name, at, data, n)
    ORDER BY e.n
), idem AS (
    INSERT INTO idempotency_keys (key, fingerprint, response)
    SELECT $28::text, $29::text, $30::text FROM upd WHERE $28::text IS NOT NULL
    ON CONFLICT (key) DO NOTHING
)
SELECT COUNT(*) FROM upd";

/// New orders with their lines and audit rows, any number of them in one statement (a
/// batch's commit). Every row comes as one element of its column's array; the child rows name
/// their order, and are inserted only for orders whose row was. The caller compares the count
/// returned with the orders given: fewer means an id or number was taken.
pub(crate) const INSERT_ORDERS: &str = "
WITH ins AS (
    INSERT INTO orders (id, order_number, user_id, status, currency, total_amount, version,
                        shipping_address, billing_address, created_at, updated_at, document)
    SELECT o.id, o.num, o.usr, o.status, o.cur, o.total::numeric, o.version, o.ship::jsonb,
           o.bill::jsonb, o.created, o.updated, o.doc
    FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::int8[], $8::text[], $9::text[], $10::int8[], $11::int8[], $12::text[])
        AS o(id, num, usr, status, cur, total, version, ship, bill, created, updated, doc)
    ON CONFLICT DO NOTHING
    RETURNING id
), items AS (
    INSERT INTO order_items (order_id, line_id, sku, quantity, unit_price, discount, tax_class)
    SELECT l.order_id, l.line_id, l.sku, l.quantity, l.unit_price::numeric, l.discount::numeric,
           l.tax_class
    FROM unnest($13::int8[], $14::int4[], $15::text[], $16::int4[], $17::text[], $18::text[],
                $19::text[])
        AS l(order_id, line_id, sku, quantity, unit_price, discount, tax_class)
    WHERE l.order_id IN (SELECT id FROM ins)
), audit AS (
    INSERT INTO order_state_transitions
        (order_id, from_state, to_state, event, reason, metadata, created_by, created_at)
    SELECT h.order_id, h.from_state, h.to_state, h.event, h.reason, h.metadata::jsonb,
           h.created_by, h.created_at
    FROM unnest($20::int8[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[],
                $26::text[], $27::int8[]) WITH ORDINALITY
        AS h(order_id, from_state, to_state, event, reason, metadata, created_by, created_at, n)
    WHERE h.order_id IN (SELECT id FROM ins)
    ORDER BY h.n
)
SELECT COUNT(*) FROM ins";

/// The columns of [`INSERT_ORDERS`] for many orders: each order's [`Rows`] laid end to end,
/// child rows tagged with their order's id.
#[derive(Default)]
pub(crate) struct NewOrders<'o> {
    ids: Vec<i64>,
    numbers: Vec<&'o str>,
    users: Vec<&'o str>,
    statuses: Vec<&'static str>,
    currencies: Vec<&'static str>,
    totals: Vec<&'o str>,
    versions: Vec<i64>,
    ships: Vec<&'o str>,
    bills: Vec<&'o str>,
    created: Vec<i64>,
    updated: Vec<i64>,
    docs: Vec<&'o str>,
    line_orders: Vec<i64>,
    line_ids: Vec<i32>,
    skus: Vec<&'o str>,
    quantities: Vec<i32>,
    prices: Vec<&'o str>,
    discounts: Vec<&'o str>,
    tax_classes: Vec<&'o str>,
    audit_orders: Vec<i64>,
    from_states: Vec<Option<&'static str>>,
    to_states: Vec<&'static str>,
    audit_events: Vec<&'o str>,
    reasons: Vec<&'o str>,
    metadata: Vec<&'o str>,
    actors: Vec<&'o str>,
    audit_at: Vec<i64>,
}

impl<'o> NewOrders<'o> {
    /// Add one order's rows.
    pub(crate) fn add(&mut self, r: &'o Rows<'o>) {
        let o = r.order;
        self.ids.push(r.id);
        self.numbers.push(r.number);
        self.users.push(r.user);
        self.statuses.push(r.status);
        self.currencies.push(r.currency);
        self.totals.push(&r.total);
        self.versions.push(r.version);
        self.ships.push(&r.ship);
        self.bills.push(&r.bill);
        self.created.push(o.created_at.0);
        self.updated.push(o.updated_at.0);
        self.docs.push(&r.doc);
        self.line_orders
            .extend(std::iter::repeat_n(r.id, r.line_ids.len()));
        self.line_ids.extend(&r.line_ids);
        self.skus.extend(&r.skus);
        self.quantities.extend(&r.quantities);
        self.prices.extend(r.prices.iter().map(String::as_str));
        self.discounts
            .extend(r.discounts.iter().map(String::as_str));
        self.tax_classes.extend(&r.tax_classes);
        self.audit_orders
            .extend(std::iter::repeat_n(r.id, r.to_states.len()));
        self.from_states.extend(&r.from_states);
        self.to_states.extend(&r.to_states);
        self.audit_events.extend(&r.audit_events);
        self.reasons.extend(&r.reasons);
        self.metadata.extend(r.metadata.iter().map(String::as_str));
        self.actors.extend(r.actors.iter().map(String::as_str));
        self.audit_at.extend(&r.audit_at);
    }

    /// How many orders were added.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The parameters of [`INSERT_ORDERS`].
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 27] {
        [
            &self.ids,
            &self.numbers,
            &self.users,
            &self.statuses,
            &self.currencies,
            &self.totals,
            &self.versions,
            &self.ships,
            &self.bills,
            &self.created,
            &self.updated,
            &self.docs,
            &self.line_orders,
            &self.line_ids,
            &self.skus,
            &self.quantities,
            &self.prices,
            &self.discounts,
            &self.tax_classes,
            &self.audit_orders,
            &self.from_states,
            &self.to_states,
            &self.audit_events,
            &self.reasons,
            &self.metadata,
            &self.actors,
            &self.audit_at,
        ]
    }
}

const ORDER_VERSION: &str = "SELECT version FROM orders WHERE id = $1";

/// An order's columns, lines, audit rows, events and idempotency record as bind parameters:
/// one array per column, so any number of rows goes in one statement.
pub(crate) struct Rows<'o> {
    order: &'o Order,
    number: &'o str,
    user: &'o str,
    status: &'static str,
    currency: &'static str,
    id: i64,
    total: String,
    version: i64,
    ship: String,
    bill: String,
    doc: String,
    line_ids: Vec<i32>,
    skus: Vec<&'o str>,
    quantities: Vec<i32>,
    prices: Vec<String>,
    discounts: Vec<String>,
    tax_classes: Vec<&'o str>,
    from_states: Vec<Option<&'static str>>,
    to_states: Vec<&'static str>,
    audit_events: Vec<&'o str>,
    reasons: Vec<&'o str>,
    metadata: Vec<String>,
    actors: Vec<String>,
    audit_at: Vec<i64>,
    event_orders: Vec<i64>,
    event_versions: Vec<i64>,
    event_names: Vec<&'o str>,
    event_at: Vec<i64>,
    event_data: Vec<String>,
    key: Option<&'o str>,
    fingerprint: Option<&'o str>,
    response: Option<String>,
}

impl<'o> Rows<'o> {
    pub(crate) fn new(
        order: &'o Order,
        events: &'o [Event],
        idempotency: Option<Keyed<'o>>,
    ) -> OmsResult<Rows<'o>> {
        let lines = &order.lines;
        let history = &order.history;
        let doc = order_to_json(order)?;
        // A record answering with this order answers with the document just encoded.
        let response = idempotency.map(|(_, r)| match &r.response {
            Response::WrittenOrder => order_response_of_json(&doc),
            Response::Json(json) => json.clone(),
        });
        Ok(Rows {
            order,
            number: order.number.as_str(),
            user: order.customer.id.as_str(),
            status: order.status.as_str(),
            currency: order.currency.code(),
            id: to_i64(order.id, "order id")?,
            total: order.book_value()?.amount().to_string(),
            version: to_i64(order.version, "version")?,
            ship: to_json(&order.shipping_address)?,
            bill: to_json(&order.billing_address)?,
            doc,
            line_ids: lines
                .iter()
                .map(|l| {
                    i32::try_from(l.line_id).map_err(|_| OmsError::invalid("line_id", "too large"))
                })
                .collect::<OmsResult<_>>()?,
            skus: lines.iter().map(|l| l.sku.as_str()).collect(),
            quantities: lines
                .iter()
                .map(|l| {
                    i32::try_from(l.quantity)
                        .map_err(|_| OmsError::invalid("quantity", "too large"))
                })
                .collect::<OmsResult<_>>()?,
            prices: lines
                .iter()
                .map(|l| l.unit_price.amount().to_string())
                .collect(),
            discounts: lines
                .iter()
                .map(|l| l.discount.amount().to_string())
                .collect(),
            tax_classes: lines.iter().map(|l| l.tax_class.as_str()).collect(),
            from_states: history
                .iter()
                .map(|h| h.from.map(OrderStatus::as_str))
                .collect(),
            to_states: history.iter().map(|h| h.to.as_str()).collect(),
            audit_events: history.iter().map(|h| h.event.as_str()).collect(),
            reasons: history.iter().map(|h| h.reason.as_str()).collect(),
            metadata: history
                .iter()
                .map(|h| to_json(&h.metadata))
                .collect::<OmsResult<_>>()?,
            actors: history.iter().map(|h| actor_text(&h.actor)).collect(),
            audit_at: history.iter().map(|h| h.at.0).collect(),
            event_orders: events
                .iter()
                .map(|e| to_i64(e.order_id, "event order id"))
                .collect::<OmsResult<_>>()?,
            event_versions: events
                .iter()
                .map(|e| to_i64(e.version, "event version"))
                .collect::<OmsResult<_>>()?,
            event_names: events.iter().map(|e| e.name.as_str()).collect(),
            event_at: events.iter().map(|e| e.at.0).collect(),
            event_data: events
                .iter()
                .map(|e| to_json(&e.data))
                .collect::<OmsResult<_>>()?,
            key: idempotency.map(|(k, _)| k),
            fingerprint: idempotency.map(|(_, r)| r.fingerprint.as_str()),
            response,
        })
    }

    /// The parameters of [`INSERT_ORDER`].
    pub(crate) fn insert_params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let o = self.order;
        let head: [&(dyn ToSql + Sync); 12] = [
            &self.id,
            &self.number,
            &self.user,
            &self.status,
            &self.currency,
            &self.total,
            &self.version,
            &self.ship,
            &self.bill,
            &o.created_at.0,
            &o.updated_at.0,
            &self.doc,
        ];
        head.into_iter().chain(self.children()).collect()
    }

    /// The parameters of [`UPDATE_ORDER`], checking the stored version is `expected`.
    pub(crate) fn update_params<'p>(&'p self, expected: &'p i64) -> Vec<&'p (dyn ToSql + Sync)> {
        let head: [&(dyn ToSql + Sync); 9] = [
            &self.id,
            expected,
            &self.status,
            &self.total,
            &self.version,
            &self.ship,
            &self.bill,
            &self.order.updated_at.0,
            &self.doc,
        ];
        head.into_iter().chain(self.children()).collect()
    }

    /// The parameters after the order's own columns, in the statements' order: lines, audit
    /// rows, events, idempotency record.
    fn children(&self) -> [&(dyn ToSql + Sync); 21] {
        [
            &self.line_ids,
            &self.skus,
            &self.quantities,
            &self.prices,
            &self.discounts,
            &self.tax_classes,
            &self.from_states,
            &self.to_states,
            &self.audit_events,
            &self.reasons,
            &self.metadata,
            &self.actors,
            &self.audit_at,
            &self.event_orders,
            &self.event_versions,
            &self.event_names,
            &self.event_at,
            &self.event_data,
            &self.key,
            &self.fingerprint,
            &self.response,
        ]
    }
}

/// One prepared statement's rows, on a pooled connection outside a transaction block.
fn query(
    client: &mut Client,
    statements: &mut Statements,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<postgres::Row>, TxError> {
    let statement = prepared(client, statements, sql)?;
    Ok(client.query(&statement, params)?)
}

impl OrderStore for PostgresStore {
    fn insert_order(
        &self,
        order: &Order,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        if self.in_batch()? {
            // The database is asked before the batch is locked, so other threads' operations
            // need not wait for the round trip; a row stored meanwhile fails the commit.
            let stored = self.stored_id_or_number(order)?;
            if let Some(batch) = self.batch()?.as_mut() {
                let sealed = self.sealed_batches()?;
                return Self::batch_insert(batch, &sealed, stored, order, events, idempotency);
            }
        }
        let r = Rows::new(order, events, idempotency)?;
        let params = r.insert_params();
        self.autocommit(|client, statements| {
            let rows = query(client, statements, INSERT_ORDER, &params)?;
            let inserted: i64 = rows.first().map_or(0, |row| row.get(0));
            if inserted == 0 {
                return Err(OmsError::Conflict {
                    entity: format!("order {}", order.number),
                    expected: 0,
                    found: 1,
                }
                .into());
            }
            Ok(())
        })
    }

    fn update_order(
        &self,
        order: &Order,
        expected_version: u64,
        events: &[Event],
        idempotency: Option<Keyed<'_>>,
    ) -> OmsResult<()> {
        if let Some(batch) = self.batch()?.as_mut() {
            let sealed = self.sealed_batches()?;
            return self.batch_update(batch, &sealed, order, expected_version, events, idempotency);
        }
        let r = Rows::new(order, events, idempotency)?;
        let expected = to_i64(expected_version, "expected version")?;
        let params = r.update_params(&expected);
        // An order that does not move its version forward is refused before anything is
        // written (the statement never runs), with the version stored.
        let advances = order.version > expected_version;
        self.autocommit(|client, statements| {
            if advances {
                let rows = query(client, statements, UPDATE_ORDER, &params)?;
                if rows.first().map_or(0, |row| row.get::<_, i64>(0)) == 1 {
                    return Ok(());
                }
            }
            // Nothing was written: say why, from the row as committed now.
            let rows = query(client, statements, ORDER_VERSION, &[&r.id])?;
            let Some(row) = rows.first() else {
                return Err(OmsError::OrderNotFound {
                    order: order.id.to_string(),
                }
                .into());
            };
            let found = to_u64(row.get::<_, i64>(0), "version")?;
            if found == expected_version && advances {
                // The statement's snapshot predates the write that brought the row to the
                // expected version: the check failed on an older row, so run it again.
                return Err(TxError::Retry("order version changed during the update"));
            }
            Err(OmsError::Conflict {
                entity: format!("order {}", order.number),
                expected: expected_version,
                found,
            }
            .into())
        })
    }

    fn order(&self, id: u64) -> OmsResult<Order> {
        {
            let batch = self.batch()?;
            let sealed = self.sealed_batches()?;
            if let Some(o) = Layers::new(batch.as_ref(), &sealed).order(id) {
                return Ok(o.clone());
            }
        }
        let key = to_i64(id, "order id")?;
        let doc: Option<String> = self.read_only(|client, statements| {
            Ok(query(
                client,
                statements,
                "SELECT document FROM orders WHERE id = $1",
                &[&key],
            )?
            .first()
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
        let batch = self.batch()?;
        let sealed = self.sealed_batches()?;
        let layers = Layers::new(batch.as_ref(), &sealed);
        if let Some(o) = layers.number(number).and_then(|id| layers.order(id)) {
            return Ok(o.clone());
        }
        let doc: Option<String> = self.read_only(|client, statements| {
            Ok(query(
                client,
                statements,
                "SELECT document FROM orders WHERE order_number = $1",
                &[&number],
            )?
            .first()
            .map(|r| r.get(0)))
        })?;
        doc.map_or_else(
            || {
                Err(OmsError::OrderNotFound {
                    order: number.to_owned(),
                })
            },
            |d| {
                let stored = order_from_json(&d)?;
                // An order a batch moved on is read as the batch left it.
                Ok(layers.order(stored.id).cloned().unwrap_or(stored))
            },
        )
    }

    fn order_ids(&self) -> OmsResult<Vec<u64>> {
        let batch = self.batch()?;
        let sealed = self.sealed_batches()?;
        let layers = Layers::new(batch.as_ref(), &sealed);
        let ids: Vec<i64> = self.read_only(|client, statements| {
            Ok(
                query(client, statements, "SELECT id FROM orders ORDER BY id", &[])?
                    .iter()
                    .map(|r| r.get(0))
                    .collect(),
            )
        })?;
        let ids = ids
            .into_iter()
            .map(|v| to_u64(v, "order id"))
            .collect::<OmsResult<Vec<u64>>>()?;
        Ok(if layers.is_empty() {
            ids
        } else {
            layers.ids(ids)
        })
    }

    fn orders_after(&self, after: u64, limit: usize) -> OmsResult<Vec<Order>> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let wanted = limit;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let batch = self.batch()?;
        let sealed = self.sealed_batches()?;
        let layers = Layers::new(batch.as_ref(), &sealed);
        if !layers.is_empty() {
            let stored: Vec<(i64, String)> = self.read_only(|client, statements| {
                Ok(query(
                    client,
                    statements,
                    "SELECT id, document FROM orders WHERE id > $1 ORDER BY id LIMIT $2",
                    &[&after, &limit],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
            })?;
            return layers.page(stored, to_u64(after, "order id")?, wanted);
        }
        drop(batch);
        let docs: Vec<String> = self.read_only(|client, statements| {
            Ok(query(
                client,
                statements,
                "SELECT document FROM orders WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })?;
        // Parsing is pure work, done after the connection is back in the pool, on every core.
        crate::parallel::map(&docs, |d| order_from_json(d))
            .into_iter()
            .collect()
    }

    fn order_ids_with_status(&self, status: OrderStatus) -> OmsResult<Vec<u64>> {
        let batch = self.batch()?;
        let sealed = self.sealed_batches()?;
        let layers = Layers::new(batch.as_ref(), &sealed);
        let ids: Vec<i64> = self.read_only(|client, statements| {
            Ok(query(
                client,
                statements,
                "SELECT id FROM orders WHERE status = $1 ORDER BY id",
                &[&status.as_str()],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })?;
        let ids = ids
            .into_iter()
            .map(|v| to_u64(v, "order id"))
            .collect::<OmsResult<Vec<u64>>>()?;
        Ok(if layers.is_empty() {
            ids
        } else {
            layers.ids_with_status(ids, status)
        })
    }

    fn pending_events(&self, limit: usize) -> OmsResult<Vec<Event>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.read_only(|client, statements| {
            query(
                client,
                statements,
                "SELECT seq, order_id, version, name, at, data FROM events_outbox
                 WHERE NOT published ORDER BY seq LIMIT $1",
                &[&limit],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    seq: to_u64(r.get(0), "seq")?,
                    order_id: to_u64(r.get(1), "order id")?,
                    version: to_u64(r.get(2), "version")?,
                    name: r.get(3),
                    at: oms_core::time::Timestamp(r.get(4)),
                    data: event_data_from_json(r.get::<_, &str>(5))?,
                })
            })
            .collect()
    }

    fn ack_events(&self, up_to: u64) -> OmsResult<()> {
        let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
        self.autocommit(|client, statements| {
            query(
                client,
                statements,
                "UPDATE events_outbox SET published = TRUE WHERE NOT published AND seq <= $1",
                &[&up_to],
            )?;
            Ok(())
        })
    }

    fn idempotency(&self, key: &str) -> OmsResult<Option<IdempotencyRecord>> {
        use std::sync::atomic::Ordering;
        loop {
            // The database is asked before the batch is locked, so other threads' operations on
            // a shared batch need not wait for the round trip.
            let ended = self.commits_ended.load(Ordering::Acquire);
            let stored = self.read_only(|client, statements| {
                Ok(query(
                    client,
                    statements,
                    "SELECT fingerprint, response FROM idempotency_keys WHERE key = $1",
                    &[&key],
                )?
                .first()
                .map(|r| IdempotencyRecord {
                    fingerprint: r.get(0),
                    response: Response::Json(r.get(1)),
                }))
            })?;
            // A stored record is older than any a batch keeps, so it wins.
            if stored.is_some() {
                return Ok(stored);
            }
            let batch = self.batch()?;
            let sealed = self.sealed_batches()?;
            if self.commits_ended.load(Ordering::Acquire) == ended {
                return Ok(Layers::new(batch.as_ref(), &sealed).key(key));
            }
            // A rotated batch finished committing between the read and the look at the
            // layers: its records may have left them for the database after the read.
        }
    }

    fn begin_batch(&self) -> OmsResult<()> {
        PostgresStore::begin_batch(self)
    }

    fn commit_batch(&self) -> OmsResult<()> {
        PostgresStore::commit_batch(self)
    }

    fn put_idempotency(&self, key: &str, record: &IdempotencyRecord) -> OmsResult<()> {
        if let Some(batch) = self.batch()?.as_mut() {
            return Self::batch_put_key(batch, key, record);
        }
        self.autocommit(|client, statements| {
            query(
                client,
                statements,
                PUT_KEY,
                &[&key, &record.fingerprint, &record.response_json()?],
            )?;
            Ok(())
        })
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
