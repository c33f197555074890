//! Every seed order diagram walked through the canonical machine: each drawn edge is accepted
//! with the mapped target, each path runs start to end on one order, undrawn moves are refused,
//! and `docs/seed-states.md` is checked against the mapping these walks use.

// A test crate: its helpers fail loudly on purpose, outside `#[test]` functions too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Cargo treats every file directly in tests/ as a test crate, so the table lives one level
// down and is included by path.
#[path = "seed_walks/seed_map.rs"]
mod seed_map;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use oms_core::lifecycle::{
    next_status, update_order_status, Actor, GuardContext, OrderEvent, OrderStatus, TRANSITIONS,
};
use oms_core::money::{Currency, Money};
use oms_core::order::{AddressInput, Customer, LineItemInput, Order, OrderDraft};
use oms_core::time::{ManualClock, SequentialIds, Timestamp};
use seed_map::{SeedEdge, EDGES, SEEDS, STATES};

/// Guard facts of a single-shipment order where nothing is packed when a cancel arrives: the
/// context every seed diagram assumes (none of them draws split shipments).
const SINGLE_SHIPMENT: GuardContext = GuardContext {
    anything_packed: false,
    all_shipped: true,
    all_delivered: true,
    fully_refunded: true,
};

fn new_order() -> Order {
    let draft = OrderDraft {
        customer: Customer {
            id: "c1".into(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
        },
        shipping_address: AddressInput {
            name: "Ada Lovelace".into(),
            line1: "1 Main St".into(),
            city: "New York".into(),
            region: "NY".into(),
            postal_code: "10001".into(),
            country: "US".into(),
            ..AddressInput::default()
        },
        billing_address: None,
        currency: Currency::USD,
        lines: vec![LineItemInput::new(
            "WATER-5L",
            2,
            Money::parse("4.99", Currency::USD).unwrap(),
        )],
        promo_codes: vec![],
    };
    let clock = ManualClock::new(Timestamp::from_civil(2026, 5, 6, 9, 0, 0));
    Order::create(
        &draft,
        &Actor::Customer("c1".into()),
        &clock,
        &SequentialIds::starting_at(1),
    )
    .unwrap()
}

fn step(order: &mut Order, event: OrderEvent) {
    let at = Timestamp(order.updated_at.0 + 1_000);
    let before = (order.version, order.history.len());
    update_order_status(
        order,
        event,
        &SINGLE_SHIPMENT,
        &Actor::System,
        "seed walk",
        vec![],
        at,
    )
    .unwrap_or_else(|e| panic!("{event} refused: {e}"));
    assert_eq!(
        (order.version, order.history.len()),
        (before.0 + 1, before.1 + 1)
    );
}

/// A fresh order driven to `target` along the shortest accepted event path from Pending.
fn order_in(target: OrderStatus) -> Order {
    let mut prev: BTreeMap<OrderStatus, (OrderStatus, OrderEvent)> = BTreeMap::new();
    let mut queue = VecDeque::from([OrderStatus::Pending]);
    let mut seen = BTreeSet::from([OrderStatus::Pending]);
    while let Some(s) = queue.pop_front() {
        for row in TRANSITIONS.iter().filter(|r| r.from == s) {
            if next_status(s, row.event, &SINGLE_SHIPMENT).is_ok() && seen.insert(row.to) {
                prev.insert(row.to, (s, row.event));
                queue.push_back(row.to);
            }
        }
    }
    let mut path = Vec::new();
    let mut at = target;
    while at != OrderStatus::Pending {
        let (from, event) = *prev.get(&at).unwrap_or_else(|| panic!("{at} unreachable"));
        path.push(event);
        at = from;
    }
    let mut order = new_order();
    for event in path.into_iter().rev() {
        step(&mut order, event);
    }
    assert_eq!(order.status, target);
    order
}

fn status(seed: &str, name: &str) -> OrderStatus {
    seed_map::status_of(seed, name).unwrap_or_else(|| panic!("{seed}: {name} not mapped"))
}

/// Perform one seed edge on `order` (already in the edge's source status) and check where it
/// lands.
fn walk_edge(order: &mut Order, edge: &SeedEdge) {
    let what = format!(
        "{} {} --{}--> {}",
        edge.seed, edge.from, edge.label, edge.to
    );
    for event in edge.events {
        step(order, *event);
    }
    if edge.to == "[*]" {
        assert!(
            order.status.is_terminal(),
            "{what}: ended in {}",
            order.status
        );
    } else {
        assert_eq!(order.status, status(edge.seed, edge.to), "{what}");
    }
}

#[test]
fn every_seed_name_is_mapped_once_and_every_state_has_an_edge() {
    let mut names = BTreeSet::new();
    for s in STATES {
        assert!(SEEDS.contains(&s.seed), "{}", s.seed);
        assert!(
            names.insert((s.seed, s.name)),
            "{} {} twice",
            s.seed,
            s.name
        );
    }
    let mut touched = BTreeSet::new();
    for e in EDGES {
        for end in [e.from, e.to] {
            if end != "[*]" {
                status(e.seed, end);
                touched.insert((e.seed, end));
            }
        }
    }
    assert_eq!(touched, names, "states without an edge");
    for seed in SEEDS {
        assert!(EDGES.iter().any(|e| e.seed == seed), "{seed} has no edges");
    }
}

#[test]
fn every_seed_edge_is_accepted_with_the_mapped_target() {
    for edge in EDGES {
        let what = format!(
            "{} {} --{}--> {}",
            edge.seed, edge.from, edge.label, edge.to
        );
        if edge.from == "[*]" {
            assert!(edge.events.is_empty(), "{what}");
            let order = new_order();
            assert_eq!(order.status, status(edge.seed, edge.to), "{what}");
            assert_eq!(order.history.len(), 1);
            continue;
        }
        let from = status(edge.seed, edge.from);
        if edge.events.is_empty() {
            // No event: an end arrow out of a terminal status, or a step between two seed names
            // of one canonical status (fork/join pseudo-states).
            if edge.to == "[*]" {
                assert!(from.is_terminal(), "{what}");
            } else {
                assert_eq!(from, status(edge.seed, edge.to), "{what}");
            }
            continue;
        }
        let mut order = order_in(from);
        let version = order.version;
        walk_edge(&mut order, edge);
        assert_eq!(order.version, version + edge.events.len() as u64, "{what}");
    }
}

/// Every maximal path of a seed diagram from its start (the `[*]` arrow, or the states nothing
/// leads to), using each edge at most once per path.
fn paths(seed: &str) -> Vec<Vec<&'static SeedEdge>> {
    let edges: Vec<&SeedEdge> = EDGES.iter().filter(|e| e.seed == seed).collect();
    let targets: BTreeSet<&str> = edges.iter().map(|e| e.to).collect();
    let roots: BTreeSet<&str> = edges
        .iter()
        .map(|e| e.from)
        .filter(|f| *f == "[*]" || (!targets.contains(f) && !edges.iter().any(|e| e.from == "[*]")))
        .collect();
    let mut out = Vec::new();
    let mut stack: Vec<Vec<&SeedEdge>> = Vec::new();
    for root in roots {
        for e in edges.iter().filter(|e| e.from == root) {
            stack.push(vec![*e]);
        }
    }
    while let Some(path) = stack.pop() {
        let last = path[path.len() - 1];
        let next: Vec<&SeedEdge> = if last.to == "[*]" {
            vec![]
        } else {
            edges
                .iter()
                .copied()
                .filter(|e| e.from == last.to && !path.iter().any(|p| std::ptr::eq(*p, *e)))
                .collect()
        };
        if next.is_empty() {
            out.push(path);
        } else {
            for e in next {
                let mut longer = path.clone();
                longer.push(e);
                stack.push(longer);
            }
        }
    }
    out
}

