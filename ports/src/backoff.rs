//! Exponential backoff with jitter, shared by every retry loop of the SDK and its adapters
//! (tracking delivery, config fetches, a data store's conflict retries), and [`instant_after`],
//! the saturating deadline arithmetic they all use.
//!
//! Works at any scale: a conflict-retry loop can use microseconds, a network retry seconds.
//!
//! ```
//! use convert_ports::Backoff;
//! use std::time::Duration;
//!
//! let b = Backoff::new(Duration::from_micros(20), Duration::from_millis(2));
//! for attempt in 1..=20 {
//!     let d = b.delay(attempt);
//!     assert!(d <= Duration::from_millis(2));
//!     assert!(d >= Duration::from_micros(15)); // at most 25 % below the base
//! }
//! ```

use std::time::Duration;

/// `initial × 2^(attempt-1)`, capped at `max`, each delay drawn uniformly within ±`jitter` of
/// that base (and never above `max`), so a fleet of clients does not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// Base delay of the first retry.
    pub initial: Duration,
    /// Upper bound of every delay.
    pub max: Duration,
    /// Relative spread around the base, in `[0, 1]` (default 0.25: ±25 %).
    pub jitter: f64,
}

impl Default for Backoff {
    /// 500 ms doubling up to 30 s, ±25 %.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A backoff from `initial` doubling up to `max`, with ±25 % jitter.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            jitter: 0.25,
        }
    }

    /// The same backoff with another jitter fraction (clamped to `[0, 1]`; 0 = none).
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The base delay (no jitter) before retry number `attempt` (1-based; 0 counts as 1).
    pub fn base(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << shift).min(self.max)
    }

    /// The delay before retry number `attempt` (1-based): [`Backoff::base`] with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.base(attempt);
        if self.jitter <= 0.0 {
            return base;
        }
        // Uniform in [1 - jitter, 1 + jitter).
        let factor = 1.0 + self.jitter * (2.0 * fastrand::f64() - 1.0);
        // `mul_f64` panics past `Duration::MAX`; a base that large is simply the cap.
        Duration::try_from_secs_f64(base.as_secs_f64() * factor.max(0.0))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// The longest wait the SDK and its adapters act on: a century. A longer duration (such as
/// `Duration::MAX`, read as "no limit") is taken as this one.
pub const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + d`, saturating: a duration too long for [`std::time::Instant`] gives an instant
/// [`LONGEST_WAIT`] away instead of panicking on overflow. Every deadline the SDK and its
/// adapters compute from a caller's duration goes through it.
pub fn instant_after(now: std::time::Instant, d: Duration) -> std::time::Instant {
    now.checked_add(d.min(LONGEST_WAIT))
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        // No platform's monotonic clock is within a year of its end; were it, the latest
        // instant it can represent is not at hand, and `now` is the one known to exist.
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_saturate_instead_of_panicking() {
        let b = Backoff::new(Duration::MAX, Duration::MAX);
        for attempt in [0, 1, 2, 40, u32::MAX] {
            assert!(b.delay(attempt) >= Duration::from_secs(u64::MAX / 2));
        }
        let b = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX);
        assert!(b.delay(3) > Duration::ZERO);
        let now = std::time::Instant::now();
        let far = instant_after(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(50 * 365 * 24 * 3600));
        assert_eq!(
            instant_after(now, Duration::from_millis(5)),
            now + Duration::from_millis(5)
        );
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter(0.0);
        let got: Vec<u128> = (1..=6).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_its_band_and_varies() {
        let b = Backoff::new(Duration::from_micros(400), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(1)).collect();
        for d in &delays {
            assert!(*d >= Duration::from_micros(300) && *d <= Duration::from_micros(500));
        }
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first), "no jitter at all");
    }
}
