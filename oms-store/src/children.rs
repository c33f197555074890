//! The rows that hang off an order write — audit rows, outbox events, idempotency records —
//! held in memory inside an open SQLite batch or shared group and written when it commits.
//!
//! A write inside a batch is checked (version, conflicts) before anything is kept here, and
//! keeping rows cannot fail, so an operation needs no savepoint to stay atomic. Rows are
//! written in the order their operations ran, so outbox sequence numbers and audit row ids
//! come out as they would have one operation at a time. Reads that can see these tables
//! ([`crate::SqliteStore`]'s outbox and idempotency reads) write the held rows first or look
//! here as well.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::Connection;

use oms_core::error::OmsResult;
use oms_core::events::Event;
use oms_core::lifecycle::{AuditEntry, OrderStatus};
use oms_core::order::Order;
use oms_core::store::{IdempotencyRecord, Keyed, Response};

use crate::codec::{actor_text, response_column, storage, to_i64, to_json};
use crate::sqlite::Deferred;

/// The held rows of the open transaction, in the order their operations ran.
#[derive(Debug, Default)]
pub(crate) struct HeldRows {
    /// Audit rows as ranges of their order's history: the entries themselves are read from
    /// the order the batch defers, which holds every one of them (history only grows).
    audit: Vec<(u64, Range<usize>)>,
    events: Vec<Event>,
    keys: Vec<HeldKey>,
    /// Where each key of `keys` is: a key's first record is the one kept.
    key_at: HashMap<String, usize>,
}

/// A held idempotency record, with a copy of the order it responds with when it is a
/// [`Response::WrittenOrder`] (the batch may change that order again before it commits).
#[derive(Debug)]
struct HeldKey {
    key: String,
    record: IdempotencyRecord,
    order: Option<Order>,
}

/// An idempotency row to write: its key, its record and the order a
/// [`Response::WrittenOrder`] record responds with.
pub(crate) type KeyRow<'a> = (&'a str, &'a IdempotencyRecord, Option<&'a Order>);

/// The response column of a row (see [`response_column`]), taken from `known` when it has the
/// document of the order the record responds with already encoded.
fn response_value(
    (_, record, order): &KeyRow<'_>,
    known: &(dyn Fn(&Order) -> Option<Value> + Sync),
) -> OmsResult<Value> {
    if let (Response::WrittenOrder, Some(order)) = (&record.response, order) {
        if let Some(doc) = known(order) {
            return Ok(doc);
        }
    }
    response_column(record, *order)
}

/// One audit row with its columns encoded.
type AuditValues = (Option<&'static str>, &'static str, String, String);

impl HeldRows {
    /// Hold the rows of one write of `order`: the audit rows of its entries `history` (the
    /// batch defers the order, which holds them), its outbox `events`, and its idempotency
    /// record unless that key is already held.
    pub(crate) fn hold(
        &mut self,
        order: &Order,
        history: Range<usize>,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
    ) {
        if !history.is_empty() {
            self.audit.push((order.id, history));
        }
        self.events.extend(events);
        if let Some((key, record)) = idempotency {
            self.hold_key(key, record, Some(order));
        }
    }

    /// Hold an idempotency record unless its key is held already (the first record wins);
    /// `order` is the order written with it, copied when the record responds with it.
    pub(crate) fn hold_key(
        &mut self,
        key: &str,
        record: &IdempotencyRecord,
        order: Option<&Order>,
    ) {
        if !self.key_at.contains_key(key) {
            self.key_at.insert(key.to_owned(), self.keys.len());
            let order = match record.response {
                Response::WrittenOrder => order.cloned(),
                Response::Json(_) => None,
            };
            self.keys.push(HeldKey {
                key: key.to_owned(),
                record: record.clone(),
                order,
            });
        }
    }

    /// The held record of `key`, if any, as it will be stored.
    pub(crate) fn key(&self, key: &str) -> OmsResult<Option<IdempotencyRecord>> {
        let Some(held) = self.key_at.get(key).and_then(|at| self.keys.get(*at)) else {
            return Ok(None);
        };
        match &held.order {
            Some(order) => held.record.written(order).map(Some),
            None => Ok(Some(held.record.clone())),
        }
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.audit.is_empty() && self.events.is_empty() && self.keys.is_empty()
    }

    /// Forget everything (the transaction ended).
    pub(crate) fn clear(&mut self) {
        *self = HeldRows::default();
    }

    /// Write every held row on `conn` (inside the open transaction) and forget them; `orders`
    /// are the batch's deferred orders, whose histories hold the audit entries.
    pub(crate) fn flush(
        &mut self,
        conn: &Connection,
        orders: &BTreeMap<u64, Deferred>,
    ) -> OmsResult<()> {
        if self.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(self);
        let audit = held.audit_entries(orders)?;
        write_rows(conn, &audit, &held.events, &held.key_records())
    }

