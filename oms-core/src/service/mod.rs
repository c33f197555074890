//! The order service: the seed 003 operations over the store, inventory, gateway, fraud-signal,
//! notifier and clock traits.
//!
//! Every operation follows the same shape: check the actor and the idempotency key, load the
//! order, run the domain steps (each a pure function or a trait call), then write the order, its
//! audit rows, its outbox events and the idempotency record in one store write with the
//! version it read. Steps that touch another system (stock, the payment gateway) run before that
//! write and are compensated if a later step fails, so nothing is half-done; a crash between
//! them leaves at worst a reservation that expires by itself or a hold that the gateway releases.

mod delivery;
mod intake;
mod ops;
mod returns;
mod views;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};
use crate::events::{names, Event};
use crate::fraud::{FraudConfig, FraudSignals};
use crate::inventory::{InventoryStore, WarehouseId};
use crate::lifecycle::{update_order_status, Actor, GuardContext, OrderEvent};
use crate::order::Order;
use crate::payment::{CapturePolicy, Jitter, Pause, PaymentGateway, PaymentProcessor, RetryPolicy};
use crate::pricing::PricingContext;
use crate::store::{IdempotencyRecord, OrderStore, Response};
use crate::text::Text;
use crate::time::{Clock, Duration, IdGenerator, Timestamp};

pub use delivery::{CarrierUpdate, FulfillmentConfig, ShipmentTracking};
pub use intake::PaymentInput;
pub use ops::ExpiredOrder;
pub use views::{tracking, Timeline, TimelineEntry, Tracking};

/// Which comes first at checkout (DESIGN §4: a policy, not a fork in the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutFlow {
    /// Seeds 001/002: hold stock (15 minutes) to cover the payment window, then pay.
    #[default]
    ReserveThenPay,
    /// Seeds 000/004: authorize first, reserve after authorization.
    PayThenReserve,
}

/// The service's policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// Reserve-then-pay or pay-then-reserve.
    pub flow: CheckoutFlow,
    /// Capture on shipment or on delivery.
    pub capture: CapturePolicy,
    /// Promotions, tax, shipping.
    pub pricing: PricingContext,
    /// Fraud weights and thresholds.
    pub fraud: FraudConfig,
    /// Gateway retry policy.
    pub retry: RetryPolicy,
    /// How long a reservation covers the payment window.
    pub reservation_ttl: Duration,
    /// How long a payment hold stays valid.
    pub hold_validity: Duration,
    /// Warehouses in priority order: stock is reserved from the first that has it.
    pub warehouses: Vec<WarehouseId>,
    /// Bins, boxes, unit sizes, carrier.
    #[serde(default)]
    pub fulfillment: FulfillmentConfig,
    /// Return window and non-returnable SKUs.
    #[serde(default)]
    pub returns: crate::returns::ReturnPolicy,
    /// Where the warehouses are and what shipping costs: when set, stock is reserved where the
    /// allocation engine's optimal plan sources it (cheapest by item, shipping and parcel cost);
    /// otherwise it is spread over `warehouses` in priority order.
    #[serde(default)]
    pub sourcing: Option<SourcingNetwork>,
}

/// One warehouse of the sourcing network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// The warehouse.
    pub warehouse: WarehouseId,
    /// Where it is.
    pub location: crate::order::GeoPoint,
    /// Cost of opening a parcel there.
    pub parcel_cost: rust_decimal::Decimal,
    /// Cost of one unit of a SKU there (missing: 0).
    #[serde(default)]
    pub item_cost: std::collections::BTreeMap<crate::order::Sku, rust_decimal::Decimal>,
}

/// The warehouses' locations and the shipping rates the allocation engine sources with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcingNetwork {
    /// The sites.
    pub sites: Vec<Site>,
    /// Shipping cost per unit: base plus per km.
    pub shipping: crate::allocation::ShippingRates,
}

impl ServiceConfig {
    /// Defaults for everything but the warehouses and pricing context.
    pub fn new(warehouses: Vec<WarehouseId>, pricing: PricingContext) -> Self {
        ServiceConfig {
            flow: CheckoutFlow::default(),
            capture: CapturePolicy::default(),
            pricing,
            fraud: FraudConfig::default(),
            retry: RetryPolicy::default(),
            reservation_ttl: Duration::minutes(15),
            hold_validity: Duration::days(7),
            warehouses,
            fulfillment: FulfillmentConfig::default(),
            returns: crate::returns::ReturnPolicy::default(),
            sourcing: None,
        }
    }
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The order is confirmed (paid and cleared).
    OrderConfirmed,
    /// The payment failed; the order was cancelled.
    PaymentFailed,
    /// A shipment was handed to the carrier (the data carries the tracking number).
    Shipped,
    /// A shipment is out for delivery.
    OutForDelivery,
    /// A shipment was delivered.
    Delivered,
    /// The order was cancelled.
    Cancelled,
    /// A refund was issued.
    Refunded,
}

