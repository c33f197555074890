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

use rusqlite::{params, Connection};

use oms_core::error::OmsResult;
use oms_core::events::Event;
use oms_core::lifecycle::{AuditEntry, OrderStatus};
use oms_core::store::{IdempotencyRecord, Keyed};

use crate::codec::{actor_text, pack, storage, to_i64, to_json};
use crate::sqlite::Deferred;

/// The held rows of the open transaction, in the order their operations ran.
#[derive(Debug, Default)]
pub(crate) struct HeldRows {
    /// Audit rows as ranges of their order's history: the entries themselves are read from
    /// the order the batch defers, which holds every one of them (history only grows).
    audit: Vec<(u64, Range<usize>)>,
    events: Vec<Event>,
    keys: Vec<(String, IdempotencyRecord)>,
    /// Where each key of `keys` is: a key's first record is the one kept.
    key_at: HashMap<String, usize>,
}

/// One audit row with its columns encoded.
type AuditValues = (Option<&'static str>, &'static str, String, String);

impl HeldRows {
    /// Hold the rows of one order write: the audit rows of entries `history` of order
    /// `order_id` (which the batch defers), its outbox `events`, and its idempotency record
    /// unless that key is already held.
    pub(crate) fn hold(
        &mut self,
        order_id: u64,
        history: Range<usize>,
        events: Vec<Event>,
        idempotency: Option<Keyed<'_>>,
    ) {
        if !history.is_empty() {
            self.audit.push((order_id, history));
        }
        self.events.extend(events);
        if let Some((key, record)) = idempotency {
            self.hold_key(key, record);
        }
    }

    /// Hold an idempotency record unless its key is held already (the first record wins).
    pub(crate) fn hold_key(&mut self, key: &str, record: &IdempotencyRecord) {
        if !self.key_at.contains_key(key) {
            self.key_at.insert(key.to_owned(), self.keys.len());
            self.keys.push((key.to_owned(), record.clone()));
        }
    }

    /// The held record of `key`, if any.
    pub(crate) fn key(&self, key: &str) -> Option<&IdempotencyRecord> {
        self.key_at
            .get(key)
            .and_then(|at| self.keys.get(*at))
            .map(|(_, r)| r)
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
        let mut entries: Vec<(u64, &AuditEntry)> = Vec::new();
        for (order_id, range) in &held.audit {
            let history = orders
                .get(order_id)
                .and_then(|d| d.order.history.get(range.clone()))
                .ok_or_else(|| storage(format!("held audit rows of order {order_id} are lost")))?;
            entries.extend(history.iter().map(|h| (*order_id, h)));
        }
        // Encoding is pure work: spread it over the cores, then write in the held order.
        let audit: Vec<OmsResult<AuditValues>> = crate::parallel::map(&entries, |(_, h)| {
            Ok((
                h.from.map(OrderStatus::as_str),
                h.to.as_str(),
                to_json(&h.metadata)?,
                actor_text(&h.actor),
            ))
        });
        let data: Vec<OmsResult<String>> = crate::parallel::map(&held.events, |e| to_json(&e.data));
        let responses = crate::parallel::map(&held.keys, |(_, r)| pack(r.response.clone()));

        let mut insert = conn
            .prepare_cached(
                "INSERT INTO order_state_transitions
                 (order_id, from_state, to_state, event, reason, metadata, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(storage)?;
        for ((order_id, h), values) in entries.iter().zip(audit) {
            let (from, to, metadata, actor) = values?;
            insert
                .execute(params![
                    to_i64(*order_id, "order id")?,
                    from,
                    to,
                    h.event,
                    h.reason,
                    metadata,
                    actor,
                    h.at.0,
                ])
                .map_err(storage)?;
        }
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO events_outbox (order_id, version, name, at, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(storage)?;
        for (e, data) in held.events.iter().zip(data) {
            insert
                .execute(params![
                    to_i64(e.order_id, "event order id")?,
                    to_i64(e.version, "event version")?,
                    e.name,
                    e.at.0,
                    data?,
                ])
                .map_err(storage)?;
        }
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO idempotency_keys (key, fingerprint, response) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO NOTHING",
            )
            .map_err(storage)?;
        for ((key, record), response) in held.keys.iter().zip(responses) {
            insert
                .execute(params![key, record.fingerprint, response])
                .map_err(storage)?;
        }
        Ok(())
    }
}