    /// The audit entries the held audit rows name, with their order ids, read from the
    /// batch's deferred `orders`.
    pub(crate) fn audit_entries<'a>(
        &self,
        orders: &'a BTreeMap<u64, Deferred>,
    ) -> OmsResult<Vec<(u64, &'a AuditEntry)>> {
        let mut audit = Vec::new();
        for (order_id, range) in &self.audit {
            let history = orders
                .get(order_id)
                .and_then(|d| d.order.history.get(range.clone()))
                .ok_or_else(|| storage(format!("held audit rows of order {order_id} are lost")))?;
            audit.extend(history.iter().map(|h| (*order_id, &**h)));
        }
        Ok(audit)
    }

    /// The held outbox events, in the order their operations ran.
    pub(crate) fn events(&self) -> &[Event] {
        &self.events
    }

    /// The held idempotency rows, first held first.
    pub(crate) fn key_records(&self) -> Vec<KeyRow<'_>> {
        self.keys
            .iter()
            .map(|h| (h.key.as_str(), &h.record, h.order.as_ref()))
            .collect()
    }
}

/// Write audit rows (`(order id, entry)`), outbox `events` and idempotency `keys` (a key
/// already stored keeps its first record) on `conn`, each table's rows in the order given.
/// Used for a write that stores its rows at once and for held rows read back early.
pub(crate) fn write_rows(
    conn: &Connection,
    audit: &[(u64, &AuditEntry)],
    events: &[Event],
    keys: &[KeyRow<'_>],
) -> OmsResult<()> {
    let encoded = encode_rows(audit, events, keys, &|_| None, true)?;
    insert_encoded(conn, audit, events, keys, encoded)
}

/// The columns of audit, outbox and idempotency rows that take encoding (JSON, compression),
/// built apart from the statements that write them so the two can run on different threads.
#[derive(Debug)]
pub(crate) struct EncodedRows {
    audit: Vec<AuditValues>,
    data: Vec<String>,
    responses: Vec<Value>,
}

/// Encode the columns of the rows [`insert_encoded`] writes; `known` gives an order's document
/// when the same write encodes it anyway (an idempotency record responding with that order
/// then stores the same bytes), and `spread` spreads the work over the cores (leave it off on a
/// thread that already runs beside another).
pub(crate) fn encode_rows(
    audit: &[(u64, &AuditEntry)],
    events: &[Event],
    keys: &[KeyRow<'_>],
    known: &(dyn Fn(&Order) -> Option<Value> + Sync),
    spread: bool,
) -> OmsResult<EncodedRows> {
    fn each<T: Sync, R: Send>(spread: bool, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
        if spread {
            crate::parallel::map(items, f)
        } else {
            items.iter().map(f).collect()
        }
    }
    let audit = each(spread, audit, |(_, h)| {
        Ok((
            h.from.map(OrderStatus::as_str),
            h.to.as_str(),
            to_json(&h.metadata)?,
            actor_text(&h.actor),
        ))
    })
    .into_iter()
    .collect::<OmsResult<Vec<AuditValues>>>()?;
    let data = each(spread, events, |e| to_json(&e.data))
        .into_iter()
        .collect::<OmsResult<Vec<String>>>()?;
    let responses = each(spread, keys, |row| response_value(row, known))
        .into_iter()
        .collect::<OmsResult<Vec<Value>>>()?;
    Ok(EncodedRows {
        audit,
        data,
        responses,
    })
}

/// Write the rows of [`write_rows`] with their columns encoded by [`encode_rows`] from the
/// same `audit`, `events` and `keys`.
pub(crate) fn insert_encoded<'a>(
    conn: &Connection,
    audit: &[(u64, &'a AuditEntry)],
    events: &'a [Event],
    keys: &[KeyRow<'a>],
    encoded: EncodedRows,
) -> OmsResult<()> {
    if encoded.audit.len() != audit.len()
        || encoded.data.len() != events.len()
        || encoded.responses.len() != keys.len()
    {
        return Err(storage("encoded rows do not match the rows to write"));
    }
    let text = |s: &'a str| ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()));
    let int = |v: i64| ToSqlOutput::Owned(Value::Integer(v));
    let owned = |s: String| ToSqlOutput::Owned(Value::Text(s));
    let mut values = Vec::with_capacity(audit.len() * 8);
    for ((order_id, h), (from, to, metadata, actor)) in audit.iter().zip(encoded.audit) {
        values.extend([
            int(to_i64(*order_id, "order id")?),
            from.map_or(ToSqlOutput::Owned(Value::Null), text),
            text(to),
            text(&h.event),
            text(&h.reason),
            owned(metadata),
            owned(actor),
            int(h.at.0),
        ]);
    }
    insert_rows(
        conn,
        "INSERT INTO order_state_transitions
         (order_id, from_state, to_state, event, reason, metadata, created_by, created_at)",
        8,
        "",
        &values,
    )?;
    let mut values = Vec::with_capacity(events.len() * 5);
    for (e, data) in events.iter().zip(encoded.data) {
        values.extend([
            int(to_i64(e.order_id, "event order id")?),
            int(to_i64(e.version, "event version")?),
            text(&e.name),
            int(e.at.0),
            owned(data),
        ]);
    }
    insert_rows(
        conn,
        "INSERT INTO events_outbox (order_id, version, name, at, data)",
        5,
        "",
        &values,
    )?;
    let mut values = Vec::with_capacity(keys.len() * 3);
    for ((key, record, _), response) in keys.iter().zip(encoded.responses) {
        values.extend([
            text(key),
            text(&record.fingerprint),
            ToSqlOutput::Owned(response),
        ]);
    }
    insert_rows(
        conn,
        "INSERT INTO idempotency_keys (key, fingerprint, response)",
        3,
        " ON CONFLICT (key) DO NOTHING",
        &values,
    )
}

/// Rows per multi-row `INSERT`: a statement's fixed cost (starting, constraint bookkeeping,
/// halting) is paid once for this many rows.
const ROWS_PER_STATEMENT: usize = 32;

/// Insert `values`, `width` per row, as `head VALUES (…), (…) tail`: whole groups of
/// [`ROWS_PER_STATEMENT`] rows in one statement each, the rest one row at a time (so only two
/// statement texts per table are ever prepared). Rows go in in the order given. The statement
/// texts are built from the constant `head` and `tail` only; every value is bound.
fn insert_rows(
    conn: &Connection,
    head: &str,
    width: usize,
    tail: &str,
    values: &[ToSqlOutput<'_>],
) -> OmsResult<()> {
    let row = format!("({})", vec!["?"; width].join(", "));
    let statement = |rows: usize| {
        format!(
            "{head} VALUES {}{tail}",
            vec![row.as_str(); rows].join(", ")
        )
    };
    let mut chunks = values.chunks_exact(width * ROWS_PER_STATEMENT);
    if chunks.len() > 0 {
        let mut many = conn
            .prepare_cached(&statement(ROWS_PER_STATEMENT))
            .map_err(storage)?;
        for chunk in chunks.by_ref() {
            many.execute(rusqlite::params_from_iter(chunk))
                .map_err(storage)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut one = conn.prepare_cached(&statement(1)).map_err(storage)?;
        for values in rest.chunks_exact(width) {
            one.execute(rusqlite::params_from_iter(values))
                .map_err(storage)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_in_whole_groups_then_one_by_one_in_the_order_given() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (seq INTEGER PRIMARY KEY, a INTEGER, b TEXT UNIQUE)")
            .unwrap();
        for n in [
            0,
            1,
            ROWS_PER_STATEMENT - 1,
            ROWS_PER_STATEMENT,
            2 * ROWS_PER_STATEMENT + 5,
        ] {
            conn.execute("DELETE FROM t", []).unwrap();
            let names: Vec<String> = (0..n)
                .map(|i| format!("x'); DROP TABLE t;-- {i}"))
                .collect();
            let mut values = Vec::new();
            for (i, name) in names.iter().enumerate() {
                values.push(ToSqlOutput::Owned(Value::Integer(
                    i64::try_from(i).unwrap() * 10,
                )));
                values.push(ToSqlOutput::Borrowed(ValueRef::Text(name.as_bytes())));
            }
            // A repeated row is skipped by the tail's conflict clause, as a held key would be.
            if let Some(first) = names.first() {
                values.push(ToSqlOutput::Owned(Value::Integer(-1)));
                values.push(ToSqlOutput::Borrowed(ValueRef::Text(first.as_bytes())));
            }
            insert_rows(
                &conn,
                "INSERT INTO t (a, b)",
                2,
                " ON CONFLICT (b) DO NOTHING",
                &values,
            )
            .unwrap();
            let mut stmt = conn.prepare("SELECT a, b FROM t ORDER BY seq").unwrap();
            let got: Vec<(i64, String)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let want: Vec<(i64, String)> = names
                .iter()
                .enumerate()
                .map(|(i, s)| (i64::try_from(i).unwrap() * 10, s.clone()))
                .collect();
            assert_eq!(got, want, "{n} rows");
        }
    }
}
