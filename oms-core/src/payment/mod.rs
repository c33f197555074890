//! Payments: the seed 000 §2 machine with its amount buckets, the gateway trait, retries under
//! the unknown-outcome rule, and a scriptable fake gateway.
//!
//! - [`machine`]: [`Payment`], [`PaymentStatus`], the transition table and its Mermaid text.
//! - [`gateway`]: [`PaymentGateway`] (implemented by the host) and the one conversion to
//!   gateway minor units, [`GatewayAmount::from_money`].
//! - [`retry`]: [`RetryPolicy`], replayable [`Jitter`], and [`PaymentProcessor`], which drives
//!   the gateway and never sends a timed-out call again before a lookup says it was not
//!   processed.
//! - [`capture`]: [`CapturePolicy`], capture on shipment or on delivery.
//! - [`fake`]: [`FakeGateway`], scripted outcomes and a ledger of what was really charged.
//!
//! ```
//! use oms_core::money::{Currency, Money};
//! use oms_core::payment::{FakeGateway, FakeStep, NoJitter, Payment, PaymentProcessor,
//!                         PaymentStatus, RetryPolicy};
//! use oms_core::time::{ManualClock, Timestamp};
//!
//! let gateway = FakeGateway::new();
//! gateway.script([FakeStep::TimeoutAfterSuccess]);
//! let clock = ManualClock::new(Timestamp(0));
//! let processor =
//!     PaymentProcessor::new(&gateway, &clock, &clock, &NoJitter, RetryPolicy::default()).unwrap();
//! let payment = Payment::new("pay-1", "ORD-1", "card_1234",
//!                            Money::parse("50.00", Currency::USD).unwrap()).unwrap();
//! // The authorization times out, a lookup finds it approved: held once, never twice.
//! let done = processor.authorize(&payment).unwrap();
//! assert_eq!(done.payment.status(), PaymentStatus::AwaitingCapture);
//! assert_eq!(gateway.times_processed("pay-1:authorize:1"), 1);
//! ```

pub mod capture;
pub mod fake;
pub mod gateway;
pub mod machine;
pub mod retry;

pub use capture::CapturePolicy;
pub use fake::{FakeCharge, FakeGateway, FakeStep};
pub use gateway::{
    AuthorizeRequest, CaptureRequest, GatewayAmount, GatewayReply, LookupReply, PaymentGateway,
    RefundRequest, VoidRequest,
};
pub use machine::{
    mermaid, next_status, GatewayOp, Payment, PaymentEvent, PaymentStatus, PaymentTransition,
    PendingCall, DEFAULT_HOLD_VALIDITY, SEED_EDGES, TRANSITIONS,
};
pub use retry::{
    Attempt, AttemptKind, Jitter, NoJitter, NoPause, Outcome, Pause, PaymentProcessor, Processed,
    RetryPolicy, SeededJitter,
};
