//! Flood protection in front of the endpoint, sans-IO with time passed in:
//! a token bucket per source address (like Kamailio's pike module) and a
//! count of TCP connections per source. Both tables are bounded, so an
//! outsider who rotates addresses costs us a fixed amount of memory.
//!
//! What this is not: it does not decide who is trusted (the endpoint does:
//! trunks bypass the buckets) nor answer anything; it only says yes or no.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::config::{canonical_ip, Limits};

/// The unit an address is counted in. An IPv6 user gets a /64 from any
/// provider (RFC 6177), so counting single v6 addresses would let one
/// host rotate through 2^64 buckets.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Refill for the time since `last`, then take one token if there is one.
    fn take(&mut self, now: Instant, burst: f64, per_sec: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * per_sec).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-source token buckets: `burst` messages at once, refilled at
/// `burst / window`. A source over its rate is dropped without an answer:
/// answering is what made us an amplifier.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    forget: Duration,
    max_sources: usize,
    table: HashMap<IpAddr, Bucket>,
    /// Shared by every new source while the table is full (spoofed
    /// sources): they compete with each other, not with sources we know.
    overflow: Option<Bucket>,
    next_sweep: Option<Instant>,
    dropped: u64,
}

impl RateLimiter {
    pub fn new(limits: &Limits) -> Self {
        let burst = f64::from(limits.rate_per_window.max(1));
        RateLimiter {
            burst,
            per_sec: burst / limits.rate_window_s.max(1) as f64,
            forget: Duration::from_secs(limits.rate_forget_s.max(1)),
            max_sources: limits.max_sources.max(1),
            table: HashMap::new(),
            overflow: None,
            next_sweep: None,
            dropped: 0,
        }
    }

    /// Whether one more message from `ip` may be looked at.
    pub fn admit(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.next_sweep.is_none_or(|t| t <= now) {
            self.sweep(now);
        }
        let key = source_key(ip);
        let (burst, per_sec) = (self.burst, self.per_sec);
        let room = self.table.len() < self.max_sources;
        let ok = match self.table.get_mut(&key) {
            Some(b) => b.take(now, burst, per_sec),
            None if room => {
                let mut b = Bucket { tokens: burst, last: now };
                let ok = b.take(now, burst, per_sec);
                self.table.insert(key, b);
                ok
            }
            None => self.overflow.get_or_insert(Bucket { tokens: burst, last: now }).take(now, burst, per_sec),
        };
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    /// Forget sources silent for `forget` (their bucket is full again by
    /// then, so forgetting changes no verdict). Runs once per `forget`, so
    /// its cost is spread over all the messages of that period.
    fn sweep(&mut self, now: Instant) {
        let forget = self.forget;
        self.table.retain(|_, b| now.saturating_duration_since(b.last) < forget);
        if self.table.capacity() > 1024 && self.table.len() * 4 < self.table.capacity() {
            // Give back what a past flood made the table grow to.
            self.table.shrink_to(self.table.len() * 2);
        }
        self.next_sweep = Some(now + forget);
    }

    pub fn sources(&self) -> usize {
        self.table.len()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Open inbound TCP connections, per source and in all. Each connection
/// costs a file descriptor and buffers; without a cap 1,100 idle
/// connections exhausted the process's descriptors.
#[derive(Debug)]
pub struct ConnLimits {
    max_total: usize,
    max_per_source: usize,
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl ConnLimits {
    pub fn new(limits: &Limits) -> Self {
        ConnLimits {
            max_total: limits.max_tcp_connections,
            max_per_source: limits.max_tcp_per_source,
            total: 0,
            per_source: HashMap::new(),
        }
    }

    /// Count a new connection from `ip`, unless that breaks a cap. Every
    /// `true` must be matched by one `close(ip)`.
    pub fn open(&mut self, ip: IpAddr) -> bool {
        let key = source_key(ip);
        let n = self.per_source.get(&key).copied().unwrap_or(0);
        if self.total >= self.max_total || n >= self.max_per_source {
            return false;
        }
        self.total += 1;
        self.per_source.insert(key, n + 1);
        true
    }

    pub fn close(&mut self, ip: IpAddr) {
        let key = source_key(ip);
        if let Some(n) = self.per_source.get_mut(&key) {
            *n -= 1;
            self.total = self.total.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&key);
            }
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { rate_per_window: 30, rate_window_s: 2, rate_forget_s: 120, max_sources: 3, ..Limits::default() }
    }

    #[test]
    fn burst_then_refill_rate() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(&limits());
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        // A flood of 5,000 at once: only the burst passes.
        let passed = (0..5_000).filter(|_| r.admit(t0, a)).count();
        assert_eq!(passed, 30);
        assert_eq!(r.dropped(), 4_970);
        // 15 per second afterwards (30 per 2 s).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| r.admit(t1, a)).count(), 15);
        // Another source is unaffected.
        assert!(r.admit(t1, "198.51.100.8".parse().unwrap()));
        // A steady 10 per second is always admitted.
        let mut t = t1 + Duration::from_secs(10);
        for _ in 0..200 {
            assert!(r.admit(t, a));
            t += Duration::from_millis(100);
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(&limits());
        let passed = (0..100u16).filter(|i| r.admit(t0, format!("2001:db8:0:1::{i:x}").parse().unwrap())).count();
        assert_eq!(passed, 30, "one /64 is one source");
        assert!(r.admit(t0, "2001:db8:0:2::1".parse().unwrap()));
        let passed = (0..40).filter(|_| r.admit(t0, "::ffff:192.0.2.1".parse().unwrap())).count();
        assert_eq!(passed, 30);
        assert!(!r.admit(t0, "192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn table_is_bounded_and_forgets_silent_sources() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(&limits());
        for i in 0..3 {
            assert!(r.admit(t0, format!("192.0.2.{i}").parse().unwrap()));
        }
        // Spoofed sources beyond the table share one bucket.
        let passed = (10..200).filter(|i| r.admit(t0, format!("192.0.2.{i}").parse().unwrap())).count();
        assert_eq!(passed, 30);
        assert_eq!(r.sources(), 3);
        // Known sources still pass during that.
        assert!(r.admit(t0, "192.0.2.1".parse().unwrap()));
        // After the forget time they are swept and a new one gets a bucket.
        let later = t0 + Duration::from_secs(121);
        assert!(r.admit(later, "203.0.113.9".parse().unwrap()));
        assert_eq!(r.sources(), 1);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut r = RateLimiter::new(&limits());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(r.admit(t0, a));
        assert!(r.admit(t0 - Duration::from_secs(5), a));
    }

    #[test]
    fn tcp_connections_capped_per_source_and_in_all() {
        let mut c = ConnLimits::new(&Limits { max_tcp_connections: 5, max_tcp_per_source: 2, ..Limits::default() });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(c.open(a) && c.open(a));
        assert!(!c.open(a), "third from one source");
        c.close(a);
        assert!(c.open(a));
        for i in 2..5 {
            assert!(c.open(format!("192.0.2.{i}").parse().unwrap()));
        }
        assert!(!c.open("192.0.2.9".parse().unwrap()), "over the total");
        assert_eq!(c.total(), 5);
        // A close for a source never opened changes nothing.
        c.close("203.0.113.1".parse().unwrap());
        assert_eq!(c.total(), 5);
        c.close(a);
        c.close(a);
        c.close(a);
        assert_eq!(c.total(), 3);
    }
}
