//! The reservation machine against seed 000 §3: every edge the seed draws is in the table and
//! can be walked; every move the table does not draw is refused; the Mermaid export draws
//! exactly the table.

// Helpers outside #[test] functions stop the test on a failed setup, as the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use oms_core::inventory::{
    reservation_mermaid, Node, Origin, ReservationEvent, ReservationStatus, ReservingBranch, EDGES,
};

/// Seed 000 §3, verbatim (the `note` block left out).
const SEED_000_S3: &str = "
[*] --> Reservation_Requested: after payment success
state Inventory {
Reservation_Requested --> Checking_Availability: query_inventory
Checking_Availability --> All_Available: all_in_stock
Checking_Availability --> Partial_Available: partial
Checking_Availability --> Out_Of_Stock: none_available
All_Available --> Reserving_Stock: begin_reservation
Reserving_Stock --> Fork_Reserve
Fork_Reserve --> Lock_Records
Fork_Reserve --> Create_Reservation_Record
Fork_Reserve --> Update_StockCounts
Lock_Records --> Join_Reserve
Create_Reservation_Record --> Join_Reserve
Update_StockCounts --> Join_Reserve
Join_Reserve --> Reserved: reservation_success
Out_Of_Stock --> Reservation_Failed: notify_customer
Partial_Available --> AwaitingCustomerDecision: offer_partial
Reserved --> Allocated: order_fulfilled
Reserved --> Released: order_cancelled_or_expired
}
";

/// `(from, to, label)` of every `a --> b[: label]` line.
fn parse_edges(text: &str) -> Vec<(String, String, Option<String>)> {
    text.lines()
        .filter_map(|line| {
            let (from, rest) = line.trim().split_once(" --> ")?;
            let (to, label) = match rest.split_once(": ") {
                Some((to, label)) => (to, Some(label.trim().to_owned())),
                None => (rest, None),
            };
            Some((from.trim().to_owned(), to.trim().to_owned(), label))
        })
        .collect()
}

fn node_by_seed_name(name: &str) -> Node {
    let mut nodes = vec![Node::Start, Node::Fork, Node::Join];
    nodes.extend(ReservationStatus::ALL.map(Node::Status));
    nodes.extend(ReservingBranch::ALL.map(Node::Branch));
    nodes
        .into_iter()
        .find(|n| n.seed_name() == Some(name))
        .unwrap_or_else(|| panic!("seed state {name} has no library node"))
}

const EVENTS: [ReservationEvent; 14] = [
    ReservationEvent::QueryInventory,
    ReservationEvent::AllInStock,
    ReservationEvent::Partial,
    ReservationEvent::NoneAvailable,
    ReservationEvent::BeginReservation,
    ReservationEvent::ReservationSuccess,
    ReservationEvent::NotifyCustomer,
    ReservationEvent::OfferPartial,
    ReservationEvent::AcceptPartial,
    ReservationEvent::DeclinePartial,
    ReservationEvent::Commit,
    ReservationEvent::Release,
    ReservationEvent::Deallocate,
    ReservationEvent::Ship,
];

#[test]
fn every_seed_edge_is_in_the_table_with_its_label() {
    let seed = parse_edges(SEED_000_S3);
    assert_eq!(seed.len(), 18);
    let mut seen = BTreeSet::new();
    for (from, to, label) in &seed {
        let (f, t) = (node_by_seed_name(from), node_by_seed_name(to));
        let edge = EDGES
            .iter()
            .find(|e| e.from == f && e.to == t)
            .unwrap_or_else(|| panic!("seed edge {from} --> {to} missing"));
        assert_eq!(edge.origin, Origin::Seed, "{from} --> {to}");
        if f != Node::Start {
            assert_eq!(edge.event.map(ReservationEvent::as_str), label.as_deref());
        }
        seen.insert((f, t));
    }
    // Every edge the table calls a seed edge is one the seed draws; the rest are extensions.
    for e in EDGES {
        assert_eq!(
            seen.contains(&(e.from, e.to)),
            e.origin == Origin::Seed,
            "{e:?}"
        );
    }
}

