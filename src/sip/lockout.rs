//! Back-off after failed digest authentications, per source address and per
//! extension: a few failures lock the key for a while, each further lockout
//! twice as long (up to a ceiling). While a key is locked every attempt is
//! refused unverified, the right password included, so a dictionary attack
//! learns nothing from the answers and gets a handful of guesses per lockout.
//!
//! Sans-IO: time (Unix seconds) is passed in. Both tables are bounded: the
//! address table by `max_tracked`, the extension table by the extensions
//! configured (callers pass only known ones). IPv6 sources count per /64,
//! since one host usually holds a whole /64.

use std::collections::HashMap;
use std::net::IpAddr;

use super::config::{canonical_ip, AuthLimits};

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Failures since the last lockout (or since forgotten).
    failures: u32,
    /// Lockouts so far: the next one lasts `lockout_s * 2^strikes`.
    strikes: u32,
    locked_until: u64,
    last_failure: u64,
    /// Rate limit for log lines about refusals while locked.
    last_logged: Option<u64>,
    unlogged: u32,
}

impl Entry {
    fn idle(&self, now: u64, forget_after: u64) -> bool {
        now >= self.locked_until && now.saturating_sub(self.last_failure) > forget_after
    }
}

/// Why an attempt is refused without looking at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Unix seconds when the (longest applying) lockout ends.
    pub until: u64,
    /// Whether to log this refusal (at most one line per key every 10 s;
    /// `suppressed` more were refused since the last line).
    pub log: bool,
    pub suppressed: u32,
}

pub struct Lockout {
    limits: AuthLimits,
    ips: HashMap<IpAddr, Entry>,
    extensions: HashMap<String, Entry>,
}

/// Seconds between log lines for refusals while one address is locked.
const LOG_EVERY_S: u64 = 10;

impl Lockout {
    pub fn new(limits: AuthLimits) -> Self {
        Lockout { limits, ips: HashMap::new(), extensions: HashMap::new() }
    }

    /// If `ip` or `extension` is locked out at `now`; notes the refusal for
    /// log rate limiting.
    pub fn handle_attempt(&mut self, now: u64, ip: IpAddr, extension: Option<&str>) -> Option<Locked> {
        let ip = key(ip);
        let ext_until = extension.and_then(|x| self.extensions.get(x)).map(|e| e.locked_until).unwrap_or(0);
        let ip_until = self.ips.get(&ip).map(|e| e.locked_until).unwrap_or(0);
        let until = ext_until.max(ip_until);
        if until <= now {
            return None;
        }
        // One log line per address every few seconds: a locked-out attacker
        // sending thousands of guesses a second must not flood the disk.
        if !self.ips.contains_key(&ip) {
            let limits = self.limits.clone();
            make_room(&mut self.ips, now, &limits);
        }
        let e = self.ips.entry(ip).or_default();
        let log = e.last_logged.is_none_or(|t| now >= t.saturating_add(LOG_EVERY_S));
        let suppressed = e.unlogged;
        if log {
            e.last_logged = Some(now);
            e.unlogged = 0;
        } else {
            e.unlogged = e.unlogged.saturating_add(1);
        }
        Some(Locked { until, log, suppressed })
    }

    /// Count a failure; returns when the lockout ends if this one locks
    /// the address or the extension.
    pub fn handle_failure(&mut self, now: u64, ip: IpAddr, extension: Option<&str>) -> Option<u64> {
        let limits = self.limits.clone();
        let ip = key(ip);
        if !self.ips.contains_key(&ip) {
            make_room(&mut self.ips, now, &limits);
        }
        let mut locked = fail(self.ips.entry(ip).or_default(), now, &limits);
        if let Some(x) = extension {
            if !self.extensions.contains_key(x) {
                make_room(&mut self.extensions, now, &limits);
            }
            locked = locked.max(fail(self.extensions.entry(x.to_string()).or_default(), now, &limits));
        }
        locked
    }

    /// A success from `ip` clears its count of failures (not its strikes,
    /// nor the extension's count: a phone refreshing its registration must
    /// not reset an attacker's budget against the same extension).
    pub fn handle_success(&mut self, ip: IpAddr) {
        if let Some(e) = self.ips.get_mut(&key(ip)) {
            e.failures = 0;
        }
    }

    /// Forget keys with no lockout and no failure for a while.
    pub fn handle_timeout(&mut self, now: u64) {
        let forget = self.limits.forget_after_s;
        self.ips.retain(|_, e| !e.idle(now, forget));
        self.extensions.retain(|_, e| !e.idle(now, forget));
    }

    /// (addresses, extensions) tracked, for tests.
    pub fn tracked(&self) -> (usize, usize) {
        (self.ips.len(), self.extensions.len())
    }
}

