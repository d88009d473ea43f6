//! Slows down password guessing on the sign-in form: after [`FREE_FAILURES`] wrong passwords in a
//! row for one user name, the name is locked for a minute, then two, four … up to fifteen
//! minutes per further failure. While it is locked every sign-in with that name is refused
//! before the password is checked, the right password too (else the lock would only slow the
//! attacker's confirmation). A successful sign-in forgets the name's failures.
//!
//! The sign-in handler asks and tells the throttle while it holds the store's one connection,
//! so sign-ins are judged one at a time and a burst of guesses cannot all pass the check before
//! the first of them is counted.
//!
//! Counted per user name, whether or not the user exists (the answer must not tell which names
//! are real), and kept in memory: a restart forgets the counts, which costs an attacker a
//! restart they cannot cause. No I/O here; the caller passes the time.

use std::collections::HashMap;
use std::sync::Mutex;

/// Wrong passwords in a row a user name may have before it is locked.
pub const FREE_FAILURES: u32 = 5;
const FIRST_LOCK_SECS: i64 = 60;
const MAX_LOCK_SECS: i64 = 15 * 60;
/// Failures older than this (and not locking) are forgotten when the table is pruned.
const FORGET_SECS: i64 = 24 * 3600;
/// Names tracked at most; past it, the names that are not locked now are forgotten first.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Default)]
pub struct SignInThrottle {
    names: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: i64,
    locked_until: i64,
}

impl SignInThrottle {
    /// `Err(seconds)` while `user` is locked, with the seconds left.
    pub fn check(&self, user: &str, now: i64) -> Result<(), i64> {
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        match names.get(key(user)) {
            Some(f) if f.locked_until > now => Err(f.locked_until - now),
            _ => Ok(()),
        }
    }

    /// A wrong password (or an unknown name) for `user`; returns the lock it now has, in
    /// seconds (0: not locked).
    pub fn failed(&self, user: &str, now: i64) -> i64 {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if names.len() >= MAX_TRACKED && !names.contains_key(key(user)) {
            names.retain(|_, f| f.locked_until > now || now - f.last < FORGET_SECS);
            if names.len() >= MAX_TRACKED {
                names.retain(|_, f| f.locked_until > now);
            }
        }
        let f = names.entry(key(user).to_string()).or_insert(Failures { count: 0, last: now, locked_until: 0 });
        f.count += 1;
        f.last = now;
        if f.count >= FREE_FAILURES {
            let doublings = (f.count - FREE_FAILURES).min(10);
            let lock = (FIRST_LOCK_SECS << doublings).min(MAX_LOCK_SECS);
            f.locked_until = now + lock;
            lock
        } else {
            0
        }
    }

    /// A successful sign-in: the name's failures are forgotten.
    pub fn succeeded(&self, user: &str) {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).remove(key(user));
    }
}

/// The name as the store looks it up.
fn key(user: &str) -> &str {
    user.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_five_failures_for_growing_times_and_forgets_on_success() {
        let t = SignInThrottle::default();
        let now = 1_000_000;
        // 1. Four failures: still free.
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(t.failed("sup1", now), 0);
            assert_eq!(t.check("sup1", now), Ok(()));
        }
        // 2. The fifth locks for a minute; the name with spaces is the same name; others are free.
        assert_eq!(t.failed(" sup1 ", now), 60);
        assert_eq!(t.check("sup1", now + 1), Err(59));
        assert_eq!(t.check("sup2", now + 1), Ok(()));
        // 3. After the minute one more try; a failure then locks for two, four, … fifteen minutes.
        assert_eq!(t.check("sup1", now + 60), Ok(()));
        assert_eq!(t.failed("sup1", now + 60), 120);
        assert_eq!(t.failed("sup1", now + 180), 240);
        let mut at = now + 420;
        let mut locks = Vec::new();
        for _ in 0..5 {
            let lock = t.failed("sup1", at);
            locks.push(lock);
            at += lock;
        }
        assert_eq!(locks, [480, 900, 900, 900, 900]);
        // 4. A success forgets everything.
        t.succeeded("sup1");
        assert_eq!(t.check("sup1", at), Ok(()));
        assert_eq!(t.failed("sup1", at), 0);
    }

    #[test]
    fn a_flood_of_names_does_not_free_a_locked_one() {
        let t = SignInThrottle::default();
        for _ in 0..FREE_FAILURES {
            t.failed("sup1", 0);
        }
        for i in 0..MAX_TRACKED + 10 {
            t.failed(&format!("x{i}"), 1);
        }
        assert!(t.names.lock().expect("lock").len() <= MAX_TRACKED);
        assert_eq!(t.check("sup1", 2), Err(58));
    }
}
