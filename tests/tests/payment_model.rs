//! Reference-model test of payments end to end: random command sequences run against a
//! [`PaymentProcessor`] over a scripted [`FakeGateway`] and against a plain integer model of
//! the rules; after every command the payment's status and buckets, and the gateway's ledger,
//! must equal the model's.

// Test harness code outside `#[test]` functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use oms_core::money::{Currency, Money};
use oms_core::payment::{
    FakeGateway, FakeStep, GatewayOp, NoPause, Payment, PaymentProcessor, PaymentStatus,
    RetryPolicy, SeededJitter,
};
use oms_core::time::{Clock, Duration, ManualClock, Timestamp};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const T0: Timestamp = Timestamp(1_700_000_000_000);
const AMOUNT: i64 = 10_000;
const HOLD_HOURS: i64 = 168;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Approve,
    Decline,
    TimeoutAfterSuccess,
    TimeoutNothingBehind,
}

impl Step {
    fn fake(self, op: GatewayOp) -> FakeStep {
        match (self, op) {
            (Step::Approve, _) => FakeStep::Approve,
            (Step::Decline, GatewayOp::Capture) => FakeStep::CaptureFailure,
            (Step::Decline, _) => FakeStep::Decline,
            (Step::TimeoutAfterSuccess, _) => FakeStep::TimeoutAfterSuccess,
            (Step::TimeoutNothingBehind, _) => FakeStep::TimeoutNothingBehind,
        }
    }
    fn declines(self) -> bool {
        self == Step::Decline
    }
}

#[derive(Debug, Clone)]
enum Cmd {
    Authorize(Option<i64>, Step),
    Capture(i64, bool, Step),
    /// Capture exactly what is still held.
    CaptureRest(bool, Step),
    Void(Step),
    Refund(i64, Step),
    Advance(i64),
    Expire,
    Release,
    Complete,
    Escalate,
    FailDeclined,
}

#[derive(Debug, Clone)]
struct Model {
    status: PaymentStatus,
    authorized: i64,
    captured: i64,
    refunded: i64,
    released: i64,
    now_h: i64,
    auth_h: Option<i64>,
}

impl Model {
    fn capturable(&self) -> i64 {
        self.authorized - self.captured - self.released
    }
    fn expired(&self) -> bool {
        self.auth_h.is_some_and(|a| self.now_h - a >= HOLD_HOURS)
    }
}

struct Reference;

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::Approve),
        1 => Just(Step::Decline),
        2 => Just(Step::TimeoutAfterSuccess),
        2 => Just(Step::TimeoutNothingBehind),
    ]
}

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Cmd;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            status: PaymentStatus::Initiated,
            authorized: 0,
            captured: 0,
            refunded: 0,
            released: 0,
            now_h: 0,
            auth_h: None,
        })
        .boxed()
    }

    fn transitions(_: &Model) -> BoxedStrategy<Cmd> {
        prop_oneof![
            2 => (proptest::option::of(1i64..=AMOUNT), step()).prop_map(|(p, s)| Cmd::Authorize(p, s)),
            4 => (1i64..6_000, any::<bool>(), step()).prop_map(|(c, f, s)| Cmd::Capture(c, f, s)),
            2 => (any::<bool>(), step()).prop_map(|(f, s)| Cmd::CaptureRest(f, s)),
            1 => step().prop_map(Cmd::Void),
            3 => (1i64..6_000, step()).prop_map(|(c, s)| Cmd::Refund(c, s)),
            2 => (0i64..=96).prop_map(Cmd::Advance),
            1 => Just(Cmd::Expire),
            1 => Just(Cmd::Release),
            1 => Just(Cmd::Complete),
            1 => Just(Cmd::Escalate),
            1 => Just(Cmd::FailDeclined),
        ]
        .boxed()
    }

    fn apply(mut m: Model, cmd: &Cmd) -> Model {
        use PaymentStatus as S;
        let cmd = match *cmd {
            Cmd::CaptureRest(fin, step) => Cmd::Capture(m.capturable(), fin, step),
            ref other => other.clone(),
        };
        match cmd {
            Cmd::Authorize(partial, step) if m.status == S::Initiated => {
                if step.declines() {
                    m.status = S::Declined;
                } else {
                    // A partial approval only comes with a plain approval in this model.
                    m.authorized = match (partial, step) {
                        (Some(p), Step::Approve) => p,
                        _ => AMOUNT,
                    };
                    m.auth_h = Some(m.now_h);
                    m.status = S::AwaitingCapture;
                }
            }
            Cmd::Capture(c, fin, step)
                if m.status == S::AwaitingCapture
                    && !m.expired()
                    && c > 0
                    && c <= m.capturable() =>
            {
                if step.declines() {
                    m.status = S::CaptureFailed;
                } else {
                    m.captured += c;
                    let rest = m.capturable();
                    if fin || rest == 0 {
                        m.released += rest;
                        m.status = S::Captured;
                    }
                }
            }
            Cmd::Void(step)
                if m.status == S::AwaitingCapture
                    && m.captured == 0
                    && !m.expired()
                    && !step.declines() =>
            {
                m.released += m.capturable();
                m.status = S::Voided;
            }
            Cmd::Refund(c, step)
                if matches!(
                    m.status,
                    S::AwaitingCapture | S::Captured | S::Completed | S::Failed
                ) && c <= m.captured - m.refunded
                    && !step.declines() =>
            {
                m.refunded += c;
            }
            Cmd::Advance(h) => m.now_h += h,
            Cmd::Expire if m.status == S::AwaitingCapture && m.expired() => {
                m.released += m.capturable();
                m.status = if m.captured == 0 {
                    S::Expired
                } else {
                    S::Captured
                };
            }
            Cmd::Release if m.status == S::AwaitingCapture && m.captured > 0 => {
                m.released += m.capturable();
                m.status = S::Captured;
            }
            Cmd::Complete if m.status == S::Captured => m.status = S::Completed,
            Cmd::Escalate if m.status == S::CaptureFailed => {
                m.released += m.capturable();
                m.status = S::Failed;
            }
            Cmd::FailDeclined if m.status == S::Declined => m.status = S::Failed,
            _ => {}
        }
        m
    }
}

