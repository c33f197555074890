//! A scriptable in-memory gateway for tests and simulations.
//!
//! Each call to `authorize`, `capture`, `void` or `refund` takes the next [`FakeStep`] from
//! the script (an empty script approves). The gateway keeps a real ledger of holds, captures,
//! refunds and voids, and refuses what a real one would (capturing more than is held,
//! refunding more than was captured), so tests can assert from the gateway's side what was
//! actually charged. By default it ignores idempotency keys, as the least forgiving gateway
//! would: a blind retry of a processed call is charged again and shows up in the ledger.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::money::Currency;
use crate::payment::gateway::{
    AuthorizeRequest, CaptureRequest, GatewayAmount, GatewayReply, LookupReply, PaymentGateway,
    RefundRequest, VoidRequest,
};
use crate::payment::machine::GatewayOp;

/// What the fake does with one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FakeStep {
    /// Process and approve.
    Approve,
    /// Authorize only this many minor units (a partial authorization); other calls approve.
    ApprovePartial {
        /// Minor units held.
        minor: i64,
    },
    /// Decline without processing.
    Decline,
    /// Refuse a capture (or any call) as a capture failure, without processing.
    CaptureFailure,
    /// Process and approve, then answer [`GatewayReply::Timeout`]: the money moved, the caller
    /// does not know.
    TimeoutAfterSuccess,
    /// Answer [`GatewayReply::Timeout`] without processing anything.
    TimeoutNothingBehind,
    /// Answer [`GatewayReply::Unavailable`] without processing anything.
    Unavailable,
    /// Process and approve, and deliver the same response a second time as a notification
    /// (see [`FakeGateway::take_notifications`]).
    DuplicateResponse,
}

/// A money movement the fake actually performed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeCharge {
    /// The operation.
    pub op: GatewayOp,
    /// The idempotency key it came with.
    pub key: String,
    /// The authorization it belongs to.
    pub authorization: String,
    /// Minor units moved.
    pub minor: i64,
}

#[derive(Debug, Clone)]
struct Hold {
    currency: Currency,
    held: i64,
    captured: i64,
    refunded: i64,
    voided: i64,
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<FakeStep>,
    lookup_timeouts: u32,
    processed: BTreeMap<String, LookupReply>,
    holds: BTreeMap<String, Hold>,
    ledger: Vec<FakeCharge>,
    notifications: Vec<(String, LookupReply)>,
    calls: u32,
    lookups: u32,
    next_ref: u64,
}

/// The scriptable fake gateway. `Send + Sync` (state behind a mutex), so it can stand in for
/// a host gateway anywhere.
#[derive(Debug, Default)]
pub struct FakeGateway {
    honour_keys: bool,
    state: Mutex<State>,
}

impl FakeGateway {
    /// A fake that ignores idempotency keys and approves everything until scripted otherwise.
    pub fn new() -> Self {
        FakeGateway::default()
    }