#[test]
fn every_seed_path_runs_on_one_order() {
    let mut counts = BTreeMap::new();
    for seed in SEEDS {
        let all = paths(seed);
        let mut covered = BTreeSet::new();
        for path in &all {
            let first = path[0];
            let mut order = if first.from == "[*]" {
                new_order()
            } else {
                order_in(status(seed, first.from))
            };
            for edge in path {
                if edge.from == "[*]" {
                    assert_eq!(order.status, status(seed, edge.to));
                } else {
                    walk_edge(&mut order, edge);
                }
                covered.insert(std::ptr::from_ref::<SeedEdge>(edge) as usize);
            }
            // The audit trail of the walk replays to where the order is.
            let last = order.history.last().unwrap();
            assert_eq!(
                (last.to, order.history.len() as u64),
                (order.status, order.version)
            );
        }
        let edges = EDGES.iter().filter(|e| e.seed == seed).count();
        assert_eq!(covered.len(), edges, "{seed}: edges off every path");
        counts.insert(seed, all.len());
    }
    // Pin the path counts so a change to the seed table is noticed.
    assert_eq!(
        counts,
        BTreeMap::from([
            ("000 §1", 4),
            ("001 §2", 6),
            ("002 diagram", 5),
            ("002 transitions", 6),
            ("003 OrderState", 1),
            ("004", 4),
            ("004 stages", 1),
        ])
    );
}

