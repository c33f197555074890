//! A small transition-table engine shared by the fulfillment and return machines.
//!
//! A machine is a [`Spec`]: a table of drawn edges plus one fork/join region (seed 000 draws
//! exactly one per sub-process). The same table drives [`Spec::fire`] and [`Spec::mermaid`], so
//! the diagram can never drift from the behaviour.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::error::{OmsError, OmsResult};

/// A state, event or branch with a fixed name: PascalCase for states (diagram node ids),
/// snake_case for events and branches (diagram edge labels, error messages).
pub trait Label: Copy + Ord + fmt::Debug + 'static {
    /// The fixed name.
    fn label(self) -> &'static str;
}

/// One drawn edge: `event` moves the machine from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge<S, E> {
    /// Source state.
    pub from: S,
    /// The event that fires the edge.
    pub event: E,
    /// Target state.
    pub to: S,
}

/// A fork/join region inside one state: on entering `at` every branch starts; the `join`
/// event leaves `at` only once every branch has completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkJoin<S: 'static, E: 'static, B: 'static> {
    /// The state in which the branches run.
    pub at: S,
    /// Diagram id stem of the pseudo-states (`Picking` → `Fork_Picking`, `Join_Picking`).
    pub name: &'static str,
    /// The parallel branches.
    pub branches: &'static [B],
    /// The event that joins the branches and leaves `at`.
    pub join: E,
}

/// A complete machine description.
#[derive(Debug, Clone, Copy)]
pub struct Spec<S: 'static, E: 'static, B: 'static> {
    /// The state a new instance starts in.
    pub initial: S,
    /// Every drawn edge; an (state, event) pair not listed here is refused.
    pub edges: &'static [Edge<S, E>],
    /// The fork/join region.
    pub fork: ForkJoin<S, E, B>,
    /// States with no way out.
    pub terminals: &'static [S],
}

/// The mutable part of a machine: its status and, while inside the fork, the finished branches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MachineState<S, B: Ord> {
    /// Current state.
    pub status: S,
    /// Branches of the fork that have completed (empty outside the fork state).
    pub done: BTreeSet<B>,
}

/// What one accepted event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired<S, B> {
    /// State before.
    pub from: S,
    /// State after.
    pub to: S,
    /// Branches that had completed when the fork was left other than by its join: the caller
    /// must undo their effects (a failed branch compensates the others).
    pub compensate: Vec<B>,
}

impl<S: Label, E: Label, B: Label> Spec<S, E, B> {
    /// A fresh instance in the initial state.
    pub fn start(&self) -> MachineState<S, B> {
        MachineState {
            status: self.initial,
            done: BTreeSet::new(),
        }
    }

    /// The target of `event` from `from`, if that edge is drawn.
    pub fn target(&self, from: S, event: E) -> Option<S> {
        self.edges
            .iter()
            .find(|e| e.from == from && e.event == event)
            .map(|e| e.to)
    }

    /// Every event accepted from `from` by the table (the join guard aside).
    pub fn events_from(&self, from: S) -> Vec<E> {
        self.edges
            .iter()
            .filter(|e| e.from == from)
            .map(|e| e.event)
            .collect()
    }

    /// Fire `event`. A refused event ([`OmsError::InvalidTransition`] when the edge is not
    /// drawn, [`OmsError::GuardFailed`] when the join is early) leaves `state` unchanged.
    pub fn fire(&self, state: &mut MachineState<S, B>, event: E) -> OmsResult<Fired<S, B>> {
        let from = state.status;
        let to = self
            .target(from, event)
            .ok_or_else(|| invalid(from, event.label()))?;
        let in_fork = from == self.fork.at;
        if in_fork && event == self.fork.join {
            let missing: Vec<&str> = self
                .fork
                .branches
                .iter()
                .filter(|b| !state.done.contains(b))
                .map(|b| b.label())
                .collect();
            if !missing.is_empty() {
                return Err(OmsError::GuardFailed {
                    from: from.label().into(),
                    event: event.label().into(),
                    reason: format!("branches not complete: {}", missing.join(", ")),
                });
            }
        }
        let compensate = if in_fork && event != self.fork.join {
            state.done.iter().copied().collect()
        } else {
            Vec::new()
        };
        state.status = to;
        // Entering (or re-entering) the fork starts every branch afresh.
        state.done.clear();
        Ok(Fired {
            from,
            to,
            compensate,
        })
    }

