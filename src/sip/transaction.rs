//! RFC 3261 §17 transactions, sans-IO: server and client, INVITE and
//! non-INVITE, with timers A–K kept as plain deadlines in each transaction
//! and indexed in one ordered queue, so a timeout visits only the
//! transactions that are due (a scan of all of them per event made a
//! flood cost the square of its rate).
//!
//! What this is not: the 2xx-to-INVITE retransmission and its ACK belong to
//! the dialog layer (§13.3.1.4, §13.2.2.4), not here. After sending a 2xx
//! an INVITE server transaction only lingers, as RFC 6026 §8.7's
//! "Accepted" state, to absorb retransmitted INVITEs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::config::{Timers, Transport};
use super::headers::{CSeq, Via};
use super::message::{Method, Request, Response};

/// Where a message goes or came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// A datagram or stream chunk for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub bytes: Vec<u8>,
}

/// Transaction identity (§17.1.3, §17.2.3). `method` is INVITE for ACKs
/// of non-2xx, so they match their INVITE transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    pub id: String,
    pub method: String,
}

pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl TxKey {
    /// Server-side key for a received request (RFC 2543 fallback when the
    /// branch lacks the magic cookie).
    pub fn for_request(req: &Request, top_via: &Via, call_id: &str, cseq: &CSeq, from_tag: Option<&str>) -> TxKey {
        let method = match req.method {
            Method::Ack => "INVITE".to_string(),
            ref m => m.as_str().to_string(),
        };
        let id = match top_via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) => format!("{b}|{}", top_via.sent_by()),
            _ => format!("2543|{call_id}|{}|{}|{}|{}", cseq.seq, from_tag.unwrap_or(""), top_via.sent_by(), req.uri),
        };
        TxKey { id, method }
    }

    /// Client-side key for a response: our branch plus the CSeq method.
    pub fn for_response(branch: &str, cseq_method: &str) -> TxKey {
        let method = if cseq_method == "ACK" { "INVITE" } else { cseq_method };
        TxKey { id: branch.to_string(), method: method.to_string() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Client INVITE before any response / client non-INVITE before any.
    Calling,
    Proceeding,
    Completed,
    /// Server INVITE after the ACK (Timer I running).
    Confirmed,
    /// Server INVITE after a 2xx (RFC 6026, Timer L = 64·T1): retransmitted
    /// INVITEs are dropped, or they would look like a new call once the
    /// transaction was gone; the dialog layer retransmits the 2xx itself.
    Accepted,
}

#[derive(Debug)]
struct Tx {
    invite: bool,
    state: State,
    peer: Peer,
    /// Client: the request; server: the last response sent.
    last: Option<Vec<u8>>,
    /// Client INVITE: the ACK we sent for a non-2xx final response.
    ack: Option<Vec<u8>>,
    /// Client: original request, to build the ACK.
    request: Option<Request>,
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// Timer B/F/H: give up; Timer D/I/J/K: forget.
    end_at: Option<Instant>,
    /// Whether reaching `end_at` is a failure to report (B, F, H).
    end_is_timeout: bool,
    /// This transaction's entry in `Transactions::queue`, if any.
    queued: Option<QueueKey>,
}

impl Tx {
    fn deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.end_at].into_iter().flatten().min()
    }
}

/// (deadline, sequence number): unique, ordered by time.
type QueueKey = (Instant, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// What a received request is to the transaction layer.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerMatch {
    /// Start of a new transaction (already created): hand to the TU.
    New,
    /// A retransmission, answered from the transaction: drop.
    Absorbed,
}

/// Reported by `handle_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// Client transaction got no final response (Timer B/F): act as 408.
    ClientTimeout(TxKey),
    /// Server INVITE transaction never got its ACK (Timer H).
    ServerNoAck(TxKey),
}

#[derive(Debug)]
pub struct Transactions {
    timers: Timers,
    server: HashMap<TxKey, Tx>,
    client: HashMap<TxKey, Tx>,
    out: VecDeque<Transmit>,
    /// Every transaction with a deadline, by its earliest deadline.
    queue: BTreeMap<QueueKey, (Side, TxKey)>,
    seq: u64,
    /// Server transactions per source address (see `flood::source_key`),
    /// for the endpoint's caps.
    per_source: HashMap<IpAddr, usize>,
    /// Server transactions still working on their request (no final
    /// response yet); the rest only linger to absorb retransmissions.
    pending_server: usize,
    /// Server transactions in the order they sent their final response:
    /// the oldest lingering one is given up first when memory is short
    /// (entries of transactions already gone are skipped).
    answered: VecDeque<TxKey>,
}