/// Moves a seed state must not make, chosen by phase: skipping ahead, going back, or anything
/// at all out of a terminal status.
fn undrawn_probes(s: OrderStatus) -> Vec<OrderEvent> {
    use OrderEvent as E;
    use OrderStatus as S;
    match s {
        S::Pending
        | S::Validated
        | S::PaymentPending
        | S::PaymentFailed
        | S::Authorized
        | S::OnHold
        | S::Confirmed => vec![
            E::Pack,
            E::Ship,
            E::Deliver,
            E::Complete,
            E::RequestReturn,
            E::Refund,
        ],
        S::Processing | S::Allocated | S::Picked | S::Packed | S::AwaitingShipment => vec![
            E::Validate,
            E::PaymentSucceeded,
            E::Deliver,
            E::Complete,
            E::RequestReturn,
            E::Refund,
        ],
        S::PartiallyShipped
        | S::Shipped
        | S::InTransit
        | S::OutForDelivery
        | S::PartiallyDelivered => vec![
            E::Validate,
            E::StartFulfillment,
            E::Pack,
            E::Complete,
            E::RequestReturn,
            E::Refund,
        ],
        S::Delivered => vec![
            E::Validate,
            E::StartFulfillment,
            E::Ship,
            E::Deliver,
            E::ApproveReturn,
            E::Refund,
        ],
        S::ReturnRequested | S::ReturnApproved | S::ReturnRejected => vec![
            E::Validate,
            E::StartFulfillment,
            E::Ship,
            E::Deliver,
            E::RequestReturn,
        ],
        S::Completed | S::Refunded | S::Cancelled => OrderEvent::ALL.to_vec(),
    }
}

#[test]
fn undrawn_seed_edges_are_refused_and_leave_the_order_unchanged() {
    let mut probes = 0;
    for state in STATES {
        let drawn: BTreeSet<OrderEvent> = EDGES
            .iter()
            .filter(|e| e.seed == state.seed && e.from == state.name)
            .filter_map(|e| e.events.first().copied())
            .collect();
        let mut order = order_in(state.status);
        let before = order.clone();
        for event in undrawn_probes(state.status) {
            assert!(
                !drawn.contains(&event),
                "{} {} draws {event}",
                state.seed,
                state.name
            );
            let err = update_order_status(
                &mut order,
                event,
                &SINGLE_SHIPMENT,
                &Actor::System,
                "probe",
                vec![],
                Timestamp(0),
            )
            .unwrap_err();
            assert_eq!(
                err.code(),
                "invalid_transition",
                "{} {} + {event}: {err}",
                state.seed,
                state.name
            );
            assert_eq!(order, before);
            probes += 1;
        }
    }
    assert!(probes > 400, "{probes}");
}

