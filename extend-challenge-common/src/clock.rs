//! The time source every rule-bearing component takes, so tests can cross period
//! boundaries without sleeping.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use parking_lot::Mutex;

/// A cheap, clonable source of "now" (UTC).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }

    /// The system clock shifted by `offset` (`CLOCK_OFFSET_SECONDS`, for end-to-end tests
    /// that start the binaries "tomorrow").
    pub fn offset(offset: Duration) -> Clock {
        if offset.is_zero() {
            return Clock::system();
        }
        Clock(Arc::new(move || Utc::now() + offset))
    }

    /// A clock the caller moves by hand.
    pub fn manual(start: DateTime<Utc>) -> (Clock, ManualClock) {
        let at = Arc::new(Mutex::new(start));
        let read = at.clone();
        (Clock(Arc::new(move || *read.lock())), ManualClock(at))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

/// The handle that moves a [`Clock::manual`] clock.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock() = t;
    }

    pub fn advance(&self, d: Duration) {
        *self.0.lock() += d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = DateTime::parse_from_rfc3339("2025-01-01T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        let (clock, hand) = Clock::manual(start);
        assert_eq!(clock.now(), start);
        hand.advance(Duration::seconds(2));
        assert_eq!(clock.now().to_rfc3339(), "2025-01-02T00:00:01+00:00");
    }

    #[test]
    fn offset_clock_runs_ahead() {
        let c = Clock::offset(Duration::days(1));
        let d = c.now() - Utc::now();
        assert!(d > Duration::hours(23), "{d}");
    }
}