    /// Mark `branch` of the fork complete. Refused outside the fork state, for a branch not
    /// in the fork, or for a branch already complete; a refusal leaves `state` unchanged.
    pub fn complete(&self, state: &mut MachineState<S, B>, branch: B) -> OmsResult<()> {
        if state.status != self.fork.at || !self.fork.branches.contains(&branch) {
            return Err(invalid(state.status, branch.label()));
        }
        if state.done.contains(&branch) {
            return Err(OmsError::GuardFailed {
                from: state.status.label().into(),
                event: branch.label().into(),
                reason: "branch already complete".into(),
            });
        }
        state.done.insert(branch);
        Ok(())
    }

    /// The machine as a Mermaid `stateDiagram-v2`, generated from the same table that
    /// [`Spec::fire`] uses. The join edge is drawn through `Fork_*`/`Join_*` pseudo-states with
    /// one node per branch, as seed 000 draws it.
    pub fn mermaid(&self) -> String {
        let f = &self.fork;
        let mut out = String::from("stateDiagram-v2\n");
        // Writing to a String cannot fail, so the results are ignored.
        let _ = writeln!(out, "    [*] --> {}", self.initial.label());
        let _ = writeln!(out, "    state Fork_{} <<fork>>", f.name);
        let _ = writeln!(out, "    state Join_{} <<join>>", f.name);
        for e in self.edges {
            if e.from == f.at && e.event == f.join {
                let _ = writeln!(out, "    {} --> Fork_{}", e.from.label(), f.name);
                for b in f.branches {
                    let node = pascal(b.label());
                    let _ = writeln!(out, "    Fork_{} --> {node}", f.name);
                    let _ = writeln!(out, "    {node} --> Join_{}: {}", f.name, b.label());
                }
                let _ = writeln!(
                    out,
                    "    Join_{} --> {}: {}",
                    f.name,
                    e.to.label(),
                    e.event.label()
                );
            } else {
                let _ = writeln!(
                    out,
                    "    {} --> {}: {}",
                    e.from.label(),
                    e.to.label(),
                    e.event.label()
                );
            }
        }
        for t in self.terminals {
            let _ = writeln!(out, "    {} --> [*]", t.label());
        }
        out
    }
}

fn invalid<S: Label>(from: S, event: &str) -> OmsError {
    OmsError::InvalidTransition {
        from: from.label().into(),
        event: event.into(),
    }
}

/// `item_pick` → `ItemPick`: branch names become diagram node ids.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|h| h.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The edges of a Mermaid `stateDiagram-v2` text as `(from, to)` pairs (labels dropped); used
/// by tests to check a diagram against a seed.
pub fn diagram_edges(mermaid: &str) -> BTreeSet<(String, String)> {
    mermaid
        .lines()
        .filter_map(|l| {
            let (from, rest) = l.trim().split_once(" --> ")?;
            let to = rest.split(':').next().unwrap_or(rest).trim();
            Some((from.trim().to_owned(), to.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_case_of_branch_names() {
        assert_eq!(pascal("item_pick"), "ItemPick");
        assert_eq!(pascal("update_inventory"), "UpdateInventory");
        assert_eq!(pascal("x"), "X");
    }

    #[test]
    fn diagram_edges_drop_labels() {
        let e = diagram_edges(
            "stateDiagram-v2\n    A --> B: go\n    B --> [*]\n    state X <<fork>>\n",
        );
        assert_eq!(
            e.into_iter().collect::<Vec<_>>(),
            vec![
                ("A".to_owned(), "B".to_owned()),
                ("B".to_owned(), "[*]".to_owned())
            ]
        );
    }
}
