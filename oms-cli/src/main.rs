//! The `oms` command-line tool.
//!
//! `oms simulate` runs the main job (a seeded world, N orders through the whole service on the
//! embedded SQLite store, the dashboard at the end, an optional HTML report); `oms track`,
//! `oms metrics` and `oms diagram` read the result.
//!
//! `oms allocate --input problem.json [--strategy optimal|batch|nearest|priority]
//! [--time-limit-ms N]` reads an allocation problem as JSON and prints the plan as JSON. Bad
//! input gets one line on stderr naming the field, and a non-zero exit; never a panic.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod inspect;
mod simulate;

/// The simulation allocates and frees many short-lived strings and documents per operation;
/// mimalloc serves them from per-size free lists where the system allocator spent about a
/// quarter of the run consolidating and splitting chunks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use oms_core::allocation::{allocate, AllocationOptions, AllocationProblem, Strategy};
use oms_core::time::{Duration, Timestamp};
use oms_core::OmsError;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

/// oms: an embeddable order-management library, from the command line.
#[derive(Parser)]
#[command(name = "oms", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run N orders through the whole service on a seeded world (the main job).
    Simulate(simulate::SimulateArgs),
    /// Source orders from warehouses and drivers at least cost; prints a JSON plan.
    Allocate(AllocateArgs),
    /// Show an order's customer-facing timeline.
    Track {
        /// The order number (ORD-…).
        number: String,
        /// SQLite database file.
        #[arg(long, default_value = "oms.db")]
        db: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the operations dashboard of a database.
    Metrics {
        /// SQLite database file.
        #[arg(long, default_value = "oms.db")]
        db: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = inspect::FormatArg::Text)]
        format: inspect::FormatArg,
    },
    /// Print a state machine as a Mermaid stateDiagram.
    Diagram {
        /// Which machine.
        #[arg(value_enum, default_value_t = inspect::MachineArg::Order)]
        machine: inspect::MachineArg,
    },
}

#[derive(clap::Args)]
struct AllocateArgs {
    /// The problem as JSON (see the README, "oms allocate"); `-` reads standard input.
    #[arg(long)]
    input: PathBuf,
    /// How to allocate.
    #[arg(long, value_enum, default_value_t = StrategyArg::Optimal)]
    strategy: StrategyArg,
    /// Time budget of the batch solver, in milliseconds.
    #[arg(long)]
    time_limit_ms: Option<u64>,
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArg {
    /// Exact per order (subset search, MIP where needed), orders in turn (default).
    Optimal,
    /// One MIP over all orders competing for shared stock.
    Batch,
    /// Greedy fill from the nearest warehouse.
    Nearest,
    /// Greedy fill along `options.priority` (or the input order of warehouses).
    Priority,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Strategy {
        match s {
            StrategyArg::Optimal => Strategy::Optimal,
            StrategyArg::Batch => Strategy::Batch,
            StrategyArg::Nearest => Strategy::Nearest,
            StrategyArg::Priority => Strategy::Priority,
        }
    }
}

/// The optional `options` object of the input file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OptionsInput {
    #[serde(default)]
    allow_partial: bool,
    unfilled_penalty: Option<Decimal>,
    max_splits: Option<u32>,
    same_day_radius_km: Option<f64>,
    next_day_radius_km: Option<f64>,
    mip_gap: Option<f64>,
    batch_rounds: Option<u32>,
    #[serde(default)]
    priority: Vec<String>,
    now_ms: Option<i64>,
    handling_minutes: Option<i64>,
    driver_speed_kmh: Option<f64>,
    explain_alternatives: Option<bool>,
}

impl OptionsInput {
    fn into_options(self, time_limit_ms: Option<u64>) -> AllocationOptions {
        let d = AllocationOptions::default();
        AllocationOptions {
            allow_partial: self.allow_partial,
            unfilled_penalty: self.unfilled_penalty.unwrap_or(d.unfilled_penalty),
            max_splits: self.max_splits,
            same_day_radius_km: self.same_day_radius_km.unwrap_or(d.same_day_radius_km),
            next_day_radius_km: self.next_day_radius_km,
            time_limit_ms,
            mip_gap: self.mip_gap.unwrap_or(d.mip_gap),
            batch_rounds: self.batch_rounds.unwrap_or(d.batch_rounds),
            priority: self.priority,
            now: self.now_ms.map_or_else(wall_clock, Timestamp),
            handling: self.handling_minutes.map_or(d.handling, Duration::minutes),
            driver_speed_kmh: self.driver_speed_kmh.unwrap_or(d.driver_speed_kmh),
            explain_alternatives: self.explain_alternatives.unwrap_or(true),
        }
    }
}

