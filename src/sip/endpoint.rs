//! The SIP user agent core, sans-IO: one `Endpoint` per process.
//!
//! Input: `handle_input(now, wall, peer, bytes)` for every datagram/framed
//! message, `handle_timeout(now, wall)`, and commands (`ring`, `answer`,
//! `reject`, `hangup`, `dial`, `refer`). Output: `poll_transmit`,
//! `poll_event`, `poll_timeout`. `now` drives protocol timers; `wall` (Unix
//! seconds) is only for registrations and nonces, which outlive a process.
//!
//! Request handling order (each step may answer and stop): the source's
//! rate (dropped) → syntax (400, 505, 416) → Require (420) → strangers
//! (answered statelessly, see `answer_stranger`) → method (405/501) →
//! transaction caps (503) → transactions → dialogs → body type (415/406) →
//! who is calling (403/401) → what is called (404).
//! Responses always go back to the packet's source address and transport
//! (RFC 3581 behaviour for everyone): it works through NAT and never sends
//! traffic to addresses a message merely claims.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{SipConfig, Transport};
use super::dialog::{new_tag, response_for, Local};
use super::flood::RateLimiter;
use super::message::{self, Method, ParseError, Request, Response, SipMessage};
use super::registrar::Registrar;
use super::transaction::{Peer, ServerMatch, Transactions, Transmit, TxEvent, TxKey};
use super::validate::{self, Rejection, RequestInfo};
use super::{oc, overload};
use crate::media::sdp::Negotiated;

#[path = "endpoint_calls.rs"]
mod calls;
#[cfg(test)]
#[path = "dial_tests.rs"]
mod dial_tests;
#[cfg(test)]
#[path = "dialog_peer_tests.rs"]
mod dialog_peer_tests;
#[cfg(test)]
#[path = "flood_tests.rs"]
mod flood_tests;
#[path = "registration.rs"]
mod registration;
#[cfg(test)]
#[path = "registration_tests.rs"]
mod registration_tests;
pub use calls::{CallError, DialTarget};

#[cfg(test)]
impl Endpoint {
    /// The sans-IO tests' endpoint: `[sip]` as written in `toml`, an
    /// in-memory registrar, a fixed seed, UDP on 198.51.100.7:5060.
    pub(crate) fn for_test(toml: &str) -> Endpoint {
        let cfg: crate::sip::config::SipConfig = toml::from_str(toml).expect("test [sip] parses");
        let registrar = crate::sip::registrar::Registrar::new(&cfg, Box::new(crate::sip::registrar::MemoryStore::default()), "secret", 0)
            .expect("test registrar");
        let mut ep = Endpoint::new(cfg, registrar, 7);
        ep.set_local(Transport::Udp, "198.51.100.7:5060".parse().expect("literal address"));
        ep
    }
}
pub use registration::RegistrationStatus;

/// Methods we implement; listed in Allow.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, NOTIFY, REFER";

/// Server transactions kept only to absorb retransmissions, at most this
/// many times `max_transactions` (see `Endpoint::over_transaction_cap`).
const LINGER_FACTOR: usize = 8;