#[test]
fn every_seed_edge_can_be_walked() {
    for (from, to, _) in parse_edges(SEED_000_S3) {
        match (node_by_seed_name(&from), node_by_seed_name(&to)) {
            (Node::Start, Node::Status(s)) => assert_eq!(s, ReservationStatus::Requested),
            (Node::Status(f), Node::Status(t)) => {
                let moves: Vec<_> = EVENTS.iter().filter_map(|e| f.next(*e).ok()).collect();
                assert!(moves.contains(&t), "{from} --> {to} cannot be walked");
            }
            (Node::Status(f), Node::Fork) => assert!(f.fork().is_ok()),
            (Node::Fork, Node::Branch(b)) | (Node::Branch(b), Node::Join) => {
                // The join completes only with this branch done, and fails without it.
                let mut without = ReservationStatus::Reserving.fork().unwrap();
                let mut with = ReservationStatus::Reserving.fork().unwrap();
                for other in ReservingBranch::ALL {
                    with.complete(other);
                    if other != b {
                        without.complete(other);
                    }
                }
                assert_eq!(without.pending(), vec![b]);
                assert!(without.finish().is_err());
                assert_eq!(with.finish().unwrap(), ReservationStatus::Reserved);
            }
            (Node::Join, Node::Status(t)) => {
                let mut join = ReservationStatus::Reserving.fork().unwrap();
                for b in ReservingBranch::ALL {
                    join.complete(b);
                }
                assert_eq!(join.finish().unwrap(), t);
            }
            other => panic!("unexpected seed edge {other:?}"),
        }
    }
}

#[test]
fn moves_the_table_does_not_draw_are_refused() {
    let drawn: BTreeSet<(ReservationStatus, ReservationStatus)> = EDGES
        .iter()
        .filter_map(|e| match (e.from, e.to) {
            (Node::Status(f), Node::Status(t)) => Some((f, t)),
            _ => None,
        })
        .collect();
    let mut refused = 0;
    for from in ReservationStatus::ALL {
        for to in ReservationStatus::ALL {
            let reachable = EVENTS.iter().any(|e| from.next(*e) == Ok(to));
            assert_eq!(reachable, drawn.contains(&(from, to)), "{from} -> {to}");
            refused += usize::from(!reachable);
        }
        if from != ReservationStatus::Reserving {
            assert_eq!(from.fork().unwrap_err().code(), "invalid_transition");
        }
    }
    // 12 × 12 pairs, 13 drawn (Reserving → Reserved goes through the join, not an event).
    assert_eq!(refused, 144 - 13);
    // A few the seed would never allow, spelled out.
    for (from, event) in [
        (ReservationStatus::Released, ReservationEvent::Commit),
        (ReservationStatus::Failed, ReservationEvent::Release),
        (
            ReservationStatus::OutOfStock,
            ReservationEvent::BeginReservation,
        ),
        (ReservationStatus::Requested, ReservationEvent::Commit),
        (ReservationStatus::Reserved, ReservationEvent::Ship),
    ] {
        assert_eq!(from.next(event).unwrap_err().code(), "invalid_transition");
    }
}

#[test]
fn the_diagram_draws_exactly_the_table() {
    let diagram = reservation_mermaid();
    assert!(diagram.starts_with("stateDiagram-v2\n"));
    assert!(diagram.contains("state fork_reserve <<fork>>"));
    assert!(diagram.contains("state join_reserve <<join>>"));
    let drawn: Vec<_> = parse_edges(&diagram)
        .into_iter()
        .filter(|(_, to, _)| to != "[*]")
        .collect();
    assert_eq!(drawn.len(), EDGES.len());
    for ((from, to, label), e) in drawn.iter().zip(EDGES) {
        assert_eq!(label.as_deref(), e.event.map(ReservationEvent::as_str));
        let named = |n: Node| match n {
            Node::Start => "[*]".to_owned(),
            Node::Fork => "fork_reserve".to_owned(),
            Node::Join => "join_reserve".to_owned(),
            Node::Status(s) => format!("{s:?}"),
            Node::Branch(ReservingBranch::CreateRecord) => "CreateReservationRecord".to_owned(),
            Node::Branch(b) => format!("{b:?}"),
        };
        assert_eq!((from.clone(), to.clone()), (named(e.from), named(e.to)));
    }
    for closed in ["Failed", "Released", "Shipped"] {
        assert!(diagram.contains(&format!("{closed} --> [*]")));
    }
}
