//! Server nonces for digest authentication, bound to the address they were
//! issued to and usable once per `nc` (RFC 7616 §3.3, §5.5; RFC 3261 §22.4).
//!
//! Sans-IO: time (Unix seconds) is passed in. A nonce is
//! `ts.serial.mac`, where `mac` covers the timestamp, a serial number and
//! the client's IP address: issuing stores nothing, so a flood of
//! unauthenticated requests costs no memory, and a nonce presented from
//! another address fails its MAC. What has been *accepted* is remembered
//! (nonce → highest `nc`), in a table with a cap: when full, the oldest
//! entries go and every nonce issued at or before them becomes stale, so a
//! forgotten nonce can never be replayed, only re-challenged.

use std::collections::HashMap;
use std::net::IpAddr;

use super::config::canonical_ip;
use super::digest::Algorithm;

/// Why a nonce (with an otherwise right response) was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceError {
    /// Not one of ours, or issued to another address.
    Foreign,
    /// Ours but expired (or forgotten): the client should retry with a new one.
    Stale,
    /// This (nonce, nc) was already used: a replay.
    Replayed,
}

pub struct Nonces {
    secret: String,
    lifetime: u64,
    cap: usize,
    /// Accepted nonces: nonce → (its timestamp, highest nc accepted).
    used: HashMap<String, (u64, u32)>,
    /// Nonces stamped at or before this second are stale: they were issued
    /// before a restart (whose table is lost) or their entries were evicted.
    floor: u64,
    serial: u64,
}

impl Nonces {
    /// `now` is the start time: nonces issued by an earlier process are stale.
    pub fn new(secret: impl Into<String>, lifetime: u64, cap: usize, now: u64) -> Self {
        Nonces { secret: secret.into(), lifetime, cap: cap.max(1), used: HashMap::new(), floor: now, serial: 0 }
    }

    /// A fresh nonce for a client at `ip`.
    pub fn issue(&mut self, now: u64, ip: IpAddr) -> String {
        // Never stamp at or below the floor, or a client challenged in the
        // same second as a restart would be told "stale" until it ticks.
        let ts = now.max(self.floor + 1);
        // The serial makes two clients behind one NAT get different nonces,
        // so their nc counters never collide.
        self.serial = self.serial.wrapping_add(1);
        format!("{ts:x}.{:x}.{}", self.serial, self.mac(ts, self.serial, ip))
    }

    /// Whether `nonce` could be used by `ip` now, without recording a use.
    pub fn check(&self, nonce: &str, now: u64, ip: IpAddr) -> Result<(), NonceError> {
        let (ts, serial, mac) = parse(nonce).ok_or(NonceError::Foreign)?;
        if mac != self.mac(ts, serial, ip) {
            return Err(NonceError::Foreign);
        }
        // A small allowance into the future covers `issue` stamping floor+1.
        if ts <= self.floor || now > ts.saturating_add(self.lifetime) || ts > now.saturating_add(60) {
            return Err(NonceError::Stale);
        }
        Ok(())
    }

    /// Accept one use of `nonce` with count `nc` (1 when the client sent no
    /// qop: such a nonce is then good for exactly one request).
    pub fn accept(&mut self, nonce: &str, nc: u32, now: u64, ip: IpAddr) -> Result<(), NonceError> {
        self.check(nonce, now, ip)?;
        if let Some((_, last)) = self.used.get_mut(nonce) {
            // RFC 7616 §3.4: nc counts up; a repeated or lower one is a replay.
            if nc <= *last {
                return Err(NonceError::Replayed);
            }
            *last = nc;
            return Ok(());
        }
        self.make_room(now);
        // `check` passed, so the nonce parses.
        let ts = parse(nonce).map(|(ts, _, _)| ts).unwrap_or(now);
        if ts <= self.floor {
            // Eviction just raised the floor past this nonce.
            return Err(NonceError::Stale);
        }
        self.used.insert(nonce.to_string(), (ts, nc));
        Ok(())
    }

    /// Entries currently remembered (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.used.len()
    }

    fn make_room(&mut self, now: u64) {
        if self.used.len() < self.cap {
            return;
        }
        let lifetime = self.lifetime;
        self.used.retain(|_, (ts, _)| now <= ts.saturating_add(lifetime));
        while self.used.len() >= self.cap {
            // Forget the oldest second's worth and make it stale.
            let Some(oldest) = self.used.values().map(|(ts, _)| *ts).min() else { break };
            self.floor = self.floor.max(oldest);
            let floor = self.floor;
            self.used.retain(|_, (ts, _)| *ts > floor);
        }
    }

    fn mac(&self, ts: u64, serial: u64, ip: IpAddr) -> String {
        let full = Algorithm::Sha256.hash(&format!("{}:{ts:x}:{serial:x}:{}", self.secret, canonical_ip(ip)));
        full[..32].to_string()
    }
}