/// Local handle of one call (one dialog with one peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// Who an inbound call comes from, as far as policy is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallSource {
    Trunk(String),
    Extension(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    RemoteBye,
    LocalBye,
    /// Caller cancelled before answer.
    Cancelled,
    /// Our outbound call was refused with this final status.
    Rejected(u16),
    /// Outbound: nobody answered in time (we sent CANCEL).
    NoAnswer,
    /// Transport/transaction timeout, or our 2xx never got its ACK.
    Timeout,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EndpointEvent {
    /// A new inbound call; 100 Trying is sent. Follow with `ring`/`answer`/`reject`.
    Incoming {
        call: CallId,
        source: CallSource,
        /// Dialled user/number (Request-URI user part).
        callee: String,
        /// From URI.
        caller: String,
    },
    /// Outbound call: 180/183 received.
    Progress { call: CallId, code: u16 },
    /// Outbound call answered (ACK sent).
    Answered { call: CallId, media: Negotiated },
    /// Inbound call: the ACK for our 2xx arrived from the caller, who thus
    /// receives at the address it used. Only now does the application start.
    Confirmed { call: CallId },
    /// Media renegotiated (re-INVITE: hold, resume, codec change).
    MediaUpdate { call: CallId, media: Negotiated },
    /// DTMF received by SIP INFO.
    InfoDtmf { call: CallId, digit: char },
    /// Progress of a REFER we sent (sipfrag status from NOTIFY, or REFER's own failure).
    TransferStatus { call: CallId, code: u16 },
    /// The call is over; its `CallId` is forgotten.
    Ended { call: CallId, reason: EndReason },
    /// Our registration to a carrier trunk changed.
    Registration { trunk: String, status: RegistrationStatus },
}

pub struct Endpoint {
    cfg: SipConfig,
    registrar: Registrar,
    tx: Transactions,
    rng: StdRng,
    locals: HashMap<(Transport, bool), Local>,
    calls: HashMap<CallId, calls::Call>,
    /// (Call-ID, local tag) → call, for in-dialog requests.
    dialogs: HashMap<(String, String), CallId>,
    /// Calls we answer, by (Call-ID, the caller's From tag): a new INVITE
    /// that is one of them again is a retransmission.
    inbound: HashMap<(String, String), CallId>,
    /// Calls' timers, earliest first: an entry is queued for a call each
    /// time it may have changed (`touched`), and checked against the call
    /// when it comes due (a stale one is dropped or queued again). Finding
    /// the next timer never visits every call, so a flood of calls costs
    /// each event a logarithm, not a scan.
    call_timers: BinaryHeap<Reverse<(Instant, CallId)>>,
    /// Calls changed since their deadline was last queued.
    touched: Vec<CallId>,
    /// Client transaction → call it belongs to.
    client_tx: HashMap<TxKey, CallId>,
    next_call: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
    next_sweep: Option<Instant>,
    stats: EndpointStats,
    /// Our own registrations to carrier trunks, and their REGISTER transactions.
    registrations: Vec<registration::Registration>,
    reg_tx: HashMap<TxKey, usize>,
    limiter: RateLimiter,
    /// RFC 7339: how much of their new traffic clients that ask should hold back.
    oc: oc::LossControl,
    /// The time of the input or timer being handled (`handle_*`).
    clock: Option<(Instant, u64)>,
}

/// Counters for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    pub requests: u64,
    pub responses: u64,
    pub unparsable: u64,
    pub rejected: u64,
    /// In-dialog requests (and CANCELs) refused because they came from
    /// outside the dialog.
    pub strangers: u64,
    /// Messages dropped unread: their source was over its rate.
    pub rate_dropped: u64,
    /// Requests from outsiders (neither trunk nor registered phone),
    /// answered statelessly (or ignored).
    pub outsiders: u64,
    /// Requests refused with 503: too many transactions.
    pub overloaded: u64,
}

impl Endpoint {
    /// `seed` feeds tags, branches and SDP ids (fixed in tests).
    pub fn new(mut cfg: SipConfig, registrar: Registrar, seed: u64) -> Self {
        cfg.resolve_literals();
        let mut rng = StdRng::seed_from_u64(seed);
        let registrations = registration::Registration::for_trunks(&cfg.trunks, &mut rng);
        Endpoint {
            limiter: RateLimiter::new(&cfg.limits),
            registrations,
            reg_tx: HashMap::new(),
            tx: Transactions::new(cfg.timers.clone()),
            cfg,
            registrar,
            rng,
            locals: HashMap::new(),
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            inbound: HashMap::new(),
            call_timers: BinaryHeap::new(),
            touched: Vec::new(),
            client_tx: HashMap::new(),
            next_call: 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_sweep: None,
            stats: EndpointStats::default(),
            oc: oc::LossControl::default(),
            clock: None,
        }
    }