impl Transactions {
    pub fn new(timers: Timers) -> Self {
        Transactions {
            timers,
            server: HashMap::new(),
            client: HashMap::new(),
            out: VecDeque::new(),
            queue: BTreeMap::new(),
            seq: 0,
            per_source: HashMap::new(),
            pending_server: 0,
            answered: VecDeque::new(),
        }
    }

    pub fn len(&self) -> (usize, usize) {
        (self.server.len(), self.client.len())
    }

    /// Server transactions that have not sent a final response yet: the
    /// work in progress, which the endpoint's overload cap counts.
    pub fn server_pending(&self) -> usize {
        self.pending_server
    }

    /// Gives up the server transaction that answered longest ago (kept
    /// only to absorb retransmissions, or to repeat a failure response
    /// until its ACK); false when every one is still at work. Losing it
    /// early only means a late retransmission is treated as new (the
    /// endpoint drops an INVITE whose call exists, a repeated BYE gets
    /// 481), which is better than refusing new work for memory.
    pub fn evict_lingering(&mut self) -> bool {
        while let Some(key) = self.answered.pop_front() {
            if self.server.get(&key).is_some_and(|t| t.state != State::Proceeding) {
                return self.remove(Side::Server, &key).is_some();
            }
        }
        false
    }

    /// Server transactions alive from `ip`'s source (see `flood::source_key`).
    pub fn server_count_from(&self, ip: IpAddr) -> usize {
        self.per_source.get(&super::flood::source_key(ip)).copied().unwrap_or(0)
    }

