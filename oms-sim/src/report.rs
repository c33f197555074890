//! The HTML report of a simulation: one self-contained file (inline CSS and SVG, no script, no
//! network) with the run's header, the seed 001 §10 dashboard cards, charts, totals and every
//! state machine drawn from its Mermaid `stateDiagram-v2` text by a small layered renderer.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::journey::{AllocationSummary, SimReport};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#1d2430;background:#f6f7f9}
h1{margin:0 0 4px}h2{margin:28px 0 8px;border-bottom:1px solid #ccd;padding-bottom:4px}
.meta{color:#556;margin:0 0 12px}.ok{color:#17803d;font-weight:600}.bad{color:#b42318;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border:1px solid #dde;border-radius:8px;padding:12px 16px;min-width:150px}
.card .v{font-size:24px;font-weight:700}.card .k{color:#556;font-size:13px}
.alert{background:#fff4e5;border-color:#f0b35a}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #dde;padding:4px 10px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
svg{background:#fff;border:1px solid #dde;border-radius:8px;max-width:100%;height:auto}
.grid{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
pre{background:#fff;border:1px solid #dde;padding:8px;overflow:auto}";

/// Escape text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Render `report` as one self-contained HTML page. `diagrams` are (name, Mermaid
/// `stateDiagram-v2` text) pairs, each drawn as inline SVG with its source beside it;
/// `throughput` is the wall-clock rate in orders per second, when known. The same input gives
/// the same bytes.
pub fn render_html(
    report: &SimReport,
    diagrams: &[(&str, String)],
    throughput: Option<f64>,
) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; results are ignored for that reason only.
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>oms simulation report: seed {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        report.seed
    );
    header(&mut out, report, throughput);
    cards(&mut out, report, throughput);

    out.push_str("<h2>Charts</h2>\n<div class=\"grid\">\n");
    out.push_str(&status_chart(&report.metrics.status_distribution));
    out.push_str(&orders_chart(&report.orders_per_hour));
    match &report.allocation {
        Some(a) => out.push_str(&allocation_chart(a)),
        None => out.push_str(
            "<p class=\"note\">No allocation summary in this run: the sourcing-cost comparison \
             is not available.</p>\n",
        ),
    }
    out.push_str("</div>\n");

    totals(&mut out, report);

    out.push_str("<h2>State machines</h2>\n");
    for (i, (name, text)) in diagrams.iter().enumerate() {
        let diagram = parse(text);
        let title = diagram.title.clone().unwrap_or_else(|| (*name).to_owned());
        let _ = writeln!(out, "<h3>{}</h3>", escape(&title));
        out.push_str(&draw(&diagram, i));
        let _ = writeln!(
            out,
            "<details><summary>Mermaid source of {}</summary><pre>{}</pre></details>",
            escape(name),
            escape(text)
        );
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn header(out: &mut String, report: &SimReport, throughput: Option<f64>) {
    let _ = writeln!(out, "<h1>oms simulation report</h1>");
    let _ = write!(
        out,
        "<p class=\"meta\">seed <b>{}</b> · {} orders · {} simulated hours · {} events · {} \
         notifications · digest <code>{}</code>",
        report.seed,
        report.orders,
        report.simulated_hours,
        report.events,
        report.notifications,
        escape(&report.digest)
    );
    if let Some(t) = throughput {
        let _ = write!(out, " · {t:.0} orders/s wall clock");
    }
    out.push_str("</p>\n");
    if report.invariants.all_hold() {
        out.push_str("<p>Invariants: <span class=\"ok\">all hold</span></p>\n");
    } else {
        let _ = writeln!(
            out,
            "<p>Invariants: <span class=\"bad\">{} violated</span></p>\n<ul class=\"violations\">",
            report.invariants.violations.len()
        );
        for v in &report.invariants.violations {
            let _ = writeln!(out, "<li>{}</li>", escape(v));
        }
        out.push_str("</ul>\n");
    }
}

/// A rate of 0..1 as a percentage with one decimal.
fn percent(rate: Decimal) -> String {
    match rate.checked_mul(Decimal::ONE_HUNDRED) {
        Some(p) => format!("{}%", p.round_dp(1)),
        None => rate.to_string(),
    }
}

fn card(out: &mut String, key: &str, value: &str, class: &str) {
    let _ = writeln!(
        out,
        "<div class=\"card{class}\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>",
        escape(value),
        escape(key)
    );
}

fn cards(out: &mut String, report: &SimReport, throughput: Option<f64>) {
    let m = &report.metrics;
    out.push_str("<h2>Dashboard</h2>\n<div class=\"cards\">\n");
    card(
        out,
        "orders / hour (simulated)",
        &m.orders_per_hour.round_dp(1).to_string(),
        "",
    );
    if m.average_order_value.is_empty() {
        card(out, "average order value", "n/a", "");
    }
    for (currency, value) in &m.average_order_value {
        card(
            out,
            &format!("average order value ({currency})"),
            &value.to_string(),
            "",
        );
    }
    card(out, "fulfillment rate", &percent(m.fulfillment_rate), "");
    card(out, "cancellation rate", &percent(m.cancellation_rate), "");
    card(out, "return rate", &percent(m.return_rate), "");
    card(
        out,
        "gateway error rate",
        &percent(m.gateway_error_rate),
        "",
    );
    if let Some(t) = throughput {
        card(
            out,
            "throughput (orders/s, wall clock)",
            &format!("{t:.0}"),
            "",
        );
    }
    if m.alerts.is_empty() {
        card(out, "alerts", "none", "");
    } else {
        card(out, "alerts", &m.alerts.join(", "), " alert");
    }
    out.push_str("</div>\n");
    if !m.low_stock.is_empty() {
        out.push_str("<p>Low stock: ");
        let items: Vec<String> = m
            .low_stock
            .iter()
            .map(|(sku, n)| format!("{} ({n})", escape(sku)))
            .collect();
        out.push_str(&items.join(", "));
        out.push_str("</p>\n");
    }
}

fn row(out: &mut String, key: &str, value: &str) {
    let _ = writeln!(
        out,
        "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
        escape(key),
        escape(value)
    );
}

/// Minor units of USD as a decimal amount.
fn usd(minor: i64) -> String {
    format!("{} USD", Decimal::new(minor, 2))
}

fn totals(out: &mut String, report: &SimReport) {
    out.push_str("<h2>Outcomes and totals</h2>\n<div class=\"grid\">\n");
    out.push_str("<table class=\"outcomes\"><tr><th>outcome</th><th>orders</th></tr>\n");
    for (name, n) in &report.outcomes {
        row(out, name, &n.to_string());
    }
    out.push_str("</table>\n");

    let s = &report.stock;
    out.push_str("<table class=\"stock\"><tr><th>stock</th><th>units</th></tr>\n");
    row(out, "initial on hand", &s.initial.to_string());
    row(out, "received", &s.received.to_string());
    row(out, "shipped", &s.shipped.to_string());
    row(out, "restocked returns", &s.restocked.to_string());
    row(out, "damaged returns", &s.damaged.to_string());
    row(out, "final on hand", &s.final_on_hand.to_string());
    out.push_str("</table>\n");

    let m = &report.money;
    out.push_str("<table class=\"money\"><tr><th>money</th><th>amount</th></tr>\n");
    row(out, "captured", &usd(m.captured));
    row(out, "refunded", &usd(m.refunded));
    row(out, "net charges of orders", &usd(m.net_charges));
    out.push_str("</table>\n</div>\n");
}

/// A vertical bar chart: one `<rect class="bar">` per entry, zeros included.
fn bar_chart(id: &str, title: &str, bars: &[(String, f64, String)]) -> String {
    let bar_w = 44.0_f64;
    let gap = 14.0_f64;
    let (left, top, plot_h, bottom) = (50.0_f64, 40.0_f64, 220.0_f64, 110.0_f64);
    let n = bars.len().max(1) as f64;
    // Wide enough for the bars and for the title.
    let width = (left + n * (bar_w + gap) + 20.0).max(left + title.chars().count() as f64 * 9.0);
    let height = top + plot_h + bottom;
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg class=\"chart\" id=\"{id}\" width=\"{width:.0}\" \
         height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" \
         aria-label=\"{t}\">\n<text x=\"{left}\" y=\"24\" font-size=\"15\" font-weight=\"600\">{t}</text>",
        t = escape(title)
    );
    let base = top + plot_h;
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{base}\" x2=\"{x2:.1}\" y2=\"{base}\" stroke=\"#889\"/>",
        x2 = width - 10.0
    );
    for (i, (label, value, shown)) in bars.iter().enumerate() {
        let h = if max > 0.0 { value / max * plot_h } else { 0.0 };
        let x = left + gap / 2.0 + i as f64 * (bar_w + gap);
        let y = base - h;
        let cx = x + bar_w / 2.0;
        let _ = writeln!(
            s,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" \
             fill=\"#3b6fd6\"><title>{l}: {v}</title></rect>\n\
             <text x=\"{cx:.1}\" y=\"{ty:.1}\" font-size=\"11\" text-anchor=\"middle\">{v}</text>\n\
             <text x=\"{cx:.1}\" y=\"{ly:.1}\" font-size=\"11\" text-anchor=\"end\" \
             transform=\"rotate(-45 {cx:.1} {ly:.1})\">{l}</text>",
            ty = y - 4.0,
            ly = base + 14.0,
            l = escape(label),
            v = escape(shown),
        );
    }
    s.push_str("</svg>\n");
    s
}

fn status_chart(distribution: &BTreeMap<String, u64>) -> String {
    let bars: Vec<(String, f64, String)> = distribution
        .iter()
        .map(|(k, v)| (k.clone(), *v as f64, v.to_string()))
        .collect();
    bar_chart("chart-status", "Orders by current status", &bars)
}

fn allocation_chart(a: &AllocationSummary) -> String {
    let bars: Vec<(String, f64, String)> = [
        ("optimal", &a.optimal_cost),
        ("nearest", &a.nearest_cost),
        ("priority", &a.priority_cost),
    ]
    .into_iter()
    .map(|(name, cost)| {
        let value = Decimal::from_str(cost)
            .ok()
            .and_then(|d| d.to_f64())
            .unwrap_or(0.0);
        (name.to_owned(), value, cost.clone())
    })
    .collect();
    bar_chart(
        "chart-allocation",
        &format!("Sourcing cost, USD ({} orders)", a.orders),
        &bars,
    )
}

/// A line-and-area chart of orders created per simulated hour.
fn orders_chart(per_hour: &[u64]) -> String {
    let (left, top, plot_w, plot_h) = (50.0_f64, 40.0_f64, 520.0_f64, 220.0_f64);
    let width = left + plot_w + 20.0;
    let height = top + plot_h + 50.0;
    let base = top + plot_h;
    let max = per_hour.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = if per_hour.len() > 1 {
        plot_w / (per_hour.len() - 1) as f64
    } else {
        0.0
    };
    let points: Vec<String> = per_hour
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                left + i as f64 * step,
                base - *v as f64 / max * plot_h
            )
        })
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg class=\"chart\" id=\"chart-orders\" \
         width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         role=\"img\" aria-label=\"Orders per simulated hour\">\n\
         <text x=\"{left}\" y=\"24\" font-size=\"15\" font-weight=\"600\">Orders per simulated hour</text>\n\
         <line x1=\"{left}\" y1=\"{base}\" x2=\"{r:.1}\" y2=\"{base}\" stroke=\"#889\"/>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{base}\" stroke=\"#889\"/>\n\
         <text x=\"{lx:.1}\" y=\"{ty:.1}\" font-size=\"11\" text-anchor=\"end\">{max:.0}</text>\n\
         <text x=\"{lx:.1}\" y=\"{base:.1}\" font-size=\"11\" text-anchor=\"end\">0</text>\n\
         <text x=\"{left}\" y=\"{hy:.1}\" font-size=\"11\">hour 0</text>\n\
         <text x=\"{r:.1}\" y=\"{hy:.1}\" font-size=\"11\" text-anchor=\"end\">hour {last}</text>",
        r = left + plot_w,
        lx = left - 6.0,
        ty = top + 4.0,
        hy = base + 18.0,
        last = per_hour.len().saturating_sub(1),
    );
    if points.is_empty() {
        let _ = writeln!(
            s,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"13\">no orders</text>",
            x = left + 20.0,
            y = top + plot_h / 2.0
        );
    } else {
        let _ = writeln!(
            s,
            "<polygon class=\"area\" points=\"{left:.1},{base:.1} {pts} {end:.1},{base:.1}\" \
             fill=\"#3b6fd6\" fill-opacity=\"0.25\"/>\n\
             <polyline class=\"line\" points=\"{pts}\" fill=\"none\" stroke=\"#3b6fd6\" stroke-width=\"2\"/>",
            pts = points.join(" "),
            end = left + (per_hour.len() - 1) as f64 * step,
        );
    }
    s.push_str("</svg>\n");
    s
}

/// What a state is drawn as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    State,
    Start,
    End,
    Bar,
}

/// A parsed `stateDiagram-v2`: states in order of first mention, and the transitions.
#[derive(Debug, Default)]
struct Diagram {
    title: Option<String>,
    nodes: Vec<(String, Kind)>,
    edges: Vec<(usize, usize, String)>,
}

const START: &str = "[*] start";
const END: &str = "[*] end";

impl Diagram {
    fn node(&mut self, name: &str, kind: Kind) -> usize {
        if let Some(i) = self.nodes.iter().position(|(n, _)| n == name) {
            if kind == Kind::Bar {
                if let Some(node) = self.nodes.get_mut(i) {
                    node.1 = kind;
                }
            }
            return i;
        }
        self.nodes.push((name.to_owned(), kind));
        self.nodes.len() - 1
    }
}

/// Parse the subset of Mermaid `stateDiagram-v2` the machines export: optional `---` front
/// matter with a `title:`, `A --> B` and `A --> B: label` lines, `[*]` as start (on the left)
/// or end (on the right), `state X <<fork>>`/`<<join>>` declarations; notes and anything else
/// are skipped.
fn parse(text: &str) -> Diagram {
    let mut d = Diagram::default();
    let mut lines = text.lines().map(str::trim).peekable();
    if lines.peek() == Some(&"---") {
        lines.next();
        for line in lines.by_ref() {
            if line == "---" {
                break;
            }
            if let Some(t) = line.strip_prefix("title:") {
                d.title = Some(t.trim().to_owned());
            }
        }
    }
    let mut in_note = false;
    for line in lines {
        if in_note {
            in_note = line != "end note";
            continue;
        }
        if line.starts_with("note ") {
            // A one-line note has its text after a colon; a block note runs to `end note`.
            in_note = !line.contains(':');
            continue;
        }
        if let Some(rest) = line.strip_prefix("state ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            if !name.is_empty() && (rest.contains("<<fork>>") || rest.contains("<<join>>")) {
                d.node(name, Kind::Bar);
            }
            continue;
        }
        let Some((from, rest)) = line.split_once("-->") else {
            continue;
        };
        let (to, label) = match rest.split_once(':') {
            Some((to, label)) => (to.trim(), label.trim()),
            None => (rest.trim(), ""),
        };
        let from = from.trim();
        if from.is_empty() || to.is_empty() {
            continue;
        }
        let a = if from == "[*]" {
            d.node(START, Kind::Start)
        } else {
            d.node(from, Kind::State)
        };
        let b = if to == "[*]" {
            d.node(END, Kind::End)
        } else {
            d.node(to, Kind::State)
        };
        d.edges.push((a, b, label.to_owned()));
    }
    d
}

