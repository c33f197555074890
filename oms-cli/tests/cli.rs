//! End-to-end tests of the `oms` binary: the plan on stdout, and one-line errors naming the
//! field for bad input.

// Test helpers outside `#[test]` functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn oms(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_oms"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command refused on its flags may exit before reading its input: a closed pipe then
    // is expected, and the exit status and stderr still tell what happened.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}"
        );
    }
    child.wait_with_output().unwrap()
}

fn seed004() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seed004.json");
    std::fs::read_to_string(path).unwrap()
}

fn plan(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn allocates_the_seed_004_example_from_a_file() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/seed004.json");
    let out = oms(&["allocate", "--input", path], "");
    let p = plan(&out);
    assert_eq!(p["status"], "optimal");
    assert_eq!(p["total_cost"], "326.14835");
    assert_eq!(p["gap"], 0.0);
    let parcel = &p["parcels"][0];
    assert_eq!(parcel["order"], "ORD-2026-05-06-001");
    assert_eq!(parcel["warehouse"], "WH-NY");
    assert_eq!(parcel["driver"], "D1");
    assert_eq!(parcel["lines"][0]["sku"], "WATER-5L");
    assert_eq!(parcel["lines"][0]["quantity"], 2);
    assert_eq!(parcel["estimated_pickup"], "2026-05-06T14:00:00.000Z");
    assert_eq!(parcel["estimated_delivery"], "2026-05-06T15:30:00.000Z");
    let d2 = p["explanation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "D2")
        .unwrap();
    assert_eq!(d2["reason"], "over_capacity");
    assert_eq!(d2["current_load"], 8);
    assert_eq!(d2["adding"], 5);
}

#[test]
fn every_strategy_runs_from_stdin() {
    for (strategy, status) in [
        ("optimal", "optimal"),
        ("batch", "optimal"),
        ("nearest", "feasible"),
        ("priority", "feasible"),
    ] {
        let out = oms(
            &[
                "allocate",
                "--input",
                "-",
                "--strategy",
                strategy,
                "--time-limit-ms",
                "2000",
            ],
            &seed004(),
        );
        let p = plan(&out);
        assert_eq!(p["status"], status, "{strategy}");
        assert_eq!(p["parcels"][0]["warehouse"], "WH-NY", "{strategy}");
    }
}

#[test]
fn short_stock_prints_an_infeasible_plan() {
    let input = seed004().replace("\"PHONE-X\": 7", "\"PHONE-X\": 0");
    let p = plan(&oms(&["allocate", "--input", "-"], &input));
    assert_eq!(p["status"], "infeasible");
    assert_eq!(p["unfilled"][0]["sku"], "PHONE-X");
    assert_eq!(p["unfilled"][0]["quantity"], 1);
    assert_eq!(p["error"]["code"], "unfulfillable");
}

/// Bad input: exit status 2 and exactly one stderr line that names the field.
#[test]
fn bad_input_names_the_field_and_never_panics() {
    let s = seed004();
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "not valid JSON"),
        ("[1, 2]".into(), "expected a JSON object"),
        (
            s.replace("\"quantity\": 2", "\"quantity\": -2"),
            "orders[0].lines[0].quantity",
        ),
        (
            s.replace("\"quantity\": 2", "\"quantity\": 0"),
            "orders[0].lines[0].quantity",
        ),
        (
            s.replace("\"sku\": \"WATER-5L\"", "\"sku\": \"\""),
            "orders[0].lines[0].sku",
        ),
        (s.replace("\"SAME_DAY\"", "\"TOMORROW\""), "orders[0].sla"),
        (
            s.replace("\"lat\": 40.71", "\"lat\": 140.71"),
            "orders[0].customer_location.lat",
        ),
        (
            s.replace(
                "\"parcel_cost\": \"4\",\n      \"parcel_capacity\"",
                "\"parcel_cost\": \"x\",\n      \"parcel_capacity\"",
            ),
            "warehouses[1].parcel_cost",
        ),
        (
            s.replace("\"1.20\"", "\"-1.20\""),
            "warehouses[0].item_cost.WATER-5L",
        ),
        (
            s.replace("\"current_load\": 3", "\"current_load\": \"3\""),
            "drivers[0].current_load",
        ),
        (
            s.replace(
                "\"min_capacity\": 2, \"max_capacity\": 10}\n  ]",
                "\"min_capacity\": 20, \"max_capacity\": 10}\n  ]",
            ),
            "drivers[1].min_capacity",
        ),
        (
            s.replace(
                "\"shipping\": {\"base_per_unit\": \"1\", ",
                "\"shipping\": {",
            ),
            "shipping",
        ),
        (s.replace("\"now_ms\"", "\"now\""), "options"),
        (
            s.replace("\"id\": \"WH-BOS\"", "\"id\": \"WH-NY\""),
            "warehouses[1].id",
        ),
    ];
    for (input, field) in cases {
        let out = oms(&["allocate", "--input", "-"], &input);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{field}: {err}");
        assert!(out.stdout.is_empty(), "{field}");
        assert_eq!(err.trim_end().lines().count(), 1, "{field}: {err}");
        assert!(err.contains(field), "expected {field:?} in {err:?}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn unknown_strategy_and_missing_file_are_refused() {
    let out = oms(&["allocate", "--input", "-", "--strategy", "fastest"], "{}");
    assert_eq!(out.status.code(), Some(2));
    let out = oms(&["allocate", "--input", "/nonexistent/problem.json"], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
