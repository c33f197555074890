//! `oms simulate`: the main job — a seeded world and N orders through the whole service on the
//! embedded SQLite store (or PostgreSQL), a live progress bar, the seed 001 §10 dashboard at the
//! end, and an optional self-contained HTML report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use oms_core::inventory::ReservationConfig;
use oms_core::payment::CapturePolicy;
use oms_core::service::CheckoutFlow;
use oms_sim::{run, Backend, SimConfig, SimReport};
use oms_store::{PostgresInventory, PostgresStore, SqliteInventory, SqliteStore};

use crate::inspect::{all_diagrams, dashboard};

/// Flags of `oms simulate`.
#[derive(clap::Args)]
#[allow(clippy::struct_excessive_bools)] // each is one on/off switch of the command line
pub struct SimulateArgs {
    /// Orders to simulate.
    #[arg(long, default_value_t = 10_000)]
    pub orders: usize,
    /// SQLite database file (replaced if it is an earlier oms database).
    #[arg(long, default_value = "oms.db")]
    pub db: PathBuf,
    /// Seed: the same seed gives the same run.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Use PostgreSQL at this URL instead of SQLite (schema `oms_sim`, recreated).
    #[arg(long)]
    pub postgres: Option<String>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the result as JSON instead of the dashboard.
    #[arg(long)]
    pub json: bool,
    /// Pay before reserving stock (seeds 000/004) instead of reserving first (seeds 001/002).
    #[arg(long)]
    pub pay_first: bool,
    /// Capture payments at shipment instead of at delivery.
    #[arg(long)]
    pub capture_on_shipment: bool,
    /// Orders between two commits on SQLite: each operation stays atomic on its own, and the
    /// writes of this many orders (about a second of work) become durable together. 0 commits
    /// every operation by itself.
    #[arg(long, default_value_t = 1000)]
    pub commit_every: usize,
    /// Commit each group of orders on the simulation's own thread. By default a group is
    /// committed on a second thread while the next one already runs (SQLite, with
    /// `--commit-every` above 0).
    #[arg(long)]
    pub commit_in_line: bool,
}

/// True when `path` is a SQLite file written by oms (it has our schema table).
fn is_oms_database(path: &Path) -> Result<bool, String> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let found: Result<i64, _> = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('schema_version', 'orders')",
        [],
        |r| r.get(0),
    );
    Ok(matches!(found, Ok(2)))
}

/// Check every flag before anything is written, so a bad flag never leaves a half-made database.
fn validate(args: &SimulateArgs) -> Result<(), String> {
    if args.orders == 0 || args.orders > 10_000_000 {
        return Err(format!(
            "--orders must be between 1 and 10000000, got {}",
            args.orders
        ));
    }
    if let Some(report) = &args.report {
        let parent = report
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(format!(
                "--report: directory {} does not exist",
                parent.display()
            ));
        }
        if report.is_dir() {
            return Err(format!("--report: {} is a directory", report.display()));
        }
    }
    if args.postgres.is_none() {
        let parent = args
            .db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(format!(
                "--db: directory {} does not exist",
                parent.display()
            ));
        }
        if args.db.is_dir() {
            return Err(format!("--db: {} is a directory", args.db.display()));
        }
        if args.db.exists() && !is_oms_database(&args.db)? {
            return Err(format!(
                "--db: {} exists and is not an oms database; refusing to replace it",
                args.db.display()
            ));
        }
    }
    Ok(())
}

fn fresh_sqlite(path: &Path) -> Result<(), String> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let p = PathBuf::from(p);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| format!("cannot replace {}: {e}", p.display()))?;
        }
    }
    Ok(())
}

/// How the run made its writes durable, for the dashboard.
fn commit_text(orders_per_commit: usize, pipelined: bool) -> String {
    match (orders_per_commit, pipelined) {
        (0, _) => "one per operation".to_owned(),
        (n, false) => format!("grouped, one per {n} orders (each operation atomic)"),
        (n, true) => format!(
            "grouped, one per {n} orders, each written while the next runs (each operation atomic)"
        ),
    }
}

