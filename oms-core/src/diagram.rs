//! Mermaid `stateDiagram-v2` export of the state machines, generated from the same tables the
//! machines run on, so a diagram can never drift from the code.
//!
//! A machine describes itself through [`Machine`]; [`render`] turns any machine into Mermaid
//! text. The order machine is [`OrderMachine`]; the payment, reservation, fulfillment and
//! return machines implement the same trait.

use std::fmt::Write as _;

use crate::lifecycle::{Guard, OrderStatus, TRANSITIONS};

/// One drawn edge: `from --> to: label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagramEdge {
    /// Source state id (snake_case).
    pub from: &'static str,
    /// Target state id (snake_case).
    pub to: &'static str,
    /// Edge label: the event, and its guard if it has one.
    pub label: String,
}

/// A state machine that can be drawn.
pub trait Machine {
    /// Short name, used as the diagram title (e.g. `order`, `payment`).
    fn name(&self) -> &'static str;
    /// The state a new record starts in.
    fn initial(&self) -> &'static str;
    /// States with no way out.
    fn terminal(&self) -> Vec<&'static str>;
    /// Every transition, in table order.
    fn edges(&self) -> Vec<DiagramEdge>;
}

/// The canonical order lifecycle of [`crate::lifecycle`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderMachine;

impl Machine for OrderMachine {
    fn name(&self) -> &'static str {
        "order"
    }

    fn initial(&self) -> &'static str {
        OrderStatus::Pending.as_str()
    }

    fn terminal(&self) -> Vec<&'static str> {
        OrderStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(OrderStatus::as_str)
            .collect()
    }

    fn edges(&self) -> Vec<DiagramEdge> {
        TRANSITIONS
            .iter()
            .map(|row| DiagramEdge {
                from: row.from.as_str(),
                to: row.to.as_str(),
                label: match row.guard {
                    Guard::Always => row.event.as_str().to_owned(),
                    guard => format!("{} if {}", row.event.as_str(), guard.as_str()),
                },
            })
            .collect()
    }
}

/// Render `machine` as a Mermaid `stateDiagram-v2`: a title, the initial arrow, one line per
/// transition in table order, then one arrow out of each terminal state.
pub fn render(machine: &dyn Machine) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored for that reason only.
    let _ = writeln!(out, "---\ntitle: {}\n---\nstateDiagram-v2", machine.name());
    let _ = writeln!(out, "    [*] --> {}", machine.initial());
    for edge in machine.edges() {
        let _ = writeln!(out, "    {} --> {}: {}", edge.from, edge.to, edge.label);
    }
    for state in machine.terminal() {
        let _ = writeln!(out, "    {state} --> [*]");
    }
    out
}

/// The order lifecycle as a Mermaid `stateDiagram-v2`.
///
/// ```
/// let text = oms_core::diagram::mermaid();
/// assert!(text.contains("stateDiagram-v2"));
/// assert!(text.contains("    processing --> cancelled: cancel if nothing_packed"));
/// ```
pub fn mermaid() -> String {
    render(&OrderMachine)
}

/// Alias of [`mermaid`], named for when several machines are exported side by side.
pub fn order_mermaid() -> String {
    mermaid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_diagram_has_one_line_per_table_row() {
        let text = mermaid();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            &lines[..5],
            [
                "---",
                "title: order",
                "---",
                "stateDiagram-v2",
                "    [*] --> pending"
            ]
        );
        let edges: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.contains("-->") && !l.contains("[*]"))
            .collect();
        assert_eq!(edges.len(), TRANSITIONS.len());
        for (line, row) in edges.iter().zip(TRANSITIONS) {
            let expected = format!("    {} --> {}: {}", row.from, row.to, row.event);
            assert!(line.starts_with(&expected), "{line} vs {expected}");
        }
        for end in ["completed", "refunded", "cancelled"] {
            assert!(
                lines.contains(&format!("    {end} --> [*]").as_str()),
                "{end}"
            );
        }
        assert_eq!(lines.len(), 5 + TRANSITIONS.len() + 3);
        assert_eq!(order_mermaid(), text);
    }

    #[test]
    fn other_machines_render_through_the_same_trait() {
        struct Toy;
        impl Machine for Toy {
            fn name(&self) -> &'static str {
                "toy"
            }
            fn initial(&self) -> &'static str {
                "off"
            }
            fn terminal(&self) -> Vec<&'static str> {
                vec!["broken"]
            }
            fn edges(&self) -> Vec<DiagramEdge> {
                vec![DiagramEdge {
                    from: "off",
                    to: "broken",
                    label: "overload".into(),
                }]
            }
        }
        assert_eq!(
            render(&Toy),
            "---\ntitle: toy\n---\nstateDiagram-v2\n    [*] --> off\n    off --> broken: overload\n    broken --> [*]\n"
        );
    }
}