/// The CLI is the host, so it is where the wall clock is read (the core never does).
fn wall_clock() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp(ms)
}

/// A refusal of the input: one line naming the field.
struct InputError(String);

fn typed<T: serde::de::DeserializeOwned>(value: Value, prefix: &str) -> Result<T, InputError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = match (prefix.is_empty(), path.as_str()) {
            (true, _) => path,
            (false, ".") => prefix.to_owned(),
            (false, p) => format!("{prefix}.{p}"),
        };
        InputError(format!("{path}: {}", e.into_inner()))
    })
}

fn read_input(args: &AllocateArgs) -> Result<(AllocationProblem, AllocationOptions), InputError> {
    let mut text = String::new();
    let read = if args.input.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(&args.input).map(|t| text = t)
    };
    read.map_err(|e| InputError(format!("cannot read {}: {e}", args.input.display())))?;
    let mut value: Value = serde_json::from_str(&text)
        .map_err(|e| InputError(format!("input is not valid JSON: {e}")))?;
    let Value::Object(map) = &mut value else {
        return Err(InputError("input: expected a JSON object".into()));
    };
    let options = match map.remove("options") {
        Some(v) => typed::<OptionsInput>(v, "options")?,
        None => OptionsInput::default(),
    };
    let problem: AllocationProblem = typed(value, "")?;
    Ok((problem, options.into_options(args.time_limit_ms)))
}

/// Show estimated times as RFC 3339 text rather than epoch milliseconds.
fn readable(mut plan: Value) -> Value {
    if let Some(parcels) = plan.get_mut("parcels").and_then(Value::as_array_mut) {
        for p in parcels {
            for key in ["estimated_pickup", "estimated_delivery"] {
                if let Some(v) = p.get_mut(key) {
                    if let Some(ms) = v.as_i64() {
                        *v = Value::String(Timestamp(ms).to_rfc3339());
                    }
                }
            }
        }
    }
    plan
}

fn infeasible(e: &OmsError, short: &[String]) -> Value {
    let unfilled: Vec<Value> = short
        .iter()
        .map(|s| match s.rsplit_once(':') {
            Some((sku, n)) => json!({"sku": sku, "quantity": n.parse::<u64>().unwrap_or(0)}),
            None => json!({"sku": s}),
        })
        .collect();
    json!({
        "status": "infeasible",
        "total_cost": "0",
        "gap": 0.0,
        "parcels": [],
        "unfilled": unfilled,
        "explanation": [],
        "error": {"code": e.code(), "message": e.to_string()},
    })
}

fn run_allocate(args: &AllocateArgs) -> ExitCode {
    let (problem, options) = match read_input(args) {
        Ok(x) => x,
        Err(InputError(msg)) => {
            eprintln!("oms allocate: {msg}");
            return ExitCode::from(2);
        }
    };
    let out = match allocate(&problem, args.strategy.into(), &options) {
        Ok(plan) => match serde_json::to_value(&plan) {
            Ok(v) => readable(v),
            Err(e) => {
                eprintln!("oms allocate: cannot encode the plan: {e}");
                return ExitCode::from(1);
            }
        },
        Err(e @ OmsError::Unfulfillable { .. }) => {
            let OmsError::Unfulfillable { short } = &e else {
                return ExitCode::from(1);
            };
            infeasible(&e, short)
        }
        Err(e) => {
            let code = e.code();
            eprintln!("oms allocate: {code}: {e}");
            return ExitCode::from(
                if code.starts_with("invalid")
                    || code == "missing_field"
                    || code == "unknown_warehouse"
                {
                    2
                } else {
                    1
                },
            );
        }
    };
    match serde_json::to_string_pretty(&out) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oms allocate: cannot encode the plan: {e}");
            ExitCode::from(1)
        }
    }
}

/// Print a command's text or its one-line error.
fn emit(command: &str, result: Result<String, String>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("oms {command}: {msg}");
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Simulate(args) => match simulate::simulate(args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("oms simulate: invariants violated (listed above)");
                ExitCode::from(1)
            }
            Err(msg) => {
                eprintln!("oms simulate: {msg}");
                ExitCode::from(2)
            }
        },
        Command::Allocate(args) => run_allocate(args),
        Command::Track { number, db, json } => emit("track", inspect::track(number, db, *json)),
        Command::Metrics { db, format } => emit("metrics", inspect::metrics(db, *format)),
        Command::Diagram { machine } => emit("diagram", Ok(inspect::diagram(*machine))),
    }
}