#[test]
fn seed_001_cancellation_rules() {
    let packed = GuardContext {
        anything_packed: true,
        ..SINGLE_SHIPMENT
    };
    let cancel = |order: &mut Order, ctx: &GuardContext| {
        update_order_status(
            order,
            OrderEvent::Cancel,
            ctx,
            &Actor::Customer("c1".into()),
            "changed my mind",
            vec![],
            Timestamp(1),
        )
    };
    // Pending and Confirmed: allowed.
    for s in [OrderStatus::Pending, OrderStatus::Confirmed] {
        let mut order = order_in(s);
        assert_eq!(
            cancel(&mut order, &packed).unwrap().to,
            OrderStatus::Cancelled
        );
    }
    // Processing: allowed only while nothing is packed.
    let mut order = order_in(OrderStatus::Processing);
    let before = order.clone();
    let err = cancel(&mut order, &packed).unwrap_err();
    assert_eq!(err.code(), "not_cancellable");
    assert!(err.to_string().contains("use a return"), "{err}");
    assert_eq!(order, before);
    assert_eq!(
        cancel(&mut order, &SINGLE_SHIPMENT).unwrap().to,
        OrderStatus::Cancelled
    );
    // Shipped: refused, use a return.
    let mut order = order_in(OrderStatus::Shipped);
    let err = cancel(&mut order, &SINGLE_SHIPMENT).unwrap_err();
    assert_eq!(err.code(), "not_cancellable");
    assert!(err.to_string().contains("use a return"), "{err}");
}

// ---- the document ------------------------------------------------------------------------

const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/seed-states.md");

fn section<'a>(doc: &'a str, name: &str) -> &'a str {
    let begin = format!("<!-- {name}:begin -->\n");
    let end = format!("<!-- {name}:end -->");
    let start = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("no {begin:?} in the doc"))
        + begin.len();
    let stop = doc[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("no {end:?} in the doc"))
        + start;
    &doc[start..stop]
}

fn parse_table(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut rows = text.lines().filter(|l| l.starts_with('|')).map(|l| {
        l.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect::<Vec<String>>()
    });
    let header = rows.next().unwrap_or_default();
    let rows: Vec<Vec<String>> = rows.skip(1).collect();
    (header, rows)
}

fn generated() -> [(&'static str, String); 3] {
    [
        (
            "states",
            seed_map::markdown(&seed_map::STATE_HEADER, &seed_map::state_rows()),
        ),
        (
            "edges",
            seed_map::markdown(&seed_map::EDGE_HEADER, &seed_map::edge_rows()),
        ),
        (
            "diagram",
            format!("```mermaid\n{}```\n", oms_core::diagram::mermaid()),
        ),
    ]
}

/// `OMS_BLESS_DOCS=1 cargo test -p oms-tests --test seed_walks` rewrites the generated parts of
/// the document after a deliberate change to the mapping or the machine.
#[test]
fn doc_tables_match_the_mapping() {
    let mut doc = std::fs::read_to_string(DOC).unwrap();
    if std::env::var_os("OMS_BLESS_DOCS").is_some() {
        for (name, text) in generated() {
            let old = section(&doc, name).to_owned();
            doc = doc.replacen(
                &format!("{name}:begin -->\n{old}"),
                &format!("{name}:begin -->\n{text}"),
                1,
            );
        }
        std::fs::write(DOC, &doc).unwrap();
    }
    let (header, rows) = parse_table(section(&doc, "states"));
    assert_eq!(header, seed_map::STATE_HEADER);
    assert_eq!(rows, seed_map::state_rows());
    let (header, rows) = parse_table(section(&doc, "edges"));
    assert_eq!(header, seed_map::EDGE_HEADER);
    assert_eq!(rows, seed_map::edge_rows());
    let diagram = section(&doc, "diagram");
    assert_eq!(diagram, generated()[2].1, "diagram in the doc is stale");
}
