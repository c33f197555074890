//! A small transition-table engine shared by the fulfillment and return machines.
//!
//! A machine is a [`Spec`]: a table of drawn edges plus one fork/join region (seed 000 draws
//! exactly one per sub-process). The same table drives [`Spec::fire`] and [`Spec::mermaid`], so
//! the diagram can never drift from the behaviour.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::diagram::{self, DiagramEdge};
use crate::error::{OmsError, OmsResult};

/// A state, event or branch with a fixed snake_case name: diagram node ids and edge labels,
/// error messages, storage.
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
    /// Diagram id of the fork pseudo-state (seed 000 draws e.g. `Fork_Picking`).
    pub fork_id: &'static str,
    /// Diagram id of the join pseudo-state (e.g. `Join_Picking`).
    pub join_id: &'static str,
    /// The parallel branches.
    pub branches: &'static [B],
    /// The event that joins the branches and leaves `at`.
    pub join: E,
}

/// A complete machine description.
#[derive(Debug, Clone, Copy)]
pub struct Spec<S: 'static, E: 'static, B: 'static> {
    /// Short name, the diagram title (`fulfillment`, `return`).
    pub name: &'static str,
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
    /// [`Spec::fire`] uses, through the shared [`diagram::render`].
    pub fn mermaid(&self) -> String {
        diagram::render(self)
    }
}

impl<S: Label, E: Label, B: Label> diagram::Machine for Spec<S, E, B> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn initial(&self) -> &'static str {
        self.initial.label()
    }

    fn terminal(&self) -> Vec<&'static str> {
        self.terminals.iter().map(|t| t.label()).collect()
    }

    /// Table edges in order; the join edge is drawn through the fork and join pseudo-states
    /// with one node per branch, as seed 000 draws it.
    fn edges(&self) -> Vec<DiagramEdge> {
        let f = &self.fork;
        let mut out = Vec::with_capacity(self.edges.len() + 2 * f.branches.len() + 1);
        for e in self.edges {
            if e.from == f.at && e.event == f.join {
                out.push(DiagramEdge {
                    from: e.from.label(),
                    to: f.fork_id,
                    label: "fork".into(),
                });
                for b in f.branches {
                    out.push(DiagramEdge {
                        from: f.fork_id,
                        to: b.label(),
                        label: "start".into(),
                    });
                    out.push(DiagramEdge {
                        from: b.label(),
                        to: f.join_id,
                        label: "done".into(),
                    });
                }
                out.push(DiagramEdge {
                    from: f.join_id,
                    to: e.to.label(),
                    label: e.event.label().into(),
                });
            } else {
                out.push(DiagramEdge {
                    from: e.from.label(),
                    to: e.to.label(),
                    label: e.event.label().into(),
                });
            }
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