struct Sut {
    gateway: FakeGateway,
    clock: ManualClock,
    payment: Payment,
}

struct PaymentModelTest;

fn usd(minor: i64) -> Money {
    Money::from_minor(minor, Currency::USD)
}

impl StateMachineTest for PaymentModelTest {
    type SystemUnderTest = Sut;
    type Reference = Reference;

    fn init_test(_: &Model) -> Sut {
        Sut {
            gateway: FakeGateway::new(),
            clock: ManualClock::new(T0),
            payment: Payment::new("pay-1", "ORD-1", "card_1", usd(AMOUNT)).unwrap(),
        }
    }

    fn apply(mut sut: Sut, model: &Model, cmd: Cmd) -> Sut {
        let jitter = SeededJitter { seed: 3 };
        sut.clock.set(T0.plus(Duration::hours(model.now_h)));
        let now = sut.clock.now();
        let pr = PaymentProcessor::new(
            &sut.gateway,
            &sut.clock,
            &NoPause,
            &jitter,
            RetryPolicy::default(),
        )
        .unwrap();
        let script = |op: GatewayOp, step: Step| sut.gateway.script([step.fake(op)]);
        let p = &sut.payment;
        let result = match cmd {
            Cmd::Authorize(partial, step) => {
                match (partial, step) {
                    (Some(minor), Step::Approve) => {
                        sut.gateway.script([FakeStep::ApprovePartial { minor }]);
                    }
                    _ => script(GatewayOp::Authorize, step),
                }
                pr.authorize(p).map(|d| d.payment)
            }
            Cmd::Capture(c, fin, step) => {
                script(GatewayOp::Capture, step);
                pr.capture(p, usd(c), fin).map(|d| d.payment)
            }
            Cmd::CaptureRest(fin, step) => {
                script(GatewayOp::Capture, step);
                let rest = p.capturable().unwrap();
                pr.capture(p, rest, fin).map(|d| d.payment)
            }
            Cmd::Void(step) => {
                script(GatewayOp::Void, step);
                pr.void(p).map(|d| d.payment)
            }
            Cmd::Refund(c, step) => {
                script(GatewayOp::Refund, step);
                pr.refund(p, usd(c)).map(|d| d.payment)
            }
            Cmd::Advance(_) => Ok(p.clone()),
            Cmd::Expire => {
                let mut q = p.clone();
                q.expire(now).map(|()| q)
            }
            Cmd::Release => {
                let mut q = p.clone();
                q.release_remainder(now).map(|()| q)
            }
            Cmd::Complete => {
                let mut q = p.clone();
                q.complete(now).map(|()| q)
            }
            Cmd::Escalate => {
                let mut q = p.clone();
                q.escalate("escalated", now).map(|()| q)
            }
            Cmd::FailDeclined => {
                let mut q = p.clone();
                q.fail_declined("declined", now).map(|()| q)
            }
        };
        sut.gateway.clear_script();
        if let Ok(next) = result {
            sut.payment = next;
        }
        sut
    }

    fn check_invariants(sut: &Sut, m: &Model) {
        let p = &sut.payment;
        let minor = |x: Money| x.to_minor().unwrap();
        assert_eq!(p.status(), m.status);
        assert!(
            p.pending().is_none(),
            "every call settles within the budget"
        );
        assert_eq!(
            (
                minor(p.authorized()),
                minor(p.captured()),
                minor(p.refunded()),
                minor(p.voided())
            ),
            (m.authorized, m.captured, m.refunded, m.released)
        );
        p.check_invariants().unwrap();
        assert_eq!(sut.gateway.total(GatewayOp::Capture), m.captured);
        assert_eq!(sut.gateway.total(GatewayOp::Refund), m.refunded);
        for charge in sut.gateway.ledger() {
            assert_eq!(sut.gateway.times_processed(&charge.key), 1);
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn payments_follow_the_reference_model(sequential 1..40 => PaymentModelTest);
}