    /// Tell the core which local address serves a transport and family.
    /// Wildcard IPs are replaced by `advertised_ip`, else loopback.
    pub fn set_local(&mut self, transport: Transport, addr: SocketAddr) {
        let mut addr = addr;
        if addr.ip().is_unspecified() {
            let ip = self.cfg.advertised_ip.unwrap_or(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
            addr.set_ip(ip);
        }
        self.locals.insert((transport, addr.is_ipv6()), Local { addr });
    }

    /// New addresses for a trunk's proxy (what DNS answered for its name).
    pub fn set_trunk_addrs(&mut self, trunk: &str, addrs: Vec<SocketAddr>) {
        if let Some(t) = self.cfg.trunks.iter_mut().find(|t| t.name == trunk) {
            t.proxy_addrs = addrs;
        }
    }

    pub fn config(&self) -> &SipConfig {
        &self.cfg
    }

    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Live (server, client) transactions.
    pub fn transaction_counts(&self) -> (usize, usize) {
        self.tx.len()
    }

    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Our IP for one address family (for RTP sockets and SDP).
    pub fn local_ip(&self, v6: bool) -> std::net::IpAddr {
        let peer = Peer {
            transport: Transport::Udp,
            addr: if v6 {
                SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), 0)
            } else {
                SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), 0)
            },
        };
        self.local_for(peer).addr.ip()
    }

    /// The signalling peer of a call.
    pub fn call_peer(&self, id: CallId) -> Option<Peer> {
        self.calls.get(&id).map(|c| c.dialog.peer)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front().or_else(|| self.tx.poll_transmit())
    }

    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let queued = self.call_timers.peek().map(|Reverse((at, _))| *at);
        let fresh = self.touched.iter().filter_map(|id| self.calls.get(id).and_then(calls::Call::deadline)).min();
        let calls = [queued, fresh].into_iter().flatten().min();
        let regs = self.registrations.iter().filter_map(|r| r.deadline()).min();
        [self.tx.poll_timeout(), calls, regs, self.next_sweep].into_iter().flatten().min()
    }

    /// Our address for talking to `peer`.
    fn local_for(&self, peer: Peer) -> Local {
        let v6 = peer.addr.is_ipv6();
        self.locals.get(&(peer.transport, v6)).or_else(|| self.locals.get(&(Transport::Udp, v6))).copied().unwrap_or(Local {
            addr: SocketAddr::new(if v6 { std::net::Ipv6Addr::LOCALHOST.into() } else { std::net::Ipv4Addr::LOCALHOST.into() }, 5060),
        })
    }

    /// Feed one received datagram (UDP) or one framed message (TCP).
    pub fn handle_input(&mut self, now: Instant, wall: u64, peer: Peer, bytes: &[u8]) {
        self.clock = Some((now, wall));
        // Before any parsing: a source over its rate costs one table
        // lookup. Trunks are exempt (a carrier's burst is our callers).
        let trunk = self.cfg.trunk_for_source(peer.addr.ip()).is_some();
        if !trunk && !self.limiter.admit(now, peer.addr.ip()) {
            self.stats.rate_dropped += 1;
            return;
        }
        let datagram = peer.transport == Transport::Udp;
        let known = trunk || self.registrar.is_registered_source(peer.addr, wall).is_some();
        if known && self.calls.len() >= self.cfg.limits.max_calls && self.refuse_new_call_unread(now, wall, peer, bytes) {
            return;
        }
        match message::parse(bytes, datagram) {
            Ok(SipMessage::Request(req)) => {
                self.stats.requests += 1;
                self.handle_request(now, wall, peer, req, trunk, known);
            }
            Ok(SipMessage::Response(resp)) => {
                self.stats.responses += 1;
                self.handle_response(now, wall, resp);
            }
            Err(ParseError::KeepAlive) => {}
            Err(ParseError::Malformed { partial: Some(req), .. }) => {
                self.stats.unparsable += 1;
                // Never answer an ACK (§17.2.1): there is nothing to answer.
                if req.method != Method::Ack {
                    self.reply_stateless(&req, peer, Rejection::new(400, "Malformed message"), known);
                }
            }
            Err(_) => self.stats.unparsable += 1,
        }
        self.queue_call_timers();
    }

    /// Past `max_calls`, a new INVITE from a trunk or phone is refused
    /// with a stateless 503 read from its raw header lines (`overload`),
    /// unless it repeats a call we took. False when it is not one we can
    /// read that way: the full path then decides, as for any message.
    fn refuse_new_call_unread(&mut self, now: Instant, wall: u64, peer: Peer, bytes: &[u8]) -> bool {
        let Some(inv) = overload::NewInvite::scan(bytes) else { return false };
        let (Ok(call_id), Ok(from_tag)) = (std::str::from_utf8(inv.call_id()), std::str::from_utf8(inv.from_tag().unwrap_or_default()))
        else {
            return false;
        };
        if self.inbound.contains_key(&(call_id.to_string(), from_tag.to_string())) {
            return false;
        }
        self.stats.overloaded += 1;
        self.stats.rejected += 1;
        self.oc.handle_new_call(now, wall, true);
        let tag = overload::refusal_tag(self.rng.gen());
        let told = oc::asks(inv.top_via()).then(|| self.oc.via_params(now, wall));
        let bytes = inv.refusal(&tag, self.cfg.limits.retry_after_s, &self.cfg.user_agent, told.as_deref());
        self.out.push_back(Transmit { peer, bytes });
        true
    }

    /// A trunk's new INVITE that waited behind too many others: refused
    /// at once with the stateless 503 of a full server, whatever the
    /// lines in use, unless it repeats a call we took or cannot be read
    /// that way (then it goes the full way, as any message).
    pub fn handle_new_call_late(&mut self, now: Instant, wall: u64, peer: Peer, bytes: &[u8]) {
        self.clock = Some((now, wall));
        if !self.refuse_new_call_unread(now, wall, peer, bytes) {
            self.handle_input(now, wall, peer, bytes);
        }
    }

    /// `count` new INVITEs from trunks were shed unread (the driver's queue
    /// was full): refusals for RFC 7339's controller, which otherwise
    /// never sees them.
    pub fn handle_shed(&mut self, now: Instant, wall: u64, count: u64) {
        self.oc.handle_refused(now, wall, count);
    }

    /// A TCP/TLS connection to `peer` failed (refused, a certificate that
    /// did not verify, reset): what was waiting on it fails at once, as a
    /// timeout would (RFC 3261 §8.1.3.1), so a call is not left ringing
    /// into nothing for 32 s.
    pub fn handle_transport_error(&mut self, now: Instant, peer: Peer) {
        for key in self.tx.transport_failed(peer) {
            if let Some(call) = self.client_tx.remove(&key) {
                self.on_client_timeout(now, call, &key);
            } else if let Some(i) = self.reg_tx.remove(&key) {
                self.on_register_timeout(now, i);
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, wall: u64) {
        self.clock = Some((now, wall));
        for ev in self.tx.handle_timeout(now) {
            match ev {
                TxEvent::ClientTimeout(key) => {
                    if let Some(call) = self.client_tx.remove(&key) {
                        self.on_client_timeout(now, call, &key);
                    } else if let Some(i) = self.reg_tx.remove(&key) {
                        self.on_register_timeout(now, i);
                    }
                }
                TxEvent::ServerNoAck(_) => {}
            }
        }
        self.queue_call_timers();
        for id in self.due_calls(now) {
            self.on_call_timer(now, id);
        }
        self.queue_call_timers();
        self.drive_registrations(now);
        if self.next_sweep.is_none_or(|t| t <= now) {
            self.registrar.expire(wall);
            self.next_sweep = Some(now + Duration::from_secs(30));
        }
    }

    /// `trunk`: the source is a trunk's; `known`: a trunk's or a
    /// registered phone's.
    fn handle_request(&mut self, now: Instant, wall: u64, peer: Peer, req: Request, trunk: bool, known: bool) {
        let info = match validate::check_request(&req) {
            Ok(i) => i,
            Err(rej) => {
                if req.method != Method::Ack {
                    self.reply_stateless(&req, peer, rej, known);
                }
                return;
            }
        };
        if let Err(rej) = validate::check_extensions(&req) {
            return self.reply_stateless(&req, peer, rej, known);
        }
        // The peer of one of our calls (e.g. a staff URI we dialled) is no
        // stranger inside that call.
        let in_call = info.to.tag().is_some_and(|t| self.dialogs.contains_key(&(info.call_id.clone(), t.to_string())));
        if !known && !in_call {
            return self.answer_stranger(wall, peer, &req, &info);
        }
        let Some(top) = info.vias.first() else {
            return;
        };
        let key = TxKey::for_request(&req, top, &info.call_id, &info.cseq, info.from.tag());
        match &req.method {
            Method::Other(_) => return self.reply_stateless(&req, peer, Rejection::new(501, "Not Implemented"), true),
            Method::Subscribe | Method::Message | Method::Update | Method::Prack | Method::Publish => {
                let mut r = Rejection::new(405, "Method Not Allowed");
                r.extra.push(("Allow", ALLOW.into()));
                return self.reply_stateless(&req, peer, r, true);
            }
            _ => {}
        }
        // Requests inside a dialog (a To tag) and CANCELs end or steer calls
        // we already carry: refusing a BYE would keep its call, and its
        // ports, alive. They are answered at once, so they add no work
        // in progress; only requests that would start something are refused.
        let starts_something = info.to.tag().is_none() && !matches!(req.method, Method::Ack | Method::Cancel);
        // A new call beyond `max_calls` (not a retransmission of one we
        // took) is refused the same cheap way, before any state.
        let fresh = !self.tx.server_exists(&key);
        let offered = fresh && req.method == Method::Invite && info.to.tag().is_none();
        let new_call = offered && self.calls.len() >= self.cfg.limits.max_calls;
        if starts_something && fresh && (new_call || self.over_transaction_cap(peer, trunk)) {
            // Cheap and stateless; Retry-After asks a well-behaved peer to
            // come back later (RFC 3261 §21.5.4).
            if offered {
                self.oc.handle_new_call(now, wall, true);
            }
            self.stats.overloaded += 1;
            let mut r = Rejection::new(503, "Service Unavailable");
            r.extra.push(("Retry-After", self.cfg.limits.retry_after_s.to_string()));
            return self.reply_stateless(&req, peer, r, true);
        }
        if offered {
            self.oc.handle_new_call(now, wall, false);
        }
        // In-dialog requests are never refused, but the transactions they
        // leave behind to absorb retransmissions are bounded all the same:
        // past the cap the oldest answered one goes.
        let (server, _) = self.tx.len();
        if server >= self.cfg.limits.max_transactions.saturating_mul(LINGER_FACTOR) && fresh {
            self.tx.evict_lingering();
        }
        if self.tx.server_receive(now, &key, &req, peer) == ServerMatch::Absorbed {
            return;
        }
        let ctx = Ctx { key, peer, info };
        match req.method {
            Method::Options => {
                let mut resp = self.response(&req, &ctx, 200);
                resp.headers.push("Allow", ALLOW);
                resp.headers.push("Accept", "application/sdp");
                resp.headers.push("Supported", "norefersub");
                self.send_response(now, &ctx, resp);
            }
            Method::Register => {
                let out = self.registrar.handle_register(wall, &req, &ctx.info, peer.addr, peer.transport);
                let mut resp = self.response(&req, &ctx, out.code);
                for (n, v) in out.headers {
                    resp.headers.push(n, v);
                }
                self.send_response(now, &ctx, resp);
            }
            Method::Ack => self.on_ack(now, wall, &req, &ctx),
            Method::Cancel => self.on_cancel(now, wall, &req, &ctx),
            Method::Invite => self.on_invite(now, wall, req, ctx),
            Method::Bye | Method::Info | Method::Notify | Method::Refer => self.on_in_dialog(now, wall, &req, &ctx),
            Method::Subscribe | Method::Message | Method::Update | Method::Prack | Method::Publish | Method::Other(_) => {}
        }
    }

    /// Response with a To tag: the dialog's if there is one, else fresh.
    fn response(&mut self, req: &Request, ctx: &Ctx, code: u16) -> Response {
        let tag = ctx.info.to.tag().map(str::to_string).unwrap_or_else(|| new_tag(&mut self.rng));
        let mut r = response_for(req, code, Some(&tag));
        self.push_agent(&mut r.headers, "Server");
        r
    }

    /// `Server` or `User-Agent`, unless configured empty.
    fn push_agent(&self, headers: &mut message::Headers, name: &'static str) {
        if !self.cfg.user_agent.is_empty() {
            headers.push(name, self.cfg.user_agent.clone());
        }
    }

    /// Whether a new server transaction must be refused. The cap counts
    /// the work in progress (requests not yet answered finally): a
    /// transaction that answered and only lingers to absorb retransmissions
    /// (32 s over UDP) costs memory, not work, and at a trunk's steady rate
    /// would otherwise fill the cap and refuse every call for half a
    /// minute. Lingering ones are bounded apart, at [`LINGER_FACTOR`] times
    /// the cap, the one closest to its end given up first when full.
    fn over_transaction_cap(&mut self, peer: Peer, trunk: bool) -> bool {
        let l = &self.cfg.limits;
        let (max, per_source) = (l.max_transactions, l.max_transactions_per_source);
        if self.tx.server_pending() >= max {
            return true;
        }
        // A trunk carries every caller, so only the totals apply to it.
        if !trunk && self.tx.server_count_from(peer.addr.ip()) >= per_source {
            return true;
        }
        let (server, _) = self.tx.len();
        server >= max.saturating_mul(LINGER_FACTOR) && !self.tx.evict_lingering()
    }

    /// A request from neither a trunk nor a registered phone, outside our
    /// calls: answered once as a stateless UAS (RFC 3261 §8.2.7), so it
    /// costs no transaction, is never retransmitted (a 403 kept in an
    /// INVITE transaction went out 11 times, Timer G, to a flood that
    /// never ACKed), and carries no `Server` or `Allow` to fingerprint us.
    /// REGISTER still reaches the registrar: a phone's first REGISTER is
    /// how it stops being a stranger (its 401 is the §8.2.7 use case).
    fn answer_stranger(&mut self, wall: u64, peer: Peer, req: &Request, info: &RequestInfo) {
        self.stats.outsiders += 1;
        let (code, extra) = match req.method {
            // §8.2.7: a stateless UAS ignores ACK and CANCEL.
            Method::Ack | Method::Cancel => return,
            Method::Register => {
                let out = self.registrar.handle_register(wall, req, info, peer.addr, peer.transport);
                (out.code, out.headers)
            }
            // Enough for a NAT keep-alive; what we support is not told.
            Method::Options => (200, Vec::new()),
            _ => (403, Vec::new()),
        };
        let tag = stateless_tag(req, info);
        let mut resp = response_for(req, code, Some(&tag));
        for (n, v) in extra {
            resp.headers.push(n, v);
        }
        self.out.push_back(Transmit { peer, bytes: resp.to_bytes() });
    }

    fn send_response(&mut self, now: Instant, ctx: &Ctx, resp: Response) {
        self.respond(now, &ctx.key, resp, ctx.peer);
    }

    /// Every response of a server transaction goes out here.
    fn respond(&mut self, now: Instant, key: &TxKey, mut resp: Response, peer: Peer) {
        self.feedback(&mut resp.headers);
        self.tx.server_respond(now, key, &resp, peer);
    }

    /// RFC 7339: a response to a client whose top Via asked for overload
    /// control tells it, in that Via, how much new traffic to hold back.
    fn feedback(&mut self, headers: &mut message::Headers) {
        let Some((now, wall)) = self.clock else { return };
        let Some(via) = headers.0.iter_mut().find(|h| h.name.eq_ignore_ascii_case("Via")) else { return };
        if oc::asks(via.value.as_bytes()) {
            via.value = oc::with_params(&via.value, &self.oc.via_params(now, wall));
        }
    }

    /// Answer without a transaction (errors found before matching one).
    /// Strangers (`known` false) get no `Server` header.
    fn reply_stateless(&mut self, req: &Request, peer: Peer, rej: Rejection, known: bool) {
        // Without a Via there is no way to form a response (§8.2.6.2).
        if req.headers.get("Via").is_none() {
            return;
        }
        self.stats.rejected += 1;
        let tag = overload::refusal_tag(self.rng.gen());
        let mut resp = response_for(req, rej.code, Some(&tag));
        if rej.code == 400 || rej.code == 505 {
            resp.reason = format!("{} ({})", resp.reason, rej.why.replace(['\r', '\n'], " "));
        }
        for (n, v) in rej.extra {
            resp.headers.push(n, v);
        }
        if known {
            self.push_agent(&mut resp.headers, "Server");
            self.feedback(&mut resp.headers);
        }
        self.out.push_back(Transmit { peer, bytes: resp.to_bytes() });
    }

    fn handle_response(&mut self, now: Instant, wall: u64, resp: Response) {
        let Some(via) = resp.headers.get("Via") else { return };
        let Ok(vias) = super::headers::Via::parse_all(via) else { return };
        let Some(branch) = vias.first().and_then(|v| v.branch()).map(str::to_string) else {
            return;
        };
        let Some(cseq) = resp.headers.get("CSeq").and_then(|c| super::headers::CSeq::parse(c).ok()) else {
            return;
        };
        match self.tx.client_receive(now, &resp, &branch, &cseq.method) {
            Some(key) if self.reg_tx.contains_key(&key) => {
                if resp.status >= 200 {
                    let i = self.reg_tx[&key];
                    self.on_register_response(now, i, &resp);
                }
            }
            Some(key) => {
                let call = if resp.status >= 200 { self.client_tx.remove(&key) } else { self.client_tx.get(&key).copied() };
                if let Some(call) = call {
                    self.on_call_response(now, wall, call, &key, &cseq, resp);
                }
            }
            // A 2xx retransmission for an INVITE whose transaction ended:
            // the dialog re-ACKs it (§13.2.2.4).
            None if cseq.method == "INVITE" && (200..300).contains(&resp.status) => {
                self.on_2xx_retransmission(now, &resp, &cseq);
            }
            None => {}
        }
    }
}

/// The same To tag for the same request, with nothing stored (RFC 3261
/// §8.2.7: a stateless UAS derives it from the request, so a
/// retransmission is answered identically).
fn stateless_tag(req: &Request, info: &RequestInfo) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    info.call_id.hash(&mut h);
    info.from.tag().hash(&mut h);
    info.cseq.seq.hash(&mut h);
    req.headers.get("Via").hash(&mut h);
    overload::refusal_tag(h.finish())
}

/// Per-request context passed to handlers.
struct Ctx {
    key: TxKey,
    peer: Peer,
    info: RequestInfo,
}
