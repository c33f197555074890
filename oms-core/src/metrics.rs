//! Operational metrics (seed 001 §10): orders per hour, average order value, fulfillment,
//! cancellation and return rates, status distribution, gateway error rate, low-stock SKUs, and
//! alert flags — as a struct and as Prometheus text exposition.
//!
//! Rates are exact decimals (no floats): a rate is `numerator / denominator` rounded to four
//! decimals, half-even, and zero when the denominator is zero.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::lifecycle::OrderStatus;
use crate::money::{Currency, Money, Rounding};
use crate::order::Order;
use crate::time::{Duration, Timestamp};

/// When an alert fires. Rates are fractions (0.05 = 5 %).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertThresholds {
    /// Cancellation rate above this raises `high_cancellation_rate` (seed 001 target: < 5 %).
    pub max_cancellation_rate: Decimal,
    /// Return rate above this raises `high_return_rate` (seed 001 target: < 10 %).
    pub max_return_rate: Decimal,
    /// Fulfillment rate below this raises `low_fulfillment_rate`.
    pub min_fulfillment_rate: Decimal,
    /// Gateway error rate above this raises `payment_gateway_down`.
    pub max_gateway_error_rate: Decimal,
    /// Available units at or below this make a SKU low on stock.
    pub low_stock_units: u64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            max_cancellation_rate: Decimal::new(5, 2),
            max_return_rate: Decimal::new(10, 2),
            min_fulfillment_rate: Decimal::new(95, 2),
            max_gateway_error_rate: Decimal::new(20, 2),
            low_stock_units: 5,
        }
    }
}

/// What the metrics are computed from, besides the orders themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsInput {
    /// The instant the snapshot is taken (the simulated "now").
    pub now: Timestamp,
    /// Payment gateway calls made.
    pub gateway_calls: u64,
    /// Of those, calls that failed (timeouts, errors; declines are not errors).
    pub gateway_errors: u64,
    /// `(sku, total available units)` for every stocked SKU.
    pub stock: Vec<(String, u64)>,
}

/// A point-in-time view of the order book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Orders counted.
    pub orders: u64,
    /// Orders created in the hour before `now`.
    pub orders_last_hour: u64,
    /// Orders per hour over the span from the first to the last order (simulated time).
    pub orders_per_hour: Decimal,
    /// Average order value per currency (orders that were not cancelled before payment).
    pub average_order_value: BTreeMap<String, Money>,
    /// Shipped-or-later orders over orders that were confirmed.
    pub fulfillment_rate: Decimal,
    /// Cancelled orders over all orders.
    pub cancellation_rate: Decimal,
    /// Orders with a return requested over delivered orders.
    pub return_rate: Decimal,
    /// Orders per current status (every status listed, zeros included).
    pub status_distribution: BTreeMap<String, u64>,
    /// Gateway errors over gateway calls.
    pub gateway_error_rate: Decimal,
    /// SKUs at or below the low-stock threshold, with their available units.
    pub low_stock: Vec<(String, u64)>,
    /// Names of the alerts that fire.
    pub alerts: Vec<String>,
}

fn rate(num: u64, den: u64) -> Decimal {
    if den == 0 {
        return Decimal::ZERO;
    }
    let mut r = Rounding::HalfEven.apply(Decimal::from(num) / Decimal::from(den), 4);
    // A fixed scale keeps every rendering (text, JSON, Prometheus) at four decimals.
    r.rescale(4);
    r
}

fn reached(order: &Order, statuses: &[OrderStatus]) -> bool {
    statuses.contains(&order.status) || order.history.iter().any(|h| statuses.contains(&h.to))
}

/// Compute the snapshot for `orders`.
pub fn compute(
    orders: &[Order],
    input: &MetricsInput,
    thresholds: &AlertThresholds,
) -> MetricsSnapshot {
    let mut tally = MetricsTally::new(input.now);
    for o in orders {
        tally.add(o);
    }
    tally.snapshot(input, thresholds)
}

