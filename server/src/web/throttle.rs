//! Slows down guessing: passwords on the sign-in form and enrolment codes on `POST /v1/enrol`.
//!
//! One schedule for every count ([`Lockout`]): after its free failures in a row, the key is
//! locked for a minute, then two, four … up to fifteen minutes per further failure; while it is
//! locked every attempt under it is refused before anything is checked (the right password too,
//! else the lock would only slow the attacker's confirmation). A run of failures is forgotten
//! after a day without one.
//!
//! Sign-in ([`SignInThrottle`]) counts twice, so that guessing cannot lock the owner out and
//! guessing from many addresses is still slowed:
//! - per client address and user name: [`FREE_FAILURES`] wrong passwords in a row lock that
//!   name *from that address* only; a success there forgets the count;
//! - per user name from every address: [`NAME_FREE_FAILURES`] in a row lock the name for every
//!   address except those it has signed in from before ([`KNOWN_ADDRESSES`] remembered per
//!   name), so the owner at their usual place is not held by strangers' guesses.
//!
//! Enrolment ([`EnrolThrottle`]) counts wrong codes per client address.
//!
//! Counted whether or not the user exists (the answer must not tell which names are real), and
//! kept in memory: a restart forgets the counts, which costs an attacker a restart they cannot
//! cause. The handlers ask and tell while they hold the store's one connection, so attempts
//! are judged one at a time and a burst cannot pass the check before its first failure is
//! counted. No I/O here; the caller passes the time and the address (as
//! [`crate::listen::address_key`] counts it).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

/// Wrong passwords in a row one address may try for a user name before it is locked there.
pub const FREE_FAILURES: u32 = 5;
/// Wrong passwords in a row for a user name, from all addresses, before it is locked for every
/// address it has not signed in from.
pub const NAME_FREE_FAILURES: u32 = 4 * FREE_FAILURES;
/// Addresses remembered per user name as ones it signed in from.
pub const KNOWN_ADDRESSES: usize = 8;
/// Wrong enrolment codes in a row from one address before it is locked.
pub const ENROL_FREE_FAILURES: u32 = 5;
const FIRST_LOCK_SECS: i64 = 60;
const MAX_LOCK_SECS: i64 = 15 * 60;
/// Failures older than this (and not locking) are forgotten.
const FORGET_SECS: i64 = 24 * 3600;
/// Keys tracked at most per count; past it, the keys that are not locked now are forgotten first.
const MAX_TRACKED: usize = 10_000;

/// Failures in a row per key, and the lock they earned.
#[derive(Debug)]
pub struct Lockout<K> {
    free: u32,
    keys: Mutex<HashMap<K, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: i64,
    locked_until: i64,
}

impl<K: Hash + Eq + Clone> Lockout<K> {
    pub fn new(free: u32) -> Lockout<K> {
        Lockout { free, keys: Mutex::default() }
    }

    /// `Err(seconds)` while `key` is locked, with the seconds left.
    pub fn check(&self, key: &K, now: i64) -> Result<(), i64> {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match keys.get(key) {
            Some(f) if f.locked_until > now => Err(f.locked_until - now),
            _ => Ok(()),
        }
    }