/// A message intent for the customer; the host decides how to send it (email, SMS, push).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// What it is about.
    pub kind: NotificationKind,
    /// The order id.
    pub order_id: u64,
    /// The order number shown to the customer.
    pub order_number: String,
    /// Where to send it.
    pub email: String,
    /// Detail (tracking number, refund amount …).
    pub data: Vec<(String, String)>,
}

/// Delivers notifications. Called after the order is written; a failure does not undo the
/// operation (the outbox still holds the event, so nothing is lost).
pub trait Notifier: Send + Sync {
    /// Send one notification.
    fn notify(&self, notification: &Notification) -> OmsResult<()>;
}

/// A notifier that keeps everything in memory: for tests and for hosts that poll.
#[derive(Debug, Default)]
pub struct MemoryNotifier(std::sync::Mutex<Vec<Notification>>);

impl MemoryNotifier {
    /// Take every notification sent so far.
    pub fn take(&self) -> Vec<Notification> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl Notifier for MemoryNotifier {
    fn notify(&self, notification: &Notification) -> OmsResult<()> {
        self.0
            .lock()
            .map_err(|_| OmsError::Storage {
                reason: "notifier lock poisoned".into(),
            })?
            .push(notification.clone());
        Ok(())
    }
}

/// Everything the service talks to, as trait objects the host provides.
#[derive(Clone)]
pub struct Dependencies {
    /// Orders, outbox, idempotency keys.
    pub orders: Arc<dyn OrderStore>,
    /// Stock and reservations.
    pub inventory: Arc<dyn InventoryStore>,
    /// The payment gateway.
    pub gateway: Arc<dyn PaymentGateway>,
    /// Fraud facts.
    pub fraud: Arc<dyn FraudSignals>,
    /// Customer notifications.
    pub notifier: Arc<dyn Notifier>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Ids.
    pub ids: Arc<dyn IdGenerator>,
    /// How to wait between gateway retries (the core never sleeps by itself).
    pub pause: Arc<dyn Pause>,
    /// Retry jitter source (seeded, so runs replay).
    pub jitter: Arc<dyn Jitter>,
}

/// Counters the service keeps for metrics.
#[derive(Debug, Default)]
struct Counters {
    gateway_calls: AtomicU64,
    gateway_errors: AtomicU64,
    notify_failures: AtomicU64,
}

/// The order-management façade: the seed 003 vocabulary and the operations the other seeds
/// need. Cheap to share across threads (`&self` everywhere).
pub struct OrderService {
    deps: Dependencies,
    config: ServiceConfig,
    counters: Counters,
}

/// One operation's pending write: the order, the version it was read at (`None` when new),
/// and the events and notifications it raised.
struct Change {
    order: Order,
    read_version: Option<u64>,
    events: Vec<Event>,
    notes: Vec<Notification>,
}

impl Change {
    fn new(order: Order, read_version: Option<u64>) -> Self {
        Change {
            order,
            read_version,
            events: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Make sure the order's version has moved past the version read, once per change, so
    /// the write is accepted and every event of the change carries a new version.
    fn advance(&mut self, at: Timestamp) {
        if Some(self.order.version) == self.read_version {
            self.order.version = self.order.version.saturating_add(1);
            self.order.updated_at = at;
        }
    }

    /// Record a non-status event at the order's (advanced) version.
    fn event(&mut self, name: &str, at: Timestamp, data: Vec<(Text, Text)>) {
        self.advance(at);
        let mut e = Event::new(self.order.id, self.order.version, name, at);
        e.data = data;
        self.events.push(e);
    }

    fn notify(&mut self, kind: NotificationKind, data: Vec<(String, String)>) {
        self.notes.push(Notification {
            kind,
            order_id: self.order.id,
            order_number: self.order.number.to_string(),
            email: self.order.customer.email.to_string(),
            data,
        });
    }
}

/// The reason an audit entry records: the service's fixed wording is kept without a copy.
trait Reason {
    fn into_text(self) -> Text;
}

impl Reason for &'static str {
    fn into_text(self) -> Text {
        Text::from_static(self)
    }
}

impl Reason for &String {
    fn into_text(self) -> Text {
        Text::from(self.as_str())
    }
}

impl Reason for Text {
    fn into_text(self) -> Text {
        self
    }
}

/// A small, stable fingerprint (FNV-1a 64) of a request's canonical JSON.
fn fingerprint(op: &str, request: &impl Serialize) -> OmsResult<String> {
    let json =
        serde_json::to_string(request).map_err(|e| OmsError::invalid("request", e.to_string()))?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(format!("{op}:{h:016x}:{}", json.len()))
}

/// Errors that say nothing final about the request: a replay must run it again.
fn is_transient(e: &OmsError) -> bool {
    matches!(
        e,
        OmsError::Storage { .. } | OmsError::Conflict { .. } | OmsError::GatewayError { .. }
    )
}

impl OrderService {
    /// A service over `deps` with `config`.
    pub fn new(deps: Dependencies, config: ServiceConfig) -> OmsResult<OrderService> {
        config.fraud.validate()?;
        config.retry.validate()?;
        if config.warehouses.is_empty() {
            return Err(OmsError::MissingField {
                field: "warehouses".into(),
            });
        }
        Ok(OrderService {
            deps,
            config,
            counters: Counters::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The dependencies (stores, gateway …) the service was built with.
    pub fn dependencies(&self) -> &Dependencies {
        &self.deps
    }

    fn now(&self) -> Timestamp {
        self.deps.clock.now()
    }

    fn processor(&self) -> OmsResult<PaymentProcessor<'_>> {
        PaymentProcessor::new(
            self.deps.gateway.as_ref(),
            self.deps.clock.as_ref(),
            self.deps.pause.as_ref(),
            self.deps.jitter.as_ref(),
            self.config.retry,
        )
    }

    fn count_gateway(&self, attempts: &[crate::payment::Attempt]) {
        self.counters
            .gateway_calls
            .fetch_add(attempts.len() as u64, Ordering::Relaxed);
        let errors = attempts
            .iter()
            .filter(|a| a.result == "timeout" || a.result == "unavailable")
            .count() as u64;
        self.counters
            .gateway_errors
            .fetch_add(errors, Ordering::Relaxed);
    }

    /// Check that `actor` may act on `order`: staff and the system may; a customer only on
    /// their own orders.
    fn authorize_actor(actor: &Actor, order: &Order) -> OmsResult<()> {
        match actor {
            Actor::Customer(id) if *id != order.customer.id => Err(OmsError::Forbidden {
                reason: "a customer can only act on their own orders".into(),
            }),
            _ => Ok(()),
        }
    }

    /// Refuse customers for staff-only operations.
    fn staff_only(actor: &Actor, what: &str) -> OmsResult<()> {
        if let Actor::Customer(_) = actor {
            return Err(OmsError::Forbidden {
                reason: format!("a customer cannot {what}"),
            });
        }
        Ok(())
    }

    /// Move the order by `event` (with guards from its state), recording the audit entry and
    /// the `order.<status>` event.
    fn step(
        &self,
        change: &mut Change,
        event: OrderEvent,
        guard: GuardContext,
        actor: &Actor,
        reason: impl Reason,
        metadata: Vec<(Text, Text)>,
    ) -> OmsResult<()> {
        let now = self.now();
        let entry = update_order_status(
            &mut change.order,
            event,
            &guard,
            actor,
            reason.into_text(),
            metadata,
            now,
        )?;
        let mut e = Event::new(
            change.order.id,
            change.order.version,
            names::status_name(entry.to),
            now,
        );
        // Fixed names and the entry's own reason: no detail of a status event allocates.
        e.data = vec![
            (
                Text::from_static("from"),
                entry
                    .from
                    .map_or_else(Text::empty, |s| Text::from_static(s.as_str())),
            ),
            (
                Text::from_static("event"),
                Text::from_static(event.as_str()),
            ),
            (Text::from_static("reason"), entry.reason.clone()),
        ];
        change.events.push(e);
        Ok(())
    }

    /// Run `op` under an idempotency key: a replay with the same content returns the first
    /// result (success or final error); different content is `IdempotencyConflict`. The
    /// record is written by `commit` in the same transaction as the order when the operation
    /// writes one, else here.
    fn idempotent<T, F>(
        &self,
        key: Option<&str>,
        op: &str,
        request: &impl Serialize,
        run: F,
    ) -> OmsResult<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Option<(&str, &str)>) -> OmsResult<T>,
    {
        let Some(key) = key else {
            return run(None);
        };
        if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
            return Err(OmsError::invalid(
                "idempotency_key",
                "1-255 characters, no control characters",
            ));
        }
        let fp = fingerprint(op, request)?;
        if let Some(rec) = self.deps.orders.idempotency(key)? {
            if rec.fingerprint != fp {
                return Err(OmsError::IdempotencyConflict {
                    key: key.to_owned(),
                });
            }
            let stored: Result<T, OmsError> =
                serde_json::from_str(rec.response_json()?).map_err(|e| OmsError::Storage {
                    reason: e.to_string(),
                })?;
            return stored;
        }
        let result = run(Some((key, &fp)));
        // Final errors are remembered too (a replayed declined checkout stays declined);
        // transient ones are not, so a replay runs the operation again.
        if let Err(e) = &result {
            if !is_transient(e) {
                let response = serde_json::to_string(&result).map_err(|e| OmsError::Storage {
                    reason: e.to_string(),
                })?;
                self.deps.orders.put_idempotency(
                    key,
                    &IdempotencyRecord {
                        fingerprint: fp,
                        response: Response::Json(response),
                    },
                )?;
            }
        }
        result
    }