/// Running totals of the order figures of a [`MetricsSnapshot`], so a book too large to hold
/// at once can be read page by page: [`MetricsTally::add`] each order once, then
/// [`MetricsTally::snapshot`]. Gives exactly what [`compute`] gives over the same orders.
#[derive(Debug, Clone)]
pub struct MetricsTally {
    now: Timestamp,
    orders: u64,
    last_hour: u64,
    first_created: Option<Timestamp>,
    last_created: Option<Timestamp>,
    /// Book value and count of the confirmed (or later) orders, per currency.
    sums: BTreeMap<Currency, (Money, u64)>,
    confirmed: u64,
    fulfilled: u64,
    cancelled: u64,
    delivered: u64,
    returned: u64,
    status_distribution: BTreeMap<String, u64>,
}

const SHIPPED_OR_LATER: [OrderStatus; 7] = [
    OrderStatus::PartiallyShipped,
    OrderStatus::Shipped,
    OrderStatus::InTransit,
    OrderStatus::OutForDelivery,
    OrderStatus::PartiallyDelivered,
    OrderStatus::Delivered,
    OrderStatus::Completed,
];
const CONFIRMED: [OrderStatus; 2] = [OrderStatus::Confirmed, OrderStatus::Processing];

impl MetricsTally {
    /// An empty tally; `now` decides which orders count as created in the last hour.
    pub fn new(now: Timestamp) -> Self {
        MetricsTally {
            now,
            orders: 0,
            last_hour: 0,
            first_created: None,
            last_created: None,
            sums: BTreeMap::new(),
            confirmed: 0,
            fulfilled: 0,
            cancelled: 0,
            delivered: 0,
            returned: 0,
            status_distribution: OrderStatus::ALL
                .iter()
                .map(|s| (s.as_str().to_owned(), 0))
                .collect(),
        }
    }

    /// Count one order (each order once).
    pub fn add(&mut self, o: &Order) {
        self.orders += 1;
        let hour_ago = self.now.plus(Duration::hours(-1));
        if o.created_at > hour_ago && o.created_at <= self.now {
            self.last_hour += 1;
        }
        self.first_created = Some(
            self.first_created
                .map_or(o.created_at, |t| t.min(o.created_at)),
        );
        self.last_created = Some(
            self.last_created
                .map_or(o.created_at, |t| t.max(o.created_at)),
        );
        let fulfilled = reached(o, &SHIPPED_OR_LATER);
        if reached(o, &CONFIRMED) || fulfilled {
            self.confirmed += 1;
            if let Ok(v) = o.book_value() {
                let e = self
                    .sums
                    .entry(o.currency)
                    .or_insert((Money::zero(o.currency), 0));
                if let Ok(s) = e.0.checked_add(&v) {
                    *e = (s, e.1 + 1);
                }
            }
        }
        self.fulfilled += u64::from(fulfilled);
        self.cancelled += u64::from(o.status == OrderStatus::Cancelled);
        self.delivered += u64::from(reached(o, &[OrderStatus::Delivered]));
        self.returned += u64::from(reached(o, &[OrderStatus::ReturnRequested]));
        *self
            .status_distribution
            .entry(o.status.as_str().to_owned())
            .or_insert(0) += 1;
    }

    /// The snapshot of the orders added, with `input`'s gateway counts and stock (its `now`
    /// is the tally's).
    pub fn snapshot(self, input: &MetricsInput, thresholds: &AlertThresholds) -> MetricsSnapshot {
        let n = self.orders;
        let span = match (self.first_created, self.last_created) {
            (Some(a), Some(b)) => b.since(a).millis().max(3_600_000),
            _ => 3_600_000,
        };
        let per_hour = if n == 0 {
            Decimal::ZERO
        } else {
            Rounding::HalfEven.apply(
                Decimal::from(n) * Decimal::from(3_600_000) / Decimal::from(span),
                2,
            )
        };
        let average_order_value = self
            .sums
            .into_iter()
            .filter_map(|(c, (sum, count))| {
                let avg = sum.amount() / Decimal::from(count.max(1));
                Money::from_decimal_rounded(avg, c, Rounding::HalfEven)
                    .ok()
                    .map(|m| (c.code().to_owned(), m))
            })
            .collect();
        let low_stock: Vec<(String, u64)> = input
            .stock
            .iter()
            .filter(|(_, units)| *units <= thresholds.low_stock_units)
            .cloned()
            .collect();
        let mut snap = MetricsSnapshot {
            orders: n,
            orders_last_hour: self.last_hour,
            orders_per_hour: per_hour,
            average_order_value,
            fulfillment_rate: rate(self.fulfilled, self.confirmed),
            cancellation_rate: rate(self.cancelled, n),
            return_rate: rate(self.returned, self.delivered),
            status_distribution: self.status_distribution,
            gateway_error_rate: rate(input.gateway_errors, input.gateway_calls),
            low_stock,
            alerts: Vec::new(),
        };
        snap.alerts = alerts(&snap, thresholds, self.confirmed);
        snap
    }
}