/// Run the command; `Err` is the one-line message for stderr.
pub fn simulate(args: &SimulateArgs) -> Result<bool, String> {
    validate(args)?;
    let config = SimConfig {
        orders: args.orders,
        seed: args.seed,
        flow: if args.pay_first {
            CheckoutFlow::PayThenReserve
        } else {
            CheckoutFlow::ReserveThenPay
        },
        capture: if args.capture_on_shipment {
            CapturePolicy::OnShipment
        } else {
            CapturePolicy::OnDelivery
        },
        orders_per_commit: if args.postgres.is_some() {
            0
        } else {
            args.commit_every
        },
        ..SimConfig::default()
    };
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.orders as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} orders  {per_sec}  eta {eta}")
            .map_err(|e| e.to_string())?,
    );
    let pipelined = args.postgres.is_none() && config.orders_per_commit > 0 && !args.commit_in_line;
    let started = Instant::now();
    let where_ = match &args.postgres {
        Some(url) => format!("PostgreSQL ({})", redact(url)),
        None => format!("SQLite {}", args.db.display()),
    };
    let report: SimReport = match &args.postgres {
        None => {
            fresh_sqlite(&args.db)?;
            let path = args.db.clone();
            run(
                &config,
                Box::new(move |ids| {
                    // One connection for both, so they share the page cache and the batch.
                    let orders = Arc::new(SqliteStore::open(&path)?);
                    if pipelined {
                        orders.pipeline_batches()?;
                    }
                    let inventory =
                        SqliteInventory::sharing(orders.clone(), ids, ReservationConfig::default());
                    Ok(Backend {
                        orders,
                        inventory: Arc::new(inventory),
                    })
                }),
                &mut |n| bar.set_position(n as u64),
            )
        }
        Some(url) => {
            let url = url.clone();
            run(
                &config,
                Box::new(move |ids| {
                    let mut admin =
                        postgres::Client::connect(&url, postgres::NoTls).map_err(|e| {
                            oms_core::OmsError::Storage {
                                reason: e.to_string(),
                            }
                        })?;
                    admin
                        .batch_execute("DROP SCHEMA IF EXISTS oms_sim CASCADE")
                        .map_err(|e| oms_core::OmsError::Storage {
                            reason: e.to_string(),
                        })?;
                    let orders = PostgresStore::connect_with_schema(&url, "oms_sim")?;
                    let inventory = PostgresInventory::new(
                        PostgresStore::connect_with_schema(&url, "oms_sim")?,
                        ids,
                    );
                    Ok(Backend {
                        orders: Arc::new(orders),
                        inventory: Arc::new(inventory),
                    })
                }),
                &mut |n| bar.set_position(n as u64),
            )
        }
    }
    .map_err(|e| format!("simulation failed: {e} ({})", e.code()))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let throughput = args.orders as f64 / secs.max(1e-9);
    if let Some(path) = &args.report {
        let html = oms_sim::report::render_html(&report, &all_diagrams(), Some(throughput));
        let tmp = path.with_extension("html.tmp");
        std::fs::write(&tmp, html).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if args.json {
        let mut v = serde_json::to_value(&report).map_err(|e| e.to_string())?;
        v["throughput_orders_per_s"] = serde_json::json!(format!("{throughput:.0}"));
        v["wall_seconds"] = serde_json::json!(format!("{secs:.3}"));
        v["orders_per_commit"] = serde_json::json!(config.orders_per_commit);
        v["commits_pipelined"] = serde_json::json!(pipelined);
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "oms simulate: {} orders, seed {}, {where_}",
            report.orders, report.seed
        );
        println!("  throughput           {throughput:.0} orders/s ({secs:.2} s wall clock)");
        println!(
            "  commits              {}",
            commit_text(config.orders_per_commit, pipelined)
        );
        print!("{}", dashboard(&report.metrics));
        println!("  simulated time       {} h", report.simulated_hours);
        println!(
            "  messages             {} outbox events · {} customer notifications",
            report.events, report.notifications
        );
        println!("  outcomes             {}", outcomes_line(&report));
        println!(
            "  stock                initial {} + received {} − shipped {} + restocked {} = on hand {}",
            report.stock.initial, report.stock.received, report.stock.shipped, report.stock.restocked, report.stock.final_on_hand
        );
        println!(
            "  money (USD)          captured {} − refunded {} = net charges {}",
            cents(report.money.captured),
            cents(report.money.refunded),
            cents(report.money.net_charges)
        );
        let inv = &report.invariants;
        let mark = |ok: bool| if ok { "ok" } else { "VIOLATED" };
        println!(
            "  invariants           stock {} · money {} · payments {} · events {} · states {}",
            mark(inv.stock_conserved),
            mark(inv.money_conserved),
            mark(inv.payments_bounded),
            mark(inv.events_complete),
            mark(inv.states_valid)
        );
        for v in &inv.violations {
            println!("    - {v}");
        }
        println!("  digest               {}", report.digest);
        if let Some(r) = &args.report {
            println!("  report               {}", r.display());
        }
    }
    Ok(report.invariants.all_hold())
}

fn outcomes_line(r: &SimReport) -> String {
    r.outcomes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn cents(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    format!("{sign}{}.{:02}", m / 100, m % 100)
}

/// A URL with any password removed, for printing.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(cents(12345), "123.45");
        assert_eq!(cents(-5), "-0.05");
        assert_eq!(
            redact("postgresql://u:secret@127.0.0.1:5/db"),
            "postgresql://u@127.0.0.1:5/db"
        );
        assert_eq!(
            redact("postgresql://127.0.0.1/db"),
            "postgresql://127.0.0.1/db"
        );
    }
}