    /// Write the change (order, audit, events, idempotency record) in one store write, then
    /// send its notifications. `respond` builds the operation's result from the order as
    /// written — a success, or a final refusal such as a declined payment whose cancelled order
    /// is still recorded — and that result is what the idempotency record keeps.
    fn commit<T: Serialize>(
        &self,
        change: Change,
        idem: Option<(&str, &str)>,
        respond: impl FnOnce(&Order) -> OmsResult<T>,
    ) -> OmsResult<T> {
        self.commit_as(change, idem, respond, false)
    }

    /// [`Self::commit`] for an operation whose result is the order as written: its
    /// idempotency record says so ([`Response::WrittenOrder`]) and the store writes the order
    /// out, instead of this thread serializing a copy.
    fn commit_order(&self, change: Change, idem: Option<(&str, &str)>) -> OmsResult<Order> {
        self.commit_as(change, idem, |o| Ok(o.clone()), true)
    }

    /// The write behind both; `responds_with_order` says `respond` returns the order as
    /// written, so a successful result's record need not carry a serialized copy.
    fn commit_as<T: Serialize>(
        &self,
        mut change: Change,
        idem: Option<(&str, &str)>,
        respond: impl FnOnce(&Order) -> OmsResult<T>,
        responds_with_order: bool,
    ) -> OmsResult<T> {
        let now = self.now();
        change.advance(now);
        // Every version the order passes through is announced at least once, so consumers can
        // tell a gap (a lost event) from a change that only touched payments or shipments.
        if !change
            .events
            .iter()
            .any(|e| e.version == change.order.version)
        {
            change.event(names::ORDER_UPDATED, now, vec![]);
        }
        let response = respond(&change.order);
        let record = match idem {
            Some((key, fp)) => Some((
                key,
                IdempotencyRecord {
                    fingerprint: fp.to_owned(),
                    response: if responds_with_order && response.is_ok() {
                        Response::WrittenOrder
                    } else {
                        Response::Json(serde_json::to_string(&response).map_err(|e| {
                            OmsError::Storage {
                                reason: e.to_string(),
                            }
                        })?)
                    },
                },
            )),
            None => None,
        };
        let keyed = record.as_ref().map(|(k, r)| (*k, r));
        let Change {
            order,
            read_version,
            events,
            notes,
        } = change;
        // Handed over: a store that keeps the order in memory takes it without a copy.
        match read_version {
            None => self.deps.orders.insert_order_owned(order, events, keyed)?,
            Some(v) => self
                .deps
                .orders
                .update_order_owned(order, v, events, keyed)?,
        }
        for n in &notes {
            if self.deps.notifier.notify(n).is_err() {
                self.counters
                    .notify_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        response
    }

    /// Load an order for a change by `actor`.
    fn load(&self, order_id: u64, actor: &Actor) -> OmsResult<Change> {
        let order = self.deps.orders.order(order_id)?;
        Self::authorize_actor(actor, &order)?;
        let v = order.version;
        Ok(Change::new(order, Some(v)))
    }

    /// Outbox events not yet acknowledged, oldest first (publish them, then [`Self::ack_events`]).
    pub fn drain_events(&self, limit: usize) -> OmsResult<Vec<Event>> {
        self.deps.orders.pending_events(limit)
    }

    /// Acknowledge published events up to and including `seq`.
    pub fn ack_events(&self, seq: u64) -> OmsResult<()> {
        self.deps.orders.ack_events(seq)
    }
}

#[cfg(test)]
mod tests;