/// Depth of each node by breadth-first search from the start (or the first node); nodes the
/// search does not reach go one layer below the deepest, and the end marker goes last.
fn layers(d: &Diagram) -> Vec<usize> {
    let n = d.nodes.len();
    let mut depth: Vec<Option<usize>> = vec![None; n];
    let root = d
        .nodes
        .iter()
        .position(|(_, k)| *k == Kind::Start)
        .unwrap_or(0);
    let mut queue = VecDeque::new();
    if let Some(slot) = depth.get_mut(root) {
        *slot = Some(0);
        queue.push_back(root);
    }
    while let Some(u) = queue.pop_front() {
        let du = depth.get(u).copied().flatten().unwrap_or(0);
        for (a, b, _) in &d.edges {
            if *a == u && depth.get(*b).copied().flatten().is_none() {
                if let Some(slot) = depth.get_mut(*b) {
                    *slot = Some(du + 1);
                    queue.push_back(*b);
                }
            }
        }
    }
    let deepest = d
        .nodes
        .iter()
        .zip(&depth)
        .filter(|((_, k), _)| *k != Kind::End)
        .filter_map(|(_, x)| *x)
        .max()
        .unwrap_or(0);
    d.nodes
        .iter()
        .zip(depth)
        .map(|((_, kind), x)| match (kind, x) {
            (Kind::End, _) => deepest + 2,
            (_, Some(x)) => x,
            (_, None) => deepest + 1,
        })
        .collect()
}