    /// A fake that, like most real gateways, answers a repeated key with the first answer
    /// instead of processing the call again.
    pub fn honouring_keys() -> Self {
        FakeGateway {
            honour_keys: true,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide the ledger from this one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Append steps to the script.
    pub fn script(&self, steps: impl IntoIterator<Item = FakeStep>) {
        self.lock().script.extend(steps);
    }

    /// Drop whatever is left of the script (for callers that script one call at a time and
    /// do not know whether the call will be sent).
    pub fn clear_script(&self) {
        self.lock().script.clear();
    }

    /// Make the next `n` lookups time out.
    pub fn time_out_lookups(&self, n: u32) {
        self.lock().lookup_timeouts = n;
    }

    /// Every money movement performed, in order.
    pub fn ledger(&self) -> Vec<FakeCharge> {
        self.lock().ledger.clone()
    }

    /// Total minor units moved by `op` across all authorizations.
    pub fn total(&self, op: GatewayOp) -> i64 {
        self.lock()
            .ledger
            .iter()
            .filter(|c| c.op == op)
            .map(|c| c.minor)
            .sum()
    }

    /// How many times a call with `key` was actually processed (more than once is a double
    /// charge).
    pub fn times_processed(&self, key: &str) -> usize {
        self.lock().ledger.iter().filter(|c| c.key == key).count()
    }

    /// `(held, captured, refunded, voided)` minor units of one authorization.
    pub fn hold(&self, authorization: &str) -> Option<(i64, i64, i64, i64)> {
        self.lock()
            .holds
            .get(authorization)
            .map(|h| (h.held, h.captured, h.refunded, h.voided))
    }

    /// Calls and lookups received so far.
    pub fn request_counts(&self) -> (u32, u32) {
        let s = self.lock();
        (s.calls, s.lookups)
    }

    /// Take the queued out-of-band responses `(key, reply)` (from
    /// [`FakeStep::DuplicateResponse`]).
    pub fn take_notifications(&self) -> Vec<(String, LookupReply)> {
        std::mem::take(&mut self.lock().notifications)
    }

    /// Run one call: pick the step, process if the step says so, answer.
    fn handle(
        &self,
        key: &str,
        process: impl FnOnce(&mut State, Option<i64>) -> LookupReply,
    ) -> GatewayReply {
        let mut s = self.lock();
        s.calls = s.calls.saturating_add(1);
        if self.honour_keys {
            if let Some(first) = s.processed.get(key) {
                return to_reply(first.clone());
            }
        }
        let step = s.script.pop_front().unwrap_or(FakeStep::Approve);
        let decline = |code: &str| LookupReply::Declined {
            code: code.into(),
            message: format!("scripted {code}"),
        };
        let settled = match step {
            FakeStep::Approve | FakeStep::TimeoutAfterSuccess | FakeStep::DuplicateResponse => {
                process(&mut s, None)
            }
            FakeStep::ApprovePartial { minor } => process(&mut s, Some(minor)),
            FakeStep::Decline => decline("card_declined"),
            FakeStep::CaptureFailure => decline("capture_failed"),
            FakeStep::TimeoutNothingBehind => return GatewayReply::Timeout,
            FakeStep::Unavailable => {
                return GatewayReply::Unavailable {
                    message: "scripted unavailable".into(),
                }
            }
        };
        s.processed.insert(key.to_owned(), settled.clone());
        match step {
            FakeStep::TimeoutAfterSuccess => GatewayReply::Timeout,
            FakeStep::DuplicateResponse => {
                s.notifications.push((key.to_owned(), settled.clone()));
                to_reply(settled)
            }
            _ => to_reply(settled),
        }
    }
}

fn to_reply(r: LookupReply) -> GatewayReply {
    match r {
        LookupReply::Approved { reference, amount } => GatewayReply::Approved { reference, amount },
        LookupReply::Declined { code, message } => GatewayReply::Declined { code, message },
        LookupReply::NotFound | LookupReply::Timeout => GatewayReply::Timeout,
    }
}

fn refused(code: &str, message: &str) -> LookupReply {
    LookupReply::Declined {
        code: code.into(),
        message: message.into(),
    }
}

impl PaymentGateway for FakeGateway {
    fn authorize(&self, request: &AuthorizeRequest) -> GatewayReply {
        let amount = request.amount;
        let key = request.key.clone();
        self.handle(&request.key, move |s, partial| {
            if amount.minor <= 0 {
                return refused("invalid_amount", "amount must be positive");
            }
            let held = partial.map_or(amount.minor, |p| p.clamp(1, amount.minor));
            s.next_ref = s.next_ref.saturating_add(1);
            let reference = format!("auth_{}", s.next_ref);
            s.holds.insert(
                reference.clone(),
                Hold {
                    currency: amount.currency,
                    held,
                    captured: 0,
                    refunded: 0,
                    voided: 0,
                },
            );
            s.ledger.push(FakeCharge {
                op: GatewayOp::Authorize,
                key,
                authorization: reference.clone(),
                minor: held,
            });
            LookupReply::Approved {
                reference,
                amount: GatewayAmount {
                    minor: held,
                    currency: amount.currency,
                },
            }
        })
    }

    fn capture(&self, request: &CaptureRequest) -> GatewayReply {
        let r = request.clone();
        self.handle(&request.key, move |s, _| {
            let Some(h) = s.holds.get_mut(&r.authorization) else {
                return refused("unknown_authorization", "no such hold");
            };
            let open = h.held - h.captured - h.voided;
            if r.amount.minor <= 0 || r.amount.minor > open {
                return refused("amount_exceeds_hold", "capture exceeds the open hold");
            }
            h.captured += r.amount.minor;
            if r.final_capture {
                h.voided += open - r.amount.minor;
            }
            s.next_ref = s.next_ref.saturating_add(1);
            let reference = format!("cap_{}", s.next_ref);
            s.ledger.push(FakeCharge {
                op: GatewayOp::Capture,
                key: r.key.clone(),
                authorization: r.authorization.clone(),
                minor: r.amount.minor,
            });
            LookupReply::Approved {
                reference,
                amount: r.amount,
            }
        })
    }

    fn void(&self, request: &VoidRequest) -> GatewayReply {
        let r = request.clone();
        self.handle(&request.key, move |s, _| {
            let Some(h) = s.holds.get_mut(&r.authorization) else {
                return refused("unknown_authorization", "no such hold");
            };
            let open = h.held - h.captured - h.voided;
            h.voided += open;
            let currency = h.currency;
            s.next_ref = s.next_ref.saturating_add(1);
            s.ledger.push(FakeCharge {
                op: GatewayOp::Void,
                key: r.key.clone(),
                authorization: r.authorization.clone(),
                minor: open,
            });
            LookupReply::Approved {
                reference: format!("void_{}", s.next_ref),
                amount: GatewayAmount {
                    minor: open,
                    currency,
                },
            }
        })
    }

    fn refund(&self, request: &RefundRequest) -> GatewayReply {
        let r = request.clone();
        self.handle(&request.key, move |s, _| {
            let Some(h) = s.holds.get_mut(&r.authorization) else {
                return refused("unknown_authorization", "no such hold");
            };
            if r.amount.minor <= 0 || r.amount.minor > h.captured - h.refunded {
                return refused("amount_exceeds_capture", "refund exceeds what was captured");
            }
            h.refunded += r.amount.minor;
            s.next_ref = s.next_ref.saturating_add(1);
            s.ledger.push(FakeCharge {
                op: GatewayOp::Refund,
                key: r.key.clone(),
                authorization: r.authorization.clone(),
                minor: r.amount.minor,
            });
            LookupReply::Approved {
                reference: format!("ref_{}", s.next_ref),
                amount: r.amount,
            }
        })
    }

    fn lookup(&self, key: &str) -> LookupReply {
        let mut s = self.lock();
        s.lookups = s.lookups.saturating_add(1);
        if s.lookup_timeouts > 0 {
            s.lookup_timeouts -= 1;
            return LookupReply::Timeout;
        }
        s.processed
            .get(key)
            .cloned()
            .unwrap_or(LookupReply::NotFound)
    }
}
