//! Time and identity, injected: the core never reads a clock or invents an id by itself.
//!
//! [`Timestamp`] is milliseconds since the Unix epoch (UTC). A host passes a [`Clock`] and an
//! [`IdGenerator`]; tests and simulations pass [`ManualClock`] and [`SequentialIds`], so the
//! same inputs always give the same outputs.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

/// A length of time in milliseconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Duration(pub i64);

impl Duration {
    /// `n` seconds.
    pub const fn seconds(n: i64) -> Self {
        Duration(n.saturating_mul(1_000))
    }
    /// `n` minutes.
    pub const fn minutes(n: i64) -> Self {
        Duration(n.saturating_mul(60_000))
    }
    /// `n` hours.
    pub const fn hours(n: i64) -> Self {
        Duration(n.saturating_mul(3_600_000))
    }
    /// `n` days.
    pub const fn days(n: i64) -> Self {
        Duration(n.saturating_mul(86_400_000))
    }
    /// Milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }
}

impl Timestamp {
    /// The instant `d` after this one (saturating at the range ends).
    pub const fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }

    /// The time from `earlier` to `self` (negative if `earlier` is later).
    pub const fn since(self, earlier: Timestamp) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }

    /// Build from a civil UTC date and time. Out-of-range fields are not validated beyond
    /// arithmetic; use for constants and tests.
    pub fn from_civil(year: i64, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Self {
        let days = days_from_civil(year, month, day);
        Timestamp(
            days * 86_400_000
                + i64::from(hour) * 3_600_000
                + i64::from(min) * 60_000
                + i64::from(sec) * 1_000,
        )
    }

    /// The UTC calendar date `(year, month, day)`.
    pub fn civil_date(self) -> (i64, u32, u32) {
        civil_from_days(self.0.div_euclid(86_400_000))
    }

    /// RFC 3339 text in UTC with millisecond precision, e.g. `2026-05-06T14:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        let (y, m, d) = self.civil_date();
        let ms = self.0.rem_euclid(86_400_000);
        let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
        let (mi, rest) = (rest / 60_000, rest % 60_000);
        let (s, milli) = (rest / 1_000, rest % 1_000);
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

// Proleptic Gregorian conversions (H. Hinnant's algorithms): exact for every i64 day count we
// can meet, with no dependency on a date library.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Where the core gets "now" from.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// A clock that only moves when told to: for tests, simulations and replays.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: Timestamp) -> Self {
        ManualClock(AtomicI64::new(at.0))
    }
    /// Move the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.0, Ordering::SeqCst);
    }
    /// Set the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// Where the core gets new ids from. Each call returns a value never returned before for that
/// kind of record.
pub trait IdGenerator: Send + Sync {
    /// The next id of `kind` (e.g. `"order"`, `"reservation"`), unique per kind.
    fn next_id(&self, kind: &str) -> u64;
}

/// Ids 1, 2, 3 … shared by every kind: deterministic and simple.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl SequentialIds {
    /// Start so the first id returned is `first`.
    pub fn starting_at(first: u64) -> Self {
        SequentialIds(AtomicU64::new(first.saturating_sub(1)))
    }
}

impl IdGenerator for SequentialIds {
    fn next_id(&self, _kind: &str) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        let t = Timestamp::from_civil(2026, 5, 6, 14, 0, 0);
        assert_eq!(t.to_rfc3339(), "2026-05-06T14:00:00.000Z");
        assert_eq!(t.civil_date(), (2026, 5, 6));
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp::from_civil(2024, 2, 29, 0, 0, 0).civil_date(),
            (2024, 2, 29)
        );
        for days in (-800_000i64..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn clocks_and_ids_are_deterministic() {
        let c = ManualClock::new(Timestamp(10));
        c.advance(Duration::minutes(15));
        assert_eq!(c.now(), Timestamp(10 + 900_000));
        let ids = SequentialIds::default();
        assert_eq!((ids.next_id("a"), ids.next_id("b")), (1, 2));
        assert_eq!(SequentialIds::starting_at(7).next_id("x"), 7);
    }
}
