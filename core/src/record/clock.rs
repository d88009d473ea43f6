//! Where a record's time comes from: the system clock, or one a test or a fault injection moves.

use std::sync::Arc;

/// Where time comes from; tests and fault injection move it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        }))
    }
    /// A clock that always says `secs`.
    pub fn fixed(secs: i64) -> Clock {
        Clock(Arc::new(move || secs))
    }
    /// A clock that reads `now` (a test's clock that it moves itself).
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(now))
    }
    /// The system clock moved by `offset` seconds (a tablet whose clock is wrong).
    pub fn skewed(offset: i64) -> Clock {
        let sys = Clock::system();
        Clock(Arc::new(move || sys.now() + offset))
    }
    /// Seconds since 1970-01-01 UTC.
    pub fn now(&self) -> i64 {
        (self.0)()
    }
    /// Today's date in China (UTC+8), `YYYY-MM-DD`.
    pub fn today(&self) -> String {
        crate::date::china_day(self.now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
