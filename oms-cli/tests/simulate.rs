//! `oms simulate` end to end on the embedded SQLite store: a consistent world (stock and money
//! conserved, no invariant broken), then `track`, `metrics` and `diagram` on its database; bad
//! flags and unreadable paths are one-line errors with a non-zero exit and no database left.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn oms(args: &[&str], dir: &PathBuf) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oms"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oms-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn one_line_error(out: &Output, command: &str) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("oms {command}: ")) || err.starts_with("error:"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn simulate_leaves_a_consistent_world_and_the_readers_work() {
    let dir = temp("sim");
    let out = oms(
        &[
            "simulate", "--orders", "400", "--seed", "5", "--json", "--db", "w.db",
        ],
        &dir,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let inv = &r["invariants"];
    for check in [
        "stock_conserved",
        "money_conserved",
        "payments_bounded",
        "events_complete",
        "states_valid",
    ] {
        assert_eq!(inv[check], true, "{check}: {}", inv["violations"]);
    }
    let s = &r["stock"];
    let (initial, received, shipped, restocked, on_hand) = (
        s["initial"].as_u64().unwrap(),
        s["received"].as_u64().unwrap(),
        s["shipped"].as_u64().unwrap(),
        s["restocked"].as_u64().unwrap(),
        s["final_on_hand"].as_u64().unwrap(),
    );
    assert_eq!(initial + received + restocked - shipped, on_hand);
    let m = &r["money"];
    assert_eq!(
        m["captured"].as_i64().unwrap() - m["refunded"].as_i64().unwrap(),
        m["net_charges"].as_i64().unwrap()
    );
    assert!(r["outcomes"]["delivered"].as_u64().unwrap() > 100);

    // the same seed gives the same world
    let again = oms(
        &[
            "simulate", "--orders", "400", "--seed", "5", "--json", "--db", "w.db",
        ],
        &dir,
    );
    let r2: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(r["digest"], r2["digest"]);
    // ... whether its groups commit behind the run (the default) or in line, and however many
    // orders a group holds
    assert_eq!(r["commits_pipelined"], true);
    let in_line = oms(
        &[
            "simulate",
            "--orders",
            "400",
            "--seed",
            "5",
            "--json",
            "--db",
            "in-line.db",
            "--commit-in-line",
            "--commit-every",
            "50",
        ],
        &dir,
    );
    assert!(
        in_line.status.success(),
        "{}",
        String::from_utf8_lossy(&in_line.stderr)
    );
    let r3: Value = serde_json::from_slice(&in_line.stdout).unwrap();
    assert_eq!(r3["commits_pipelined"], false);
    assert_eq!(r3["orders_per_commit"], 50);
    assert_eq!(r["digest"], r3["digest"]);

    // the dashboard, a timeline and the diagrams read the database
    let metrics = oms(&["metrics", "--db", "w.db"], &dir);
    assert!(metrics.status.success());
    let text = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        text.contains("fulfillment rate") && text.contains("delivered"),
        "{text}"
    );
    let prom = oms(&["metrics", "--db", "w.db", "--format", "prometheus"], &dir);
    assert!(String::from_utf8_lossy(&prom.stdout).contains("# TYPE oms_orders gauge"));
    let track = oms(&["track", "ORD-2026-05-06-000001", "--db", "w.db"], &dir);
    let text = String::from_utf8_lossy(&track.stdout);
    assert!(
        track.status.success(),
        "{}",
        String::from_utf8_lossy(&track.stderr)
    );
    assert!(text.contains("Order placed"), "{text}");
    for machine in ["order", "payment", "reservation", "fulfillment", "return"] {
        let d = oms(&["diagram", machine], &dir);
        assert!(d.status.success());
        assert!(
            String::from_utf8_lossy(&d.stdout).contains("stateDiagram-v2"),
            "{machine}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_and_paths_are_one_line_errors_and_leave_no_database() {
    let dir = temp("bad");
    for (args, command) in [
        (
            vec!["simulate", "--orders", "0", "--db", "x.db"],
            "simulate",
        ),
        (
            vec!["simulate", "--orders", "many", "--db", "x.db"],
            "simulate",
        ),
        (vec!["simulate", "--db", "no/such/dir/x.db"], "simulate"),
        (
            vec![
                "simulate",
                "--orders",
                "5",
                "--db",
                "x.db",
                "--report",
                "no/such/dir/r.html",
            ],
            "simulate",
        ),
        (vec!["simulate", "--frobnicate"], "simulate"),
        (vec!["track", "ORD-1", "--db", "missing.db"], "track"),
        (vec!["metrics", "--db", "missing.db"], "metrics"),
        (vec!["diagram", "nonsense"], "diagram"),
    ] {
        let out = oms(&args, &dir);
        one_line_error_or_usage(&out, command);
        assert!(!dir.join("x.db").exists(), "{args:?} left a database");
        assert!(
            !dir.join("missing.db").exists(),
            "{args:?} created a database"
        );
    }
    // a file that is not an oms database is never replaced
    std::fs::write(dir.join("notes.db"), "my notes").unwrap();
    let out = oms(&["simulate", "--orders", "5", "--db", "notes.db"], &dir);
    let err = one_line_error(&out, "simulate");
    assert!(err.contains("refusing"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.db")).unwrap(),
        "my notes"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Our own errors are one line; clap's usage errors are short and exit 2. Neither panics.
fn one_line_error_or_usage(out: &Output, command: &str) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    if err.starts_with("error:") {
        assert_eq!(out.status.code(), Some(2));
    } else {
        one_line_error(out, command);
    }
}