fn alerts(s: &MetricsSnapshot, t: &AlertThresholds, confirmed_n: u64) -> Vec<String> {
    let mut a = Vec::new();
    if s.cancellation_rate > t.max_cancellation_rate {
        a.push("high_cancellation_rate".to_owned());
    }
    if s.return_rate > t.max_return_rate {
        a.push("high_return_rate".to_owned());
    }
    if confirmed_n > 0 && s.fulfillment_rate < t.min_fulfillment_rate {
        a.push("low_fulfillment_rate".to_owned());
    }
    if s.gateway_error_rate > t.max_gateway_error_rate {
        a.push("payment_gateway_down".to_owned());
    }
    if !s.low_stock.is_empty() {
        a.push("low_inventory".to_owned());
    }
    a
}

impl MetricsSnapshot {
    /// Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP oms_{name} {help}");
            let _ = writeln!(out, "# TYPE oms_{name} gauge");
            for (labels, value) in samples {
                let _ = writeln!(out, "oms_{name}{labels} {value}");
            }
        };
        let one = |v: String| vec![(String::new(), v)];
        gauge("orders", "Orders counted.", &one(self.orders.to_string()));
        gauge(
            "orders_last_hour",
            "Orders created in the last hour.",
            &one(self.orders_last_hour.to_string()),
        );
        gauge(
            "orders_per_hour",
            "Average orders per hour over the observed span.",
            &one(self.orders_per_hour.to_string()),
        );
        let aov: Vec<(String, String)> = self
            .average_order_value
            .iter()
            .map(|(c, m)| (format!("{{currency=\"{c}\"}}"), m.amount().to_string()))
            .collect();
        gauge(
            "average_order_value",
            "Average order value per currency.",
            &aov,
        );
        gauge(
            "fulfillment_rate",
            "Shipped orders over confirmed orders.",
            &one(self.fulfillment_rate.to_string()),
        );
        gauge(
            "cancellation_rate",
            "Cancelled orders over all orders.",
            &one(self.cancellation_rate.to_string()),
        );
        gauge(
            "return_rate",
            "Returned orders over delivered orders.",
            &one(self.return_rate.to_string()),
        );
        let dist: Vec<(String, String)> = self
            .status_distribution
            .iter()
            .map(|(s, n)| (format!("{{status=\"{s}\"}}"), n.to_string()))
            .collect();
        gauge("orders_by_status", "Orders per current status.", &dist);
        gauge(
            "gateway_error_rate",
            "Payment gateway errors over calls.",
            &one(self.gateway_error_rate.to_string()),
        );
        let low: Vec<(String, String)> = self
            .low_stock
            .iter()
            .map(|(sku, n)| (format!("{{sku=\"{}\"}}", escape_label(sku)), n.to_string()))
            .collect();
        gauge(
            "low_stock_available",
            "Available units of SKUs at or below the low-stock threshold.",
            &low,
        );
        let alerts: Vec<(String, String)> = [
            "high_cancellation_rate",
            "high_return_rate",
            "low_fulfillment_rate",
            "payment_gateway_down",
            "low_inventory",
        ]
        .iter()
        .map(|a| {
            let on = u8::from(self.alerts.iter().any(|x| x == a));
            (format!("{{alert=\"{a}\"}}"), on.to_string())
        })
        .collect();
        gauge("alert", "1 when the alert fires.", &alerts);
        out
    }
}