fn parse(nonce: &str) -> Option<(u64, u64, &str)> {
    let mut parts = nonce.splitn(3, '.');
    let ts = u64::from_str_radix(parts.next()?, 16).ok()?;
    let serial = u64::from_str_radix(parts.next()?, 16).ok()?;
    Some((ts, serial, parts.next()?))
}

/// `nc` as sent (8 hex digits, RFC 7616 §3.4); None if malformed.
pub fn parse_nc(nc: &str) -> Option<u32> {
    if nc.is_empty() || nc.len() > 8 {
        return None;
    }
    u32::from_str_radix(nc, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "192.0.2.10";
    const B: &str = "192.0.2.11";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bound_to_the_address_it_was_issued_to() {
        let mut n = Nonces::new("k", 300, 100, 1_000);
        let nonce = n.issue(1_000, ip(A));
        assert_eq!(n.check(&nonce, 1_010, ip(B)), Err(NonceError::Foreign));
        assert_eq!(n.accept(&nonce, 1, 1_010, ip(B)), Err(NonceError::Foreign));
        assert_eq!(n.accept(&nonce, 1, 1_010, ip(A)), Ok(()));
        // IPv4-mapped IPv6 is the same client.
        assert_eq!(n.accept(&nonce, 2, 1_010, "::ffff:192.0.2.10".parse().unwrap()), Ok(()));
        assert_eq!(n.check("1.2.deadbeef", 1_010, ip(A)), Err(NonceError::Foreign));
        assert_eq!(n.check("garbage", 1_010, ip(A)), Err(NonceError::Foreign));
    }

    #[test]
    fn each_nc_once_and_expiry() {
        let mut n = Nonces::new("k", 300, 100, 1_000);
        let nonce = n.issue(1_000, ip(A));
        assert_eq!(n.accept(&nonce, 1, 1_001, ip(A)), Ok(()));
        assert_eq!(n.accept(&nonce, 1, 1_002, ip(A)), Err(NonceError::Replayed));
        assert_eq!(n.accept(&nonce, 3, 1_003, ip(A)), Ok(()));
        assert_eq!(n.accept(&nonce, 2, 1_004, ip(A)), Err(NonceError::Replayed));
        assert_eq!(n.accept(&nonce, 4, 1_400, ip(A)), Err(NonceError::Stale));
        // Two clients behind one address get different nonces.
        assert_ne!(n.issue(1_500, ip(A)), n.issue(1_500, ip(A)));
    }

    #[test]
    fn nonces_from_before_a_restart_are_stale() {
        let mut before = Nonces::new("k", 300, 100, 1_000);
        let nonce = before.issue(1_000, ip(A));
        let mut after = Nonces::new("k", 300, 100, 1_050);
        assert_eq!(after.accept(&nonce, 1, 1_050, ip(A)), Err(NonceError::Stale));
        // A nonce issued in the restart's own second is good.
        let fresh = after.issue(1_050, ip(A));
        assert_eq!(after.accept(&fresh, 1, 1_050, ip(A)), Ok(()));
    }

    #[test]
    fn table_is_capped_and_evicted_nonces_cannot_be_replayed() {
        let mut n = Nonces::new("k", 300, 4, 0);
        let mut issued = Vec::new();
        for t in 1..=10u64 {
            let nonce = n.issue(t, ip(A));
            assert_eq!(n.accept(&nonce, 1, t, ip(A)), Ok(()));
            issued.push(nonce);
            assert!(n.tracked() <= 4);
        }
        // The first nonces were forgotten: replaying them is stale, not accepted.
        assert_eq!(n.accept(&issued[0], 1, 11, ip(A)), Err(NonceError::Stale));
        assert_eq!(n.accept(&issued[0], 2, 11, ip(A)), Err(NonceError::Stale));
        assert_eq!(n.accept(&issued[9], 1, 11, ip(A)), Err(NonceError::Replayed));
    }

    #[test]
    fn nc_parsing() {
        assert_eq!(parse_nc("00000001"), Some(1));
        assert_eq!(parse_nc("0000000a"), Some(10));
        assert_eq!(parse_nc(""), None);
        assert_eq!(parse_nc("000000001"), None);
        assert_eq!(parse_nc("xyz"), None);
    }
}