    /// A failure under `key`; returns the lock it now has, in seconds (0: not locked).
    pub fn failed(&self, key: &K, now: i64) -> i64 {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= MAX_TRACKED && !keys.contains_key(key) {
            keys.retain(|_, f| f.locked_until > now || now - f.last < FORGET_SECS);
            if keys.len() >= MAX_TRACKED {
                keys.retain(|_, f| f.locked_until > now);
            }
        }
        let f = keys.entry(key.clone()).or_insert(Failures { count: 0, last: now, locked_until: 0 });
        if now - f.last >= FORGET_SECS && f.locked_until <= now {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        if f.count >= self.free {
            let doublings = (f.count - self.free).min(10);
            let lock = (FIRST_LOCK_SECS << doublings).min(MAX_LOCK_SECS);
            f.locked_until = now + lock;
            lock
        } else {
            0
        }
    }

    /// A success: the key's failures are forgotten.
    pub fn succeeded(&self, key: &K) {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Wrong passwords on the sign-in form, per address and name and per name (see the module).
#[derive(Debug)]
pub struct SignInThrottle {
    pairs: Lockout<(IpAddr, String)>,
    names: Lockout<String>,
    known: Mutex<HashMap<String, VecDeque<IpAddr>>>,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        SignInThrottle { pairs: Lockout::new(FREE_FAILURES), names: Lockout::new(NAME_FREE_FAILURES), known: Mutex::default() }
    }
}

impl SignInThrottle {
    fn known(&self, user: &str, from: IpAddr) -> bool {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(key(user)).is_some_and(|a| a.contains(&from))
    }

    /// `Err(seconds)` while `user` is locked for sign-ins `from` this address.
    pub fn check(&self, from: IpAddr, user: &str, now: i64) -> Result<(), i64> {
        self.pairs.check(&(from, key(user).to_string()), now)?;
        if self.known(user, from) {
            return Ok(());
        }
        self.names.check(&key(user).to_string(), now)
    }

    /// A wrong password (or an unknown name) for `user` from `from`; returns the lock this
    /// address now has for the name, in seconds (0: not locked).
    pub fn failed(&self, from: IpAddr, user: &str, now: i64) -> i64 {
        let pair = self.pairs.failed(&(from, key(user).to_string()), now);
        let name = self.names.failed(&key(user).to_string(), now);
        if self.known(user, from) { pair } else { pair.max(name) }
    }

    /// A successful sign-in: this address's failures for the name are forgotten and the address
    /// is remembered as one the name signs in from. The name's count from every address stays
    /// (a success must not give a guesser elsewhere a fresh run).
    pub fn succeeded(&self, from: IpAddr, user: &str) {
        self.pairs.succeeded(&(from, key(user).to_string()));
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_TRACKED && !known.contains_key(key(user)) {
            known.clear();
        }
        let addresses = known.entry(key(user).to_string()).or_default();
        if !addresses.contains(&from) {
            if addresses.len() >= KNOWN_ADDRESSES {
                addresses.pop_front();
            }
            addresses.push_back(from);
        }
    }
}

/// Wrong enrolment codes per client address.
#[derive(Debug)]
pub struct EnrolThrottle(pub Lockout<IpAddr>);

impl Default for EnrolThrottle {
    fn default() -> Self {
        EnrolThrottle(Lockout::new(ENROL_FREE_FAILURES))
    }
}

/// The name as the store looks it up.
fn key(user: &str) -> &str {
    user.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn locks_after_five_failures_for_growing_times_and_forgets_on_success() {
        let t = SignInThrottle::default();
        let a = ip("10.0.0.1");
        let now = 1_000_000;
        // 1. Four failures: still free.
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(t.failed(a, "sup1", now), 0);
            assert_eq!(t.check(a, "sup1", now), Ok(()));
        }
        // 2. The fifth locks for a minute; the name with spaces is the same name; others are free.
        assert_eq!(t.failed(a, " sup1 ", now), 60);
        assert_eq!(t.check(a, "sup1", now + 1), Err(59));
        assert_eq!(t.check(a, "sup2", now + 1), Ok(()));
        // 3. After the minute one more try; a failure then locks for two, four, … fifteen minutes.
        assert_eq!(t.check(a, "sup1", now + 60), Ok(()));
        assert_eq!(t.failed(a, "sup1", now + 60), 120);
        assert_eq!(t.failed(a, "sup1", now + 180), 240);
        let mut at = now + 420;
        let mut locks = Vec::new();
        for _ in 0..5 {
            let lock = t.failed(a, "sup1", at);
            locks.push(lock);
            at += lock;
        }
        assert_eq!(locks, [480, 900, 900, 900, 900]);
        // 4. A success forgets the address's count.
        t.succeeded(a, "sup1");
        assert_eq!(t.check(a, "sup1", at), Ok(()));
        assert_eq!(t.failed(a, "sup1", at), 0);
    }

    #[test]
    fn guesses_from_one_address_do_not_lock_the_name_elsewhere_but_many_addresses_do() {
        let t = SignInThrottle::default();
        let (attacker, owner_home, owner_office) = (ip("203.0.113.5"), ip("198.51.100.7"), ip("192.0.2.1"));
        t.succeeded(owner_office, "sup1");
        let now = 1_000_000;
        for _ in 0..FREE_FAILURES {
            t.failed(attacker, "sup1", now);
        }
        assert_eq!(t.check(attacker, "sup1", now), Err(60));
        assert_eq!(t.check(owner_home, "sup1", now), Ok(()), "another address is not held");
        // One wrong password each from many addresses: the name locks for addresses it never
        // signed in from, not for the owner's known one.
        let mut last = 0;
        for i in 0..NAME_FREE_FAILURES - FREE_FAILURES {
            last = t.failed(ip(&format!("203.0.114.{i}")), "sup1", now);
        }
        assert_eq!(last, 60, "the twentieth failure of the name locks it");
        assert_eq!(t.check(ip("203.0.115.1"), "sup1", now + 1), Err(59));
        assert_eq!(t.check(owner_home, "sup1", now + 1), Err(59));
        assert_eq!(t.check(owner_office, "sup1", now + 1), Ok(()));
        // A mistake by the owner at the office locks only the office pair's count, not more.
        assert_eq!(t.failed(owner_office, "sup1", now + 2), 0);
        assert_eq!(t.check(owner_office, "sup1", now + 2), Ok(()));
    }

    #[test]
    fn a_run_of_failures_is_forgotten_after_a_quiet_day() {
        let l: Lockout<u8> = Lockout::new(3);
        assert_eq!((l.failed(&1, 0), l.failed(&1, 1)), (0, 0));
        assert_eq!(l.failed(&1, 2 + FORGET_SECS), 0, "counting starts again");
        assert_eq!(l.failed(&1, 3 + FORGET_SECS), 0);
        assert_eq!(l.failed(&1, 4 + FORGET_SECS), 60);
    }

    #[test]
    fn a_flood_of_names_does_not_free_a_locked_one() {
        let t = SignInThrottle::default();
        let a = ip("10.0.0.1");
        for _ in 0..FREE_FAILURES {
            t.failed(a, "sup1", 0);
        }
        for i in 0..MAX_TRACKED + 10 {
            t.failed(a, &format!("x{i}"), 1);
        }
        assert!(t.pairs.len() <= MAX_TRACKED && t.names.len() <= MAX_TRACKED);
        assert_eq!(t.check(a, "sup1", 2), Err(58));
    }
}