    /// Entries in the timer queue (tests: never more than transactions).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn map(&mut self, side: Side) -> &mut HashMap<TxKey, Tx> {
        match side {
            Side::Server => &mut self.server,
            Side::Client => &mut self.client,
        }
    }

    /// Re-index one transaction after its timers changed.
    fn reschedule(&mut self, side: Side, key: &TxKey) {
        let seq = self.seq;
        let Some(tx) = self.map(side).get_mut(key) else { return };
        let old = tx.queued.take();
        let new = tx.deadline().map(|d| (d, seq));
        tx.queued = new;
        if let Some(old) = old {
            self.queue.remove(&old);
        }
        if let Some(new) = new {
            self.seq += 1;
            self.queue.insert(new, (side, key.clone()));
        }
    }

    fn remove(&mut self, side: Side, key: &TxKey) -> Option<Tx> {
        let tx = self.map(side).remove(key)?;
        if let Some(q) = tx.queued {
            self.queue.remove(&q);
        }
        if side == Side::Server && tx.state == State::Proceeding {
            self.pending_server -= 1;
        }
        if side == Side::Server {
            let src = super::flood::source_key(tx.peer.addr.ip());
            if let Some(n) = self.per_source.get_mut(&src) {
                *n -= 1;
                if *n == 0 {
                    self.per_source.remove(&src);
                }
            }
        }
        // A flood's worth of capacity is given back once it is over.
        let map = self.map(side);
        if map.capacity() > 1024 && map.len() * 4 < map.capacity() {
            map.shrink_to(map.len() * 2);
        }
        Some(tx)
    }

    /// Forgets a server transaction the TU will not answer (a duplicate).
    pub fn server_forget(&mut self, key: &TxKey) {
        self.remove(Side::Server, key);
    }

    pub fn server_exists(&self, key: &TxKey) -> bool {
        self.server.contains_key(key)
    }

    /// Match a received request against server transactions (§17.2.3).
    pub fn server_receive(&mut self, now: Instant, key: &TxKey, req: &Request, peer: Peer) -> ServerMatch {
        let t4 = self.timers.t4();
        if let Some(tx) = self.server.get_mut(key) {
            if tx.state == State::Accepted {
                // The ACK of a 2xx is the dialog layer's; a resent INVITE is dropped.
                return if req.method == Method::Ack { ServerMatch::New } else { ServerMatch::Absorbed };
            }
            if req.method == Method::Ack {
                // ACK for our non-2xx final: stop retransmitting (Timer I).
                if tx.invite && tx.state == State::Completed {
                    tx.state = State::Confirmed;
                    tx.retransmit_at = None;
                    tx.end_is_timeout = false;
                    tx.end_at = Some(now + if peer.transport == Transport::Udp { t4 } else { Duration::ZERO });
                    self.reschedule(Side::Server, key);
                }
                return ServerMatch::Absorbed;
            }
            // Answer where the retransmission came from: a TCP peer may have
            // reconnected, a NATed one rebound.
            if let Some(last) = &tx.last {
                tx.peer = peer;
                self.out.push_back(Transmit { peer, bytes: last.clone() });
            }
            return ServerMatch::Absorbed;
        }
        if req.method == Method::Ack {
            // ACK for a 2xx (or a stray one): the dialog layer's business.
            return ServerMatch::New;
        }
        self.server.insert(
            key.clone(),
            Tx {
                invite: req.method == Method::Invite,
                state: State::Proceeding,
                peer,
                last: None,
                ack: None,
                request: None,
                retransmit_at: None,
                interval: self.timers.t1(),
                end_at: None,
                end_is_timeout: false,
                queued: None,
            },
        );
        *self.per_source.entry(super::flood::source_key(peer.addr.ip())).or_insert(0) += 1;
        self.pending_server += 1;
        ServerMatch::New
    }

    /// Send a response through its server transaction. Without one (already
    /// gone), it is sent once statelessly.
    pub fn server_respond(&mut self, now: Instant, key: &TxKey, resp: &Response, peer: Peer) {
        let bytes = resp.to_bytes();
        self.out.push_back(Transmit { peer, bytes: bytes.clone() });
        let t1 = self.timers.t1();
        let udp = peer.transport == Transport::Udp;
        let Some(tx) = self.server.get_mut(key) else {
            return;
        };
        if tx.state == State::Accepted {
            return; // a 2xx retransmitted by the dialog layer: sent above
        }
        tx.last = Some(bytes);
        if resp.status < 200 {
            return;
        }
        if tx.state == State::Proceeding {
            self.pending_server -= 1;
            self.answered.push_back(key.clone());
        }
        if tx.invite && resp.status < 300 {
            // The TU retransmits 2xx (§17.2.1); stay only to absorb INVITEs (RFC 6026).
            tx.state = State::Accepted;
            tx.last = None;
            tx.retransmit_at = None;
            tx.end_at = Some(now + 64 * t1);
            tx.end_is_timeout = false;
        } else {
            tx.state = State::Completed;
            if tx.invite {
                tx.retransmit_at = udp.then(|| now + t1);
                tx.interval = t1;
                tx.end_at = Some(now + 64 * t1);
                tx.end_is_timeout = true;
            } else {
                tx.end_at = Some(now + if udp { 64 * t1 } else { Duration::ZERO });
            }
        }
        self.reschedule(Side::Server, key);
        // Entries of transactions that ended by themselves are dropped now
        // and then, so the order list stays as small as the table.
        if self.answered.len() > 1024 + 2 * self.server.len() {
            let server = &self.server;
            self.answered.retain(|k| server.get(k).is_some_and(|t| t.state != State::Proceeding));
        }
    }

    /// Start a client transaction; `branch` must be the top Via's branch.
    pub fn client_send(&mut self, now: Instant, branch: &str, req: Request, peer: Peer) -> TxKey {
        let key = TxKey::for_response(branch, req.method.as_str());
        let bytes = req.to_bytes();
        self.out.push_back(Transmit { peer, bytes: bytes.clone() });
        let t1 = self.timers.t1();
        let udp = peer.transport == Transport::Udp;
        // A branch is never reused, but if it were, drop the old one's timer.
        self.remove(Side::Client, &key);
        self.client.insert(
            key.clone(),
            Tx {
                invite: req.method == Method::Invite,
                state: State::Calling,
                peer,
                last: Some(bytes),
                ack: None,
                request: Some(req),
                retransmit_at: udp.then(|| now + t1),
                interval: t1,
                end_at: Some(now + 64 * t1),
                end_is_timeout: true,
                queued: None,
            },
        );
        self.reschedule(Side::Client, &key);
        key
    }

    /// Match a response to a client transaction. `Some(key)` = deliver to TU.
    pub fn client_receive(&mut self, now: Instant, resp: &Response, branch: &str, cseq_method: &str) -> Option<TxKey> {
        let key = TxKey::for_response(branch, cseq_method);
        let t2 = self.timers.t2();
        let t4 = self.timers.t4();
        let tx = self.client.get_mut(&key)?;
        let udp = tx.peer.transport == Transport::Udp;
        if tx.state == State::Completed {
            // Retransmitted final: re-ACK a non-2xx INVITE answer.
            if let Some(ack) = &tx.ack {
                self.out.push_back(Transmit { peer: tx.peer, bytes: ack.clone() });
            }
            return None;
        }
        if resp.status < 200 {
            tx.state = State::Proceeding;
            if tx.invite {
                tx.retransmit_at = None; // Timer A stops (§17.1.1.2).
            } else if let Some(t) = tx.retransmit_at.as_mut() {
                tx.interval = t2;
                *t = now + t2;
            }
            self.reschedule(Side::Client, &key);
            return Some(key);
        }
        if tx.invite && resp.status < 300 {
            // 2xx: the TU ACKs; the transaction is over.
            self.remove(Side::Client, &key);
            return Some(key);
        }
        tx.state = State::Completed;
        tx.retransmit_at = None;
        tx.end_is_timeout = false;
        if tx.invite {
            if let Some(req) = &tx.request {
                let ack = ack_for_non_2xx(req, resp).to_bytes();
                self.out.push_back(Transmit { peer: tx.peer, bytes: ack.clone() });
                tx.ack = Some(ack);
            }
            tx.end_at = Some(now + if udp { Duration::from_secs(32) } else { Duration::ZERO });
        } else {
            tx.end_at = Some(now + if udp { t4 } else { Duration::ZERO });
        }
        self.reschedule(Side::Client, &key);
        Some(key)
    }

    /// The original request of a live client transaction (to CANCEL it or
    /// to resend it with credentials).
    pub fn client_request(&self, key: &TxKey) -> Option<&Request> {
        self.client.get(key).and_then(|t| t.request.as_ref())
    }

    /// Whether a client INVITE has had a provisional response (CANCEL allowed).
    pub fn client_proceeding(&self, key: &TxKey) -> bool {
        self.client.get(key).is_some_and(|t| t.state == State::Proceeding)
    }

    /// The connection to `peer` could not be opened or was lost (RFC 3261
    /// §17.1.4, §8.1.3.1): its client transactions still waiting for a
    /// final response end now, instead of at Timer B/F. Returns them.
    pub fn transport_failed(&mut self, peer: Peer) -> Vec<TxKey> {
        let keys: Vec<TxKey> = self
            .client
            .iter()
            .filter(|(_, t)| t.peer == peer && matches!(t.state, State::Calling | State::Proceeding))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &keys {
            self.remove(Side::Client, k);
        }
        keys
    }

    /// Fire the timers that are due: only those transactions are visited.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TxEvent> {
        let t2 = self.timers.t2();
        let mut events = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (side, key) = entry.remove();
            let server = side == Side::Server;
            let Some(tx) = self.map(side).get_mut(&key) else { continue };
            tx.queued = None;
            if tx.retransmit_at.is_some_and(|at| at <= now) {
                let resend = tx.last.clone().map(|bytes| Transmit { peer: tx.peer, bytes });
                // INVITE client doubles without cap (Timer A); others cap at T2.
                tx.interval = if tx.invite && !server { tx.interval * 2 } else { (tx.interval * 2).min(t2) };
                tx.retransmit_at = Some(now + tx.interval);
                self.out.extend(resend);
            }
            let Some(tx) = self.map(side).get(&key) else { continue };
            if tx.end_at.is_some_and(|end| end <= now) {
                if tx.end_is_timeout {
                    events.push(if server { TxEvent::ServerNoAck(key.clone()) } else { TxEvent::ClientTimeout(key.clone()) });
                }
                self.remove(side, &key);
            } else {
                self.reschedule(side, &key);
            }
        }
        events
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
}

/// ACK for a non-2xx final response (§17.1.1.3): same branch and
/// Request-URI, To from the response.
pub fn ack_for_non_2xx(req: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, req.uri.clone());
    let h = &req.headers;
    if let Some(v) = h.get("Via") {
        ack.headers.push("Via", v);
    }
    for r in h.get_all("Route") {
        ack.headers.push("Route", r);
    }
    ack.headers.push("Max-Forwards", "70");
    for name in ["From", "Call-ID"] {
        if let Some(v) = h.get(name) {
            ack.headers.push(name, v);
        }
    }
    if let Some(v) = resp.headers.get("To") {
        ack.headers.push("To", v);
    }
    let seq = h.get("CSeq").and_then(|c| CSeq::parse(c).ok()).map(|c| c.seq).unwrap_or(1);
    ack.headers.push("CSeq", format!("{seq} ACK"));
    ack
}

#[cfg(test)]
#[path = "transaction_tests.rs"]
mod tests;