const CHAR_W: f64 = 7.4;
const BOX_H: f64 = 30.0;
const LAYER_GAP: f64 = 96.0;
const COL_GAP: f64 = 56.0;
const MARGIN: f64 = 30.0;

fn node_width(name: &str, kind: Kind) -> f64 {
    match kind {
        Kind::Start | Kind::End => 20.0,
        Kind::Bar => 70.0,
        Kind::State => name.chars().count() as f64 * CHAR_W + 24.0,
    }
}

/// Draw a parsed diagram as SVG: layered top to bottom by BFS depth, states as rounded boxes,
/// forward edges as straight arrows, same-layer and backward edges as curves to the side.
fn draw(d: &Diagram, index: usize) -> String {
    let depth = layers(d);
    let n_layers = depth.iter().copied().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); n_layers];
    for (i, l) in depth.iter().enumerate() {
        if let Some(r) = rows.get_mut(*l) {
            r.push(i);
        }
    }
    rows.retain(|r| !r.is_empty());
    let row_width = |r: &Vec<usize>| -> f64 {
        r.iter()
            .filter_map(|i| d.nodes.get(*i))
            .map(|(name, kind)| node_width(name, *kind) + COL_GAP)
            .sum::<f64>()
            - COL_GAP
    };
    let widest = rows.iter().map(row_width).fold(200.0_f64, f64::max);
    let width = widest + 2.0 * MARGIN + 120.0;
    let height = rows.len() as f64 * (BOX_H + LAYER_GAP) - LAYER_GAP + 2.0 * MARGIN;

    // Centre of each node, and its half width. Each row is ordered by the mean centre of the
    // node's already placed predecessors (the barycentre heuristic), which removes most
    // crossings; nodes without one keep their order of first mention. Ties keep that order
    // too (stable sort), so the layout is deterministic.
    let mut pos = vec![(0.0_f64, 0.0_f64, 0.0_f64); d.nodes.len()];
    let mut placed = vec![false; d.nodes.len()];
    for (r, row) in rows.iter_mut().enumerate() {
        let mut keyed: Vec<(f64, usize)> = Vec::with_capacity(row.len());
        for (j, i) in row.iter().enumerate() {
            let (sum, count) = d
                .edges
                .iter()
                .filter(|(a, b, _)| b == i && placed.get(*a).copied().unwrap_or(false))
                .filter_map(|(a, _, _)| pos.get(*a))
                .fold((0.0_f64, 0_u32), |(s, c), p| (s + p.0, c + 1));
            let key = if count == 0 {
                width * (j as f64 + 0.5) / row.len() as f64
            } else {
                sum / f64::from(count)
            };
            keyed.push((key, *i));
        }
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        *row = keyed.into_iter().map(|(_, i)| i).collect();
        let row: &Vec<usize> = row;
        let mut x = (width - row_width(row)) / 2.0;
        let y = MARGIN + r as f64 * (BOX_H + LAYER_GAP) + BOX_H / 2.0;
        for i in row {
            if let (Some((name, kind)), Some(p)) = (d.nodes.get(*i), pos.get_mut(*i)) {
                let w = node_width(name, *kind);
                *p = (x + w / 2.0, y, w / 2.0);
                x += w + COL_GAP;
            }
            if let Some(done) = placed.get_mut(*i) {
                *done = true;
            }
        }
    }

    let marker = format!("arrow-{index}");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg class=\"machine\" id=\"machine-{index}\" \
         width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         font-size=\"12\">\n<defs><marker id=\"{marker}\" viewBox=\"0 0 10 10\" refX=\"10\" \
         refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M0,0 L10,5 L0,10 z\" fill=\"#556\"/></marker></defs>"
    );

    // Edges first, so boxes sit on top of line ends; labels last, so nothing hides them.
    let mut labels = String::new();
    for (k, (a, b, label)) in d.edges.iter().enumerate() {
        let (Some(&(ax, ay, aw)), Some(&(bx, by, bw))) = (pos.get(*a), pos.get(*b)) else {
            continue;
        };
        let half_h = |i: usize| match d.nodes.get(i).map(|n| n.1) {
            Some(Kind::Start | Kind::End) => 10.0,
            Some(Kind::Bar) => 4.0,
            _ => BOX_H / 2.0,
        };
        let (path, lx, ly) = if a == b {
            let (x, y) = (ax + aw, ay);
            (
                format!(
                    "M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                    x,
                    y - 6.0,
                    x + 40.0,
                    y - 30.0,
                    x + 40.0,
                    y + 30.0,
                    x,
                    y + 6.0
                ),
                x + 34.0,
                y,
            )
        } else if by > ay {
            let (x1, y1) = (ax, ay + half_h(*a));
            let (x2, y2) = (bx, by - half_h(*b));
            (
                format!("M{x1:.1},{y1:.1} L{x2:.1},{y2:.1}"),
                f64::midpoint(x1, x2),
                f64::midpoint(y1, y2),
            )
        } else {
            // Same layer or upward: bow out sideways so the curve does not run through boxes.
            let side = if bx >= ax { 1.0 } else { -1.0 };
            let (x1, y1) = (ax + side * aw, ay);
            let (x2, y2) = (bx - side * bw, by);
            let bow = if (by - ay).abs() < 1.0 { -40.0 } else { 0.0 };
            let cx = f64::midpoint(x1, x2) + side * 30.0 * ((k % 3) as f64 + 1.0);
            let cy = f64::midpoint(y1, y2) + bow;
            (
                format!("M{x1:.1},{y1:.1} Q{cx:.1},{cy:.1} {x2:.1},{y2:.1}"),
                (x1 + 2.0 * cx + x2) / 4.0,
                (y1 + 2.0 * cy + y2) / 4.0,
            )
        };
        let _ = writeln!(
            s,
            "<path class=\"edge\" d=\"{path}\" fill=\"none\" stroke=\"#556\" stroke-width=\"1.2\" \
             marker-end=\"url(#{marker})\"/>"
        );
        if !label.is_empty() {
            let _ = writeln!(
                labels,
                "<text class=\"label\" x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"10\" \
                 text-anchor=\"middle\" fill=\"#334\" stroke=\"#fff\" stroke-width=\"3\" \
                 paint-order=\"stroke\">{}</text>",
                escape(label)
            );
        }
    }

    for (i, (name, kind)) in d.nodes.iter().enumerate() {
        let Some(&(x, y, hw)) = pos.get(i) else {
            continue;
        };
        match kind {
            Kind::Start => {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"9\" fill=\"#1d2430\"/>"
                );
            }
            Kind::End => {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"10\" fill=\"none\" stroke=\"#1d2430\" \
                     stroke-width=\"2\"/><circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"6\" fill=\"#1d2430\"/>"
                );
            }
            Kind::Bar => {
                let _ = writeln!(
                    s,
                    "<rect class=\"bar-node\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"8\" \
                     fill=\"#1d2430\"><title>{}</title></rect>",
                    x - hw,
                    y - 4.0,
                    2.0 * hw,
                    escape(name)
                );
            }
            Kind::State => {
                let _ = writeln!(
                    s,
                    "<rect class=\"state\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{BOX_H}\" \
                     rx=\"8\" fill=\"#e8eefb\" stroke=\"#3b6fd6\"/>\n\
                     <text class=\"state-name\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                     font-family=\"monospace\">{}</text>",
                    x - hw,
                    y - BOX_H / 2.0,
                    2.0 * hw,
                    y + 4.0,
                    escape(name)
                );
            }
        }
    }
    s.push_str(&labels);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journey::{Invariants, MoneyTotals, StockTotals};
    use oms_core::metrics::MetricsSnapshot;

    fn sample() -> SimReport {
        let mut status = BTreeMap::new();
        for (k, v) in [
            ("pending", 3),
            ("delivered", 40),
            ("cancelled", 7),
            ("shipped", 0),
        ] {
            status.insert(k.to_owned(), v);
        }
        let metrics = MetricsSnapshot {
            orders: 50,
            orders_last_hour: 5,
            orders_per_hour: Decimal::new(125, 1),
            average_order_value: BTreeMap::new(),
            fulfillment_rate: Decimal::new(8000, 4),
            cancellation_rate: Decimal::new(1400, 4),
            return_rate: Decimal::new(500, 4),
            status_distribution: status,
            gateway_error_rate: Decimal::ZERO,
            low_stock: vec![],
            alerts: vec!["high_cancellation_rate".to_owned()],
        };
        SimReport {
            seed: 7,
            orders: 50,
            outcomes: [
                ("delivered".to_owned(), 40),
                ("<weird> & \"x\"".to_owned(), 1),
            ]
            .into_iter()
            .collect(),
            metrics,
            stock: StockTotals::default(),
            money: MoneyTotals {
                captured: 12_345,
                refunded: 45,
                net_charges: 12_300,
            },
            invariants: Invariants::default(),
            orders_per_hour: vec![1, 4, 9, 6, 0, 3],
            simulated_hours: 6,
            events: 300,
            notifications: 120,
            digest: "abc123".to_owned(),
            allocation: Some(AllocationSummary {
                orders: 50,
                optimal_cost: "100.00".to_owned(),
                nearest_cost: "130.50".to_owned(),
                priority_cost: "150.25".to_owned(),
            }),
        }
    }

    fn all_diagrams() -> Vec<(&'static str, String)> {
        vec![
            ("order", oms_core::diagram::mermaid()),
            ("payment", oms_core::payment::mermaid()),
            ("reservation", oms_core::inventory::reservation_mermaid()),
            ("fulfillment", oms_core::fulfillment::fulfillment_mermaid()),
            ("return", oms_core::returns::return_mermaid()),
        ]
    }

    /// The SVG element with `id`, from its opening tag to its closing one.
    fn svg_by_id<'a>(html: &'a str, id: &str) -> &'a str {
        let start = html.find(&format!("id=\"{id}\"")).unwrap();
        let end = start + html[start..].find("</svg>").unwrap();
        &html[start..end]
    }

    #[test]
    fn page_has_header_cards_and_charts() {
        let html = render_html(&sample(), &all_diagrams(), Some(6123.4));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("seed <b>7</b>"));
        assert!(html.contains("<code>abc123</code>"));
        assert!(html.contains("6123 orders/s"));
        assert!(html.contains("all hold"));
        assert!(html.contains("80.0%"), "fulfillment rate as a percentage");
        assert!(html.contains("high_cancellation_rate"));
        assert!(html.contains("123.45 USD"));
        // One bar per status, zero-count statuses included.
        let status = svg_by_id(&html, "chart-status");
        assert_eq!(status.matches("<rect class=\"bar\"").count(), 4);
        assert!(status.contains(">shipped</text>"));
        let alloc = svg_by_id(&html, "chart-allocation");
        assert_eq!(alloc.matches("<rect class=\"bar\"").count(), 3);
        assert!(alloc.contains(">150.25</text>"));
        let orders = svg_by_id(&html, "chart-orders");
        assert_eq!(orders.matches("<polyline").count(), 1);
        // Six points, the tallest hour at the top of the plot.
        assert!(orders.contains("points=\"50.0,235.6 154.0,162.2 258.0,40.0"));
        // 3 charts + 5 machines.
        assert_eq!(html.matches("<svg").count(), 8);
    }

    #[test]
    fn every_machine_is_drawn_with_its_states_and_source() {
        let diagrams = all_diagrams();
        let html = render_html(&sample(), &diagrams, None);
        for (i, (name, text)) in diagrams.iter().enumerate() {
            let svg = svg_by_id(&html, &format!("machine-{i}"));
            let d = parse(text);
            let states = d.nodes.iter().filter(|n| n.1 == Kind::State).count();
            assert!(states >= 3, "{name}: {states} states");
            assert_eq!(
                svg.matches("<rect class=\"state\"").count(),
                states,
                "{name}"
            );
            assert_eq!(svg.matches("<path class=\"edge\"").count(), d.edges.len());
            for (state, kind) in &d.nodes {
                if *kind == Kind::State {
                    assert!(svg.contains(&format!(">{state}</text>")), "{name}: {state}");
                }
            }
            assert!(html.contains(&format!("<summary>Mermaid source of {name}</summary>")));
        }
        assert!(html.contains(">processing</text>"));
        assert!(html.contains(">Reserved</text>"));
        assert!(html.contains("cancel if nothing_packed"));
    }

    #[test]
    fn parser_reads_front_matter_edges_forks_and_skips_notes() {
        let d = parse(
            "---\ntitle: demo & co\n---\nstateDiagram-v2\n    state f <<fork>>\n    [*] --> a\n    a --> b: go\n    a --> f\n    b --> a: back\n    note right of a\n        a --> z: not an edge\n    end note\n    b --> [*]\n",
        );
        assert_eq!(d.title.as_deref(), Some("demo & co"));
        let names: Vec<&str> = d.nodes.iter().map(|n| n.0.as_str()).collect();
        assert_eq!(names, ["f", START, "a", "b", END]);
        assert_eq!(d.nodes[0].1, Kind::Bar);
        assert_eq!(d.edges.len(), 5);
        assert_eq!(d.edges[1], (2, 3, "go".to_owned()));
        // start 0, a 1, b and f 2, end last.
        assert_eq!(layers(&d), [2, 0, 1, 2, 4]);
    }

    #[test]
    fn text_is_escaped_everywhere() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let mut r = sample();
        r.invariants.violations = vec!["stock <drift> & \"loss\"".to_owned()];
        r.digest = "<script>alert(1)</script>".to_owned();
        let html = render_html(
            &r,
            &[(
                "odd<name>",
                "stateDiagram-v2\n    [*] --> x<y\n    x<y --> z&w: a \"b\"\n".to_owned(),
            )],
            None,
        );
        assert!(html.contains("1 violated"));
        assert!(html.contains("<li>stock &lt;drift&gt; &amp; &quot;loss&quot;</li>"));
        assert!(html.contains("&lt;weird&gt; &amp; &quot;x&quot;"));
        assert!(html.contains(">x&lt;y</text>"));
        assert!(html.contains(">z&amp;w</text>"));
        assert!(html.contains(">a &quot;b&quot;</text>"));
        assert!(html.contains("<h3>odd&lt;name&gt;</h3>"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("<weird>"));
        assert!(!html.contains("x<y"));
    }

    #[test]
    fn page_loads_nothing_from_anywhere() {
        let mut r = sample();
        r.allocation = None;
        let html = render_html(&r, &all_diagrams(), None);
        assert!(html.contains("sourcing-cost comparison is not available"));
        assert_eq!(html.matches("<svg").count(), 7);
        let lower = html.to_lowercase();
        for bad in [
            "<script",
            "<link",
            "@import",
            "src=",
            "url(http",
            "href=\"http",
        ] {
            assert!(!lower.contains(bad), "{bad}");
        }
        assert!(!lower.contains("http:") && !lower.contains("https:"));
    }

    #[test]
    fn same_input_same_bytes() {
        let a = render_html(&sample(), &all_diagrams(), Some(1.5));
        let b = render_html(&sample(), &all_diagrams(), Some(1.5));
        assert_eq!(a, b);
        assert_ne!(a, render_html(&sample(), &all_diagrams(), Some(3.5)));
    }

    #[test]
    fn empty_run_renders_without_panicking() {
        let mut r = sample();
        r.orders_per_hour.clear();
        r.metrics.status_distribution.clear();
        let html = render_html(&r, &[("empty", String::new())], None);
        assert!(html.contains("no orders"));
        assert!(html.contains("machine-0"));
    }
}
