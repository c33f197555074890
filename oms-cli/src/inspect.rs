//! `oms track`, `oms metrics` and `oms diagram`, and the dashboard text they share with
//! `oms simulate`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oms_core::metrics::{AlertThresholds, MetricsInput, MetricsSnapshot, MetricsTally};
use oms_core::order::Order;
use oms_core::service::tracking;
use oms_core::store::{for_each_page, OrderStore};
use oms_core::time::{Duration, SequentialIds, Timestamp};
use oms_core::OmsError;
use oms_store::{SqliteInventory, SqliteStore};

/// Which state machine `oms diagram` prints.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum MachineArg {
    /// The canonical order lifecycle.
    Order,
    /// Payment authorization, capture, refund.
    Payment,
    /// Inventory reservation (seed 000 §3).
    Reservation,
    /// Pick, pack, ship, deliver.
    Fulfillment,
    /// Returns and refunds.
    Return,
}

/// Output format of `oms metrics`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    /// The dashboard as text.
    Text,
    /// JSON.
    Json,
    /// Prometheus text exposition.
    Prometheus,
}

/// The Mermaid text of one machine.
pub fn diagram(machine: MachineArg) -> String {
    match machine {
        MachineArg::Order => oms_core::diagram::mermaid(),
        MachineArg::Payment => oms_core::payment::mermaid(),
        MachineArg::Reservation => oms_core::inventory::reservation_mermaid(),
        MachineArg::Fulfillment => oms_core::fulfillment::fulfillment_mermaid(),
        MachineArg::Return => oms_core::returns::return_mermaid(),
    }
}

/// Every machine's name and Mermaid text, for reports.
pub fn all_diagrams() -> Vec<(&'static str, String)> {
    vec![
        ("order", diagram(MachineArg::Order)),
        ("payment", diagram(MachineArg::Payment)),
        ("reservation", diagram(MachineArg::Reservation)),
        ("fulfillment", diagram(MachineArg::Fulfillment)),
        ("return", diagram(MachineArg::Return)),
    ]
}

fn pct(rate: rust_decimal::Decimal) -> String {
    format!("{:.2} %", rate * rust_decimal::Decimal::from(100))
}

/// The seed 001 §10 dashboard as text.
pub fn dashboard(m: &MetricsSnapshot) -> String {
    let mut out = String::new();
    let aov = m
        .average_order_value
        .values()
        .map(|v| format!("{} {}", v.currency(), v.amount()))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "  orders               {}", m.orders);
    let _ = writeln!(
        out,
        "  orders/hour          {} (last hour {})",
        m.orders_per_hour, m.orders_last_hour
    );
    let _ = writeln!(
        out,
        "  average order value  {}",
        if aov.is_empty() { "-".into() } else { aov }
    );
    let _ = writeln!(out, "  fulfillment rate     {}", pct(m.fulfillment_rate));
    let _ = writeln!(out, "  cancellation rate    {}", pct(m.cancellation_rate));
    let _ = writeln!(out, "  return rate          {}", pct(m.return_rate));
    let _ = writeln!(out, "  gateway error rate   {}", pct(m.gateway_error_rate));
    let _ = writeln!(out, "  status distribution");
    let max = m
        .status_distribution
        .values()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    for (status, n) in m.status_distribution.iter().filter(|(_, n)| **n > 0) {
        let width = usize::try_from(n * 40 / max).unwrap_or(40).max(1);
        let _ = writeln!(out, "    {status:<20} {:>7} {}", n, "█".repeat(width));
    }
    let alerts = if m.alerts.is_empty() {
        "none".to_owned()
    } else {
        m.alerts.join(", ")
    };
    let _ = writeln!(out, "  alerts               {alerts}");
    if !m.low_stock.is_empty() {
        let _ = writeln!(out, "  low stock            {} skus", m.low_stock.len());
    }
    out
}

fn existing(db: &Path) -> Result<(), String> {
    if !db.is_file() {
        return Err(format!(
            "--db: {} does not exist (run `oms simulate` first)",
            db.display()
        ));
    }
    Ok(())
}

fn oms(e: &OmsError) -> String {
    format!("{e} ({})", e.code())
}

/// `oms track NUMBER --db PATH`: the customer-facing timeline.
pub fn track(number: &str, db: &PathBuf, json: bool) -> Result<String, String> {
    existing(db)?;
    let store = SqliteStore::open(db).map_err(|e| oms(&e))?;
    let order = store.order_by_number(number).map_err(|e| oms(&e))?;
    let t = tracking(&order, Duration::hours(24));
    if json {
        return serde_json::to_string_pretty(&t).map_err(|e| e.to_string());
    }
    let mut out = String::new();
    let _ = writeln!(out, "{}  {}", t.number, t.status);
    for e in &t.timeline {
        let _ = writeln!(
            out,
            "  {}  {:<20} {}",
            e.at,
            e.status.as_str(),
            e.description
        );
    }
    for s in &t.shipments {
        let eta = s
            .estimated_delivery
            .map_or_else(|| "-".to_owned(), |t| t.to_string());
        let _ = writeln!(
            out,
            "  shipment {} from {}: {:?}, {} {}, estimated delivery {eta}",
            s.shipment_id,
            s.warehouse.as_deref().unwrap_or("-"),
            s.status,
            s.carrier.as_deref().unwrap_or("-"),
            s.tracking_number.as_deref().unwrap_or("-"),
        );
    }
    Ok(out)
}

/// Call `f` with every stored order, in id order, reading a page of them at a time.
fn each_order(store: &SqliteStore, mut f: impl FnMut(&Order)) -> Result<(), String> {
    for_each_page(store, |page| {
        page.iter().for_each(&mut f);
        Ok(())
    })
    .map_err(|e| oms(&e))
}

/// `oms metrics --db PATH`: the dashboard over a database.
pub fn metrics(db: &PathBuf, format: FormatArg) -> Result<String, String> {
    existing(db)?;
    let store = SqliteStore::open(db).map_err(|e| oms(&e))?;
    // "Now" is the last moment the book saw, so a replayed database reads the same every time;
    // it decides the last hour, so the book is read twice, a page at a time, rather than held.
    let mut now = Timestamp(0);
    each_order(&store, |o| now = now.max(o.updated_at))?;
    let mut tally = MetricsTally::new(now);
    each_order(&store, |o| tally.add(o))?;
    let inventory = SqliteInventory::new(
        SqliteStore::open(db).map_err(|e| oms(&e))?,
        Arc::new(SequentialIds::default()),
    );
    let mut stock: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for row in oms_core::inventory::InventoryStore::levels(&inventory).map_err(|e| oms(&e))? {
        *stock.entry(row.sku.as_str().to_owned()).or_insert(0) += row.level.available();
    }
    let input = MetricsInput {
        now,
        gateway_calls: 0,
        gateway_errors: 0,
        stock: stock.into_iter().collect(),
    };
    let snap = tally.snapshot(&input, &AlertThresholds::default());
    Ok(match format {
        FormatArg::Text => dashboard(&snap),
        FormatArg::Json => serde_json::to_string_pretty(&snap).map_err(|e| e.to_string())?,
        FormatArg::Prometheus => snap.to_prometheus(),
    })
}
