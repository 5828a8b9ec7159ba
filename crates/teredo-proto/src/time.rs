//! Time as the protocol core sees it: a monotonic instant that the caller passes in.
//!
//! The core never reads a clock, so every timer of RFC 4380 (the 4 s qualification
//! timeout, the 30 s refresh interval, bubble spacing, peer expiry) is driven and tested
//! with explicit instants, in microseconds of test time.

use core::ops::{Add, Sub};
use std::time::Duration;

/// A point in monotonic time, in microseconds since an arbitrary origin chosen by the
/// caller (the I/O layer uses the process start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The origin.
    pub const ZERO: Self = Self(0);

    /// An instant this many microseconds after the origin.
    pub const fn from_micros(us: u64) -> Self {
        Self(us)
    }
    /// An instant this many milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms.saturating_mul(1000))
    }
    /// An instant this many seconds after the origin.
    pub const fn from_secs(s: u64) -> Self {
        Self(s.saturating_mul(1_000_000))
    }
    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }
    /// Whole seconds since the origin.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000
    }
    /// The time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Self) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
    }
}

impl Sub<Duration> for Instant {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_secs(4);
        assert_eq!(t + Duration::from_millis(500), Instant::from_millis(4500));
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::from_micros(u64::MAX) + Duration::from_secs(1), Instant::from_micros(u64::MAX));
        assert_eq!(t.saturating_since(Instant::from_secs(5)), Duration::ZERO);
        assert_eq!(Instant::from_secs(5).saturating_since(t), Duration::from_secs(1));
        assert_eq!(Instant::from_millis(4999).as_secs(), 4);
    }
}
