//! The HTML report of a real (small) simulation, rendered by headless Chromium from a local
//! file: the page must carry its charts and state machines, and the screenshot must not be blank.
//! Chromium is required (`scripts/test` installs it); `OMS_SKIP_BROWSER=1` skips the browser part.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oms_core::inventory::MemoryInventory;
use oms_core::store::MemoryStore;
use oms_sim::report::render_html;
use oms_sim::{run, AllocationSummary, Backend, SimConfig, SimReport};

const CHROMIUM: &str = "/usr/bin/chromium";

fn simulate() -> SimReport {
    let config = SimConfig {
        orders: 200,
        seed: 11,
        ..SimConfig::default()
    };
    run(
        &config,
        Box::new(|ids| {
            Ok(Backend {
                orders: Arc::new(MemoryStore::new()),
                inventory: Arc::new(MemoryInventory::new(ids)),
            })
        }),
        &mut |_| {},
    )
    .unwrap()
}

fn diagrams() -> Vec<(&'static str, String)> {
    vec![
        ("order", oms_core::diagram::mermaid()),
        ("payment", oms_core::payment::mermaid()),
        ("reservation", oms_core::inventory::reservation_mermaid()),
        ("fulfillment", oms_core::fulfillment::fulfillment_mermaid()),
        ("return", oms_core::returns::return_mermaid()),
    ]
}

/// The report with a sourcing-cost summary, as a caller that ran the comparison attaches it.
fn with_allocation(mut report: SimReport) -> SimReport {
    report.allocation = Some(AllocationSummary {
        orders: 200,
        optimal_cost: "1840.50".to_owned(),
        nearest_cost: "2210.75".to_owned(),
        priority_cost: "2675.00".to_owned(),
    });
    report
}

/// A fresh directory of this test's own under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oms-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run Chromium headless on `page` with `args`, killing it if it takes over two minutes;
/// returns its stdout.
fn chromium(profile: &Path, args: &[&str], page: &Path) -> String {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let deadline = Instant::now() + Duration::from_mins(2);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

#[test]
fn report_of_a_run_has_every_chart_and_machine() {
    let report = simulate();
    assert!(report.invariants.all_hold(), "{:?}", report.invariants);
    // The run sources its orders with every strategy: the optimiser never costs more.
    let a = report.allocation.clone().expect("sourcing comparison");
    assert!(a.orders > 0);
    let cost = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
    assert!(
        cost(&a.optimal_cost) <= cost(&a.nearest_cost)
            && cost(&a.optimal_cost) <= cost(&a.priority_cost),
        "{a:?}"
    );
    // Without one, a note stands in for the chart.
    let mut bare = report.clone();
    bare.allocation = None;
    let html = render_html(&bare, &diagrams(), None);
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 2);
    assert!(html.contains("sourcing-cost comparison is not available"));

    let report = with_allocation(report);
    let html = render_html(&report, &diagrams(), Some(1234.0));
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 3);
    assert_eq!(html.matches("<svg class=\"machine\"").count(), 5);
    let status_bars = report.metrics.status_distribution.len();
    assert!(status_bars >= 10, "every status listed");
    assert_eq!(html.matches("<rect class=\"bar\"").count(), status_bars + 3);
    assert!(html.contains(&format!("<code>{}</code>", report.digest)));
    assert!(!html.to_lowercase().contains("http"));
}

#[test]
fn chromium_renders_the_report_offline() {
    if std::env::var("OMS_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("OMS_SKIP_BROWSER=1: browser rendering skipped");
        return;
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: scripts/test installs it (apt-get install chromium), or set \
         OMS_SKIP_BROWSER=1 to skip this test explicitly"
    );
    let report = with_allocation(simulate());
    let dir = scratch("render");
    let page = dir.join("report.html");
    std::fs::write(&page, render_html(&report, &diagrams(), Some(1234.0))).unwrap();

    let dom = chromium(&dir.join("profile-dom"), &["--dump-dom"], &page);
    assert_eq!(dom.matches("<svg").count(), 8, "3 charts and 5 machines");
    for id in ["chart-status", "chart-orders", "chart-allocation"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id} in the DOM");
    }
    assert_eq!(
        dom.matches("class=\"bar\"").count(),
        report.metrics.status_distribution.len() + 3
    );
    assert!(dom.contains(">processing</text>"));
    assert!(dom.contains(">Reserved</text>"));

    let png = dir.join("report.png");
    chromium(
        &dir.join("profile-shot"),
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,4000",
        ],
        &page,
    );
    let shot = std::fs::read(&png).expect("screenshot written");
    assert_eq!(&shot[..8], b"\x89PNG\r\n\x1a\n", "a PNG");

    // A blank page of the same size, for scale: the report must be far bigger once compressed,
    // which it only is when charts, boxes and text were actually painted.
    let blank_page = dir.join("blank.html");
    std::fs::write(&blank_page, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_png = dir.join("blank.png");
    chromium(
        &dir.join("profile-blank"),
        &[
            &format!("--screenshot={}", blank_png.display()),
            "--window-size=1280,4000",
        ],
        &blank_page,
    );
    let blank = std::fs::read(&blank_png).expect("blank screenshot written");
    assert!(
        shot.len() > 10 * blank.len() && shot.len() > 50_000,
        "report screenshot {} bytes vs blank {} bytes",
        shot.len(),
        blank.len()
    );
    eprintln!(
        "report screenshot {} bytes, blank {} bytes",
        shot.len(),
        blank.len()
    );
    // Kept on failure (the asserts above return first) so the page and screenshot can be seen.
    let _ = std::fs::remove_dir_all(&dir);
}