/// Escape a Prometheus label value (backslash, quote, newline).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Actor, AuditEntry};
    use crate::order::{AddressInput, Customer, LineItemInput, OrderDraft};
    use crate::text::Text;
    use crate::time::{ManualClock, SequentialIds};

    fn order_at(ids: &SequentialIds, minute: i64, price: &str, path: &[OrderStatus]) -> Order {
        let clock = ManualClock::new(
            Timestamp::from_civil(2026, 5, 6, 10, 0, 0).plus(Duration::minutes(minute)),
        );
        let draft = OrderDraft {
            customer: Customer {
                id: "c".into(),
                email: "c@example.com".into(),
                name: Text::empty(),
            },
            shipping_address: AddressInput {
                name: "C".into(),
                line1: "1 St".into(),
                city: "X".into(),
                postal_code: "1".into(),
                country: "US".into(),
                ..AddressInput::default()
            },
            billing_address: None,
            currency: Currency::USD,
            lines: vec![LineItemInput::new(
                "A",
                1,
                Money::parse(price, Currency::USD).unwrap(),
            )],
            promo_codes: vec![],
        };
        let mut o = Order::create(&draft, &Actor::System, &clock, ids).unwrap();
        for s in path {
            o.history.push(std::sync::Arc::new(AuditEntry {
                from: Some(o.status),
                to: *s,
                event: "test".into(),
                reason: Text::empty(),
                metadata: vec![],
                actor: Actor::System,
                at: o.created_at,
            }));
            o.status = *s;
        }
        o
    }

    #[test]
    fn seed_dashboard_figures() {
        use OrderStatus as S;
        let ids = SequentialIds::default();
        let orders = vec![
            order_at(
                &ids,
                0,
                "10.00",
                &[S::Confirmed, S::Processing, S::Shipped, S::Delivered],
            ),
            order_at(
                &ids,
                10,
                "20.00",
                &[S::Confirmed, S::Processing, S::Shipped],
            ),
            order_at(&ids, 20, "30.01", &[S::Confirmed]),
            order_at(&ids, 30, "5.00", &[S::Cancelled]),
            order_at(
                &ids,
                90,
                "1.00",
                &[S::Confirmed, S::Shipped, S::Delivered, S::ReturnRequested],
            ),
        ];
        let input = MetricsInput {
            now: Timestamp::from_civil(2026, 5, 6, 11, 30, 0),
            gateway_calls: 10,
            gateway_errors: 3,
            stock: vec![("A".into(), 2), ("B".into(), 50)],
        };
        let s = compute(&orders, &input, &AlertThresholds::default());
        assert_eq!(s.orders, 5);
        assert_eq!(s.orders_last_hour, 1);
        assert_eq!(s.orders_per_hour.to_string(), "3.33");
        assert_eq!(s.average_order_value["USD"].amount().to_string(), "15.25");
        assert_eq!(s.fulfillment_rate.to_string(), "0.7500");
        assert_eq!(s.cancellation_rate.to_string(), "0.2000");
        assert_eq!(s.return_rate.to_string(), "0.5000");
        assert_eq!(s.status_distribution["delivered"], 1);
        assert_eq!(s.status_distribution["pending"], 0);
        assert_eq!(s.gateway_error_rate.to_string(), "0.3000");
        assert_eq!(s.low_stock, vec![("A".to_string(), 2)]);
        assert_eq!(
            s.alerts,
            [
                "high_cancellation_rate",
                "high_return_rate",
                "low_fulfillment_rate",
                "payment_gateway_down",
                "low_inventory"
            ]
        );
        // Counted page by page, in any order, a tally gives the same snapshot.
        let mut tally = MetricsTally::new(input.now);
        for o in orders.iter().rev() {
            tally.add(o);
        }
        assert_eq!(tally.snapshot(&input, &AlertThresholds::default()), s);
        let prom = s.to_prometheus();
        assert!(prom.contains("oms_orders 5\n"));
        assert!(prom.contains("oms_orders_by_status{status=\"cancelled\"} 1\n"));
        assert!(prom.contains("oms_alert{alert=\"low_inventory\"} 1\n"));
        assert!(prom.contains("# TYPE oms_cancellation_rate gauge\n"));
    }

    #[test]
    fn empty_book_has_no_alerts_and_no_division_by_zero() {
        let s = compute(&[], &MetricsInput::default(), &AlertThresholds::default());
        assert_eq!(s.orders, 0);
        assert!(s.alerts.is_empty());
        assert_eq!(s.fulfillment_rate, Decimal::ZERO);
        assert_eq!(escape_label("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