fn fail(e: &mut Entry, now: u64, limits: &AuthLimits) -> Option<u64> {
    if e.idle(now, limits.forget_after_s) {
        *e = Entry::default();
    }
    e.last_failure = now;
    if now < e.locked_until {
        // Already locked: refused unverified, so not counted again.
        return None;
    }
    e.failures += 1;
    if e.failures < limits.max_failures {
        return None;
    }
    let factor = 1u64.checked_shl(e.strikes.min(32)).unwrap_or(u64::MAX);
    let duration = limits.lockout_s.saturating_mul(factor).min(limits.max_lockout_s);
    e.strikes = e.strikes.saturating_add(1);
    e.failures = 0;
    e.locked_until = now.saturating_add(duration);
    Some(e.locked_until)
}

/// Keep a table under `max_tracked`: drop idle keys, then the unlocked key
/// that failed longest ago, else the lock that ends first.
fn make_room<K: Clone + Eq + std::hash::Hash>(table: &mut HashMap<K, Entry>, now: u64, limits: &AuthLimits) {
    if table.len() < limits.max_tracked {
        return;
    }
    table.retain(|_, e| !e.idle(now, limits.forget_after_s));
    while table.len() >= limits.max_tracked.max(1) {
        let victim = table.iter().min_by_key(|(_, e)| (e.locked_until > now, e.locked_until, e.last_failure)).map(|(k, _)| k.clone());
        match victim {
            Some(k) => table.remove(&k),
            None => break,
        };
    }
}

/// IPv4 (including IPv4-mapped) per address, IPv6 per /64.
fn key(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AuthLimits {
        AuthLimits { max_failures: 3, lockout_s: 60, max_lockout_s: 200, forget_after_s: 600, max_tracked: 4, ..AuthLimits::default() }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn locks_after_max_failures_and_grows() {
        let mut l = Lockout::new(limits());
        let a = ip("192.0.2.1");
        assert_eq!(l.handle_failure(0, a, None), None);
        assert_eq!(l.handle_failure(1, a, None), None);
        assert_eq!(l.handle_failure(2, a, None), Some(62));
        assert!(l.handle_attempt(30, a, None).is_some());
        assert!(l.handle_attempt(62, a, None).is_none());
        // Second lockout twice as long, the third capped at max_lockout_s.
        for t in 62..64 {
            assert_eq!(l.handle_failure(t, a, None), None);
        }
        assert_eq!(l.handle_failure(64, a, None), Some(64 + 120));
        for t in 184..186 {
            l.handle_failure(t, a, None);
        }
        assert_eq!(l.handle_failure(186, a, None), Some(186 + 200));
    }

    #[test]
    fn per_extension_across_addresses_and_per_v6_prefix() {
        let mut l = Lockout::new(limits());
        // Three addresses, one extension: the extension locks.
        l.handle_failure(0, ip("192.0.2.1"), Some("201"));
        l.handle_failure(0, ip("192.0.2.2"), Some("201"));
        assert!(l.handle_failure(0, ip("192.0.2.3"), Some("201")).is_some());
        assert!(l.handle_attempt(1, ip("198.51.100.9"), Some("201")).is_some());
        assert!(l.handle_attempt(1, ip("198.51.100.9"), Some("202")).is_none());
        // Addresses in one /64 count together.
        for i in 1..=3 {
            l.handle_failure(0, ip(&format!("2001:db8::{i}")), None);
        }
        assert!(l.handle_attempt(1, ip("2001:db8::ffff"), None).is_some());
        assert!(l.handle_attempt(1, ip("2001:db8:0:1::1"), None).is_none());
    }

    #[test]
    fn forgotten_after_quiet_and_bounded() {
        let mut l = Lockout::new(limits());
        let a = ip("192.0.2.1");
        l.handle_failure(0, a, None);
        l.handle_failure(1, a, None);
        // Long quiet: the count starts again.
        assert_eq!(l.handle_failure(1_000, a, None), None);
        for i in 0..100 {
            l.handle_failure(2_000, ip(&format!("10.0.{}.{}", i / 256, i % 256)), None);
            assert!(l.tracked().0 <= 4);
        }
        l.handle_timeout(10_000);
        assert_eq!(l.tracked(), (0, 0));
    }

    #[test]
    fn refusals_while_locked_are_logged_sparingly() {
        let mut l = Lockout::new(limits());
        let a = ip("192.0.2.1");
        for t in 0..3 {
            l.handle_failure(t, a, None);
        }
        let logged: Vec<bool> = (5..30).map(|t| l.handle_attempt(t, a, None).unwrap().log).collect();
        assert_eq!(logged.iter().filter(|x| **x).count(), 3, "{logged:?}");
    }
}
