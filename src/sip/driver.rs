//! Tokio driver for the sans-IO [`Endpoint`]: owns the SIP sockets (UDP,
//! TCP and TLS, IPv4 and IPv6), the clock, and the table of per-call tasks.
//!
//! One task, one loop over one closed [`DriverEvent`] enum. Socket readers
//! and TCP connections are small tasks that only frame bytes and forward
//! them; everything stateful happens in the loop.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::config::{self, SipConfig, Transport};
use super::endpoint::{CallError, CallId, CallSource, DialTarget, Endpoint, EndpointEvent, RegistrationStatus};
use super::message::MAX_MESSAGE_LEN;
use super::overload;
use super::registrar::{BindingStore, JsonFileStore, MemoryStore, Registrar, StoreError};
use super::transaction::{Peer, Transmit};
use crate::call::{self, CallHandle, CallSignal};
use crate::media::rtp_session::SourcePolicy;

#[path = "driver_tcp.rs"]
mod tcp;
#[path = "driver_udp.rs"]
pub(crate) mod udp;

#[derive(Debug, Error)]
pub enum DriverError {
    #[error("binding {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid configuration: {0:?}")]
    Config(Vec<(String, String)>),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("trunk {0}: TLS: {1}")]
    TrunkTls(String, crate::tls::TlsError),
}

/// An inbound call handed to the application (already answered).
pub struct IncomingCall {
    pub source: CallSource,
    pub callee: String,
    pub caller: String,
    pub handle: CallHandle,
}

/// Requests from the application or call tasks to the SIP task.
#[derive(Debug)]
pub enum SipCommand {
    Hangup(CallId),
    Refer(CallId, String),
    Dial { target: DialTarget, headers: Vec<(String, String)>, reply: oneshot::Sender<Result<CallHandle, CallError>> },
}

/// Cheap handle for placing calls.
#[derive(Clone)]
pub struct SipHandle {
    tx: mpsc::Sender<SipCommand>,
}

impl SipHandle {
    pub async fn dial(&self, target: DialTarget) -> Result<CallHandle, CallError> {
        self.dial_with_headers(target, Vec::new()).await
    }

    /// Dial with extra INVITE headers (see `Endpoint::dial_with_headers`).
    pub async fn dial_with_headers(&self, target: DialTarget, headers: Vec<(String, String)>) -> Result<CallHandle, CallError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(SipCommand::Dial { target, headers, reply }).await.map_err(|_| CallError::NoSuchCall)?;
        rx.await.map_err(|_| CallError::NoSuchCall)?
    }
}

enum DriverEvent {
    Datagram(Peer, Vec<u8>),
    /// A datagram from a trunk that starts a call (a new INVITE), taken
    /// after everything else that is waiting.
    NewCall(QueuedCall),
    /// A TCP or TLS connection is up; what goes to this peer is written on it.
    StreamOpened(Peer, mpsc::Sender<Vec<u8>>),
    StreamClosed(Peer),
    Command(SipCommand),
    /// What DNS answered for a trunk's proxy name.
    Resolved(String, Vec<SocketAddr>),
    Timer,
}

/// Bound sockets, ready to run (bind first so tests can use port 0).
pub struct SipServer {
    endpoint: Endpoint,
    cfg: SipConfig,
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    tls: Vec<TcpListener>,
    tls_acceptor: Option<TlsAcceptor>,
    tls_clients: TlsClients,
    pub local_addrs: Vec<(Transport, SocketAddr)>,
    cmd_tx: mpsc::Sender<SipCommand>,
    cmd_rx: mpsc::Receiver<SipCommand>,
}

pub fn wall_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl SipServer {
    pub async fn bind(mut cfg: SipConfig) -> Result<SipServer, DriverError> {
        cfg.validate().map_err(DriverError::Config)?;
        // Trunks known by name: resolve once now so the first call can go
        // out; `run` keeps them fresh. A failure is logged, not fatal (the
        // carrier's DNS may be back by the time a call is placed).
        for t in cfg.trunks.iter_mut() {
            if let Some(hp) = t.proxy.clone().filter(|p| p.literal().is_none()) {
                t.proxy_addrs = lookup(&hp.host, hp.port).await;
                if t.proxy_addrs.is_empty() {
                    tracing::warn!(trunk = %t.name, host = %hp.host, "trunk proxy name does not resolve yet");
                }
            }
        }
        let store: Box<dyn BindingStore> = match &cfg.bindings_file {
            Some(p) => Box::new(JsonFileStore { path: p.clone() }),
            None => Box::new(MemoryStore::default()),
        };
        let secret = if cfg.nonce_secret.is_empty() { format!("{:032x}", rand::random::<u128>()) } else { cfg.nonce_secret.clone() };
        let registrar = Registrar::new(&cfg, store, &secret, wall_now())?;
        let mut endpoint = Endpoint::new(cfg.clone(), registrar, rand::random());
        let (mut udp, mut tcp, mut tls, mut local_addrs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Our certificate, and the carriers' trust settings, are read now:
        // a missing file is a start-up error, not a failed call later.
        let tls_acceptor = match &cfg.tls {
            Some(t) => Some(TlsAcceptor::from(crate::tls::server_config(crate::tls::ReloadingCert::new(t.files())?, &[])?)),
            None => None,
        };
        let tls_clients = TlsClients::new(&cfg)?;
        for l in &cfg.listen {
            let addr = match l.transport {
                Transport::Udp => {
                    let s = bind_udp(l.addr).map_err(|e| DriverError::Bind(l.addr, e))?;
                    large_buffers(&s);
                    // New calls' patience counts from the kernel's arrival
                    // stamp; without one, from when they are read.
                    if let Err(e) = udp::stamp_arrivals(&s) {
                        tracing::debug!(error = %e, "no arrival stamps on the SIP socket");
                    }
                    let a = s.local_addr().map_err(|e| DriverError::Bind(l.addr, e))?;
                    udp.push(Arc::new(s));
                    a
                }
                Transport::Tcp | Transport::Tls => {
                    let s = bind_tcp(l.addr).map_err(|e| DriverError::Bind(l.addr, e))?;
                    let a = s.local_addr().map_err(|e| DriverError::Bind(l.addr, e))?;
                    if l.transport == Transport::Tls {
                        tls.push(s)
                    } else {
                        tcp.push(s)
                    }
                    a
                }
            };
            endpoint.set_local(l.transport, addr);
            local_addrs.push((l.transport, addr));
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        Ok(SipServer { endpoint, cfg, udp, tcp, tls, tls_acceptor, tls_clients, local_addrs, cmd_tx, cmd_rx })
    }

    pub fn handle(&self) -> SipHandle {
        SipHandle { tx: self.cmd_tx.clone() }
    }

    /// Run until `shutdown` fires; new inbound calls go to `incoming`.
    pub async fn run(self, incoming: mpsc::Sender<IncomingCall>, mut shutdown: oneshot::Receiver<()>) {
        let (net_tx, mut net_rx) = mpsc::channel::<DriverEvent>(1024);
        let (call_tx, mut call_rx) = mpsc::channel::<QueuedCall>(NEW_CALL_QUEUE);
        let carriers = Arc::new(RwLock::new(self.cfg.trunks.clone()));
        let shed = Arc::new(AtomicU64::new(0));
        for s in &self.udp {
            let queues = Queues { net: net_tx.clone(), new_calls: call_tx.clone(), carriers: carriers.clone(), shed: shed.clone() };
            tokio::spawn(udp_reader(s.clone(), queues));
        }
        drop(call_tx);
        let tcp_guard = tcp::TcpGuard::new(&self.cfg);
        for l in self.tcp {
            tokio::spawn(tcp::acceptor(l, net_tx.clone(), tcp_guard.clone(), None));
        }
        for l in self.tls {
            tokio::spawn(tcp::acceptor(l, net_tx.clone(), tcp_guard.clone(), self.tls_acceptor.clone()));
        }
        for t in &self.cfg.trunks {
            if let Some(hp) = t.proxy.clone().filter(|p| p.literal().is_none()) {
                tokio::spawn(refresh_dns(t.name.clone(), hp.host, hp.port, net_tx.clone()));
            }
        }
        let SipServer { mut endpoint, cfg, udp, cmd_tx, mut cmd_rx, tls_clients, .. } = self;
        let mut st = State {
            // Each socket's family, read once: not a system call per message.
            udp: udp.into_iter().map(|s| (s.local_addr().is_ok_and(|a| a.is_ipv6()), s)).collect(),
            udp_out4: Vec::new(),
            udp_out6: Vec::new(),
            streams: HashMap::new(),
            tls_clients,
            calls: HashMap::new(),
            unconfirmed: HashMap::new(),
            rng: StdRng::from_entropy(),
            cfg,
            cmd_tx,
            net_tx: net_tx.clone(),
            incoming,
            carriers,
        };
        // Registrations to carriers go out at once.
        endpoint.handle_timeout(Instant::now(), wall_now());
        st.flush(&mut endpoint, Instant::now()).await;
        loop {
            let deadline = endpoint.poll_timeout();
            // What steers the calls we carry (ACKs, BYEs, responses, other
            // requests), commands and timers come before new calls: a BYE
            // stuck behind a thousand INVITEs keeps its call alive, the
            // call limit fills, and every call is refused.
            let ev = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(ev) = net_rx.recv() => ev,
                Some(c) = cmd_rx.recv() => DriverEvent::Command(c),
                _ = sleep_until(deadline) => DriverEvent::Timer,
                Some(c) = call_rx.recv() => DriverEvent::NewCall(c),
            };
            let now = Instant::now();
            let wall = wall_now();
            // New calls shed unread are refusals too, for RFC 7339.
            let dropped = shed.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                endpoint.handle_shed(now, wall, dropped);
            }
            match ev {
                DriverEvent::Datagram(peer, bytes) => {
                    endpoint.handle_input(now, wall, peer, &bytes);
                    let mut taken = 1;
                    for _ in 1..DATAGRAM_BATCH {
                        match net_rx.try_recv() {
                            Ok(DriverEvent::Datagram(p, b)) => {
                                endpoint.handle_input(now, wall, p, &b);
                                taken += 1;
                            }
                            Ok(other) => {
                                st.event(&mut endpoint, now, wall, other).await;
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    // New calls get a turn after every batch, or under a
                    // steady stream of other traffic their queue fills and
                    // they are shed though the lines are free. Each call
                    // carried brings about two more datagrams (ACK, BYE):
                    // new calls get half the batch's size, so that they
                    // keep pace with the calls that end.
                    take_new_calls(&mut endpoint, &mut call_rx, now, wall, NEW_CALL_BATCH.max(taken / 2));
                }
                DriverEvent::NewCall(c) => {
                    let taken = usize::from(take_new_call(&mut endpoint, now, wall, c));
                    take_new_calls(&mut endpoint, &mut call_rx, now, wall, NEW_CALL_BATCH - taken);
                }
                ev => st.event(&mut endpoint, now, wall, ev).await,
            }
            st.flush(&mut endpoint, now).await;
        }
    }
}

/// How we connect out over TLS: each TLS trunk with its own trust settings
/// (CA, pin, client certificate) and the name its certificate must carry;
/// anyone else (a `sips:` URI) against the system's roots.
struct TlsClients {
    trunks: Vec<TrunkTls>,
    default: Option<Arc<rustls::ClientConfig>>,
}

struct TrunkTls {
    name: String,
    addrs: Vec<SocketAddr>,
    server_name: Option<String>,
    config: Arc<rustls::ClientConfig>,
}

impl TlsClients {
    fn new(cfg: &SipConfig) -> Result<TlsClients, DriverError> {
        let mut trunks = Vec::new();
        for t in cfg.trunks.iter().filter(|t| t.transport == Some(Transport::Tls)) {
            let config = crate::tls::client_config(&t.peer_trust()).map_err(|e| DriverError::TrunkTls(t.name.clone(), e))?;
            let mut addrs = t.proxy_addrs.clone();
            addrs.extend(t.proxy.as_ref().and_then(|p| p.literal()));
            trunks.push(TrunkTls { name: t.name.clone(), addrs, server_name: t.tls_name(), config });
        }
        // Phones and URIs: `[sip.tls] ca`, else the system's roots. Without
        // either, only trunks with their own CA or pin can be reached.
        let ca = cfg.tls.as_ref().and_then(|t| t.ca.clone());
        let default = match ca {
            Some(ca) => Some(crate::tls::client_config(&crate::tls::PeerTrust { ca: Some(ca), ..Default::default() })?),
            None => crate::tls::client_config(&crate::tls::PeerTrust::default()).ok(),
        };
        Ok(TlsClients { trunks, default })
    }

    fn resolved(&mut self, trunk: &str, addrs: &[SocketAddr]) {
        if let Some(t) = self.trunks.iter_mut().find(|t| t.name == trunk) {
            t.addrs = addrs.to_vec();
        }
    }

    /// Configuration and name for connecting to `addr`.
    fn for_addr(&self, addr: SocketAddr) -> Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)> {
        match self.trunks.iter().find(|t| t.addrs.contains(&addr)) {
            Some(t) => {
                let name = t.server_name.as_deref().and_then(crate::tls::server_name).unwrap_or_else(|| addr.ip().into());
                Some((t.config.clone(), name))
            }
            None => self.default.clone().map(|c| (c, addr.ip().into())),
        }
    }
}

struct State {
    /// The UDP sockets, each with whether it is IPv6.
    udp: Vec<(bool, Arc<UdpSocket>)>,
    /// UDP datagrams of this turn not sent yet, to IPv4 and IPv6 peers.
    udp_out4: Vec<(SocketAddr, Vec<u8>)>,
    udp_out6: Vec<(SocketAddr, Vec<u8>)>,
    /// Open TCP and TLS connections, by peer: replies and requests to a
    /// registered phone go back on the connection it registered over
    /// (RFC 5923 §4-style reuse; it is behind NAT and cannot be reached otherwise).
    streams: HashMap<Peer, mpsc::Sender<Vec<u8>>>,
    tls_clients: TlsClients,
    calls: HashMap<CallId, mpsc::UnboundedSender<CallSignal>>,
    /// Answered inbound calls waiting for their ACK (bounded by the
    /// endpoint's transaction caps; Timer H ends those never ACKed).
    unconfirmed: HashMap<CallId, IncomingCall>,
    /// Picks RTP ports; seeded from the OS so they cannot be predicted.
    rng: StdRng,
    cfg: SipConfig,
    cmd_tx: mpsc::Sender<SipCommand>,
    net_tx: mpsc::Sender<DriverEvent>,
    incoming: mpsc::Sender<IncomingCall>,
    /// The trunks as the UDP readers see them (addresses kept fresh).
    carriers: Arc<RwLock<Vec<config::Trunk>>>,
}

impl State {
    /// One event other than a batch of datagrams.
    async fn event(&mut self, endpoint: &mut Endpoint, now: Instant, wall: u64, ev: DriverEvent) {
        match ev {
            DriverEvent::Datagram(peer, bytes) => endpoint.handle_input(now, wall, peer, &bytes),
            DriverEvent::NewCall(c) => {
                take_new_call(endpoint, now, wall, c);
            }
            DriverEvent::StreamOpened(peer, w) => {
                self.streams.insert(peer, w);
            }
            DriverEvent::StreamClosed(peer) => {
                self.streams.remove(&peer);
                endpoint.handle_transport_error(now, peer);
            }
            DriverEvent::Timer => endpoint.handle_timeout(now, wall),
            DriverEvent::Resolved(trunk, addrs) => {
                self.tls_clients.resolved(&trunk, &addrs);
                if let Some(t) = self.carriers.write().unwrap_or_else(|e| e.into_inner()).iter_mut().find(|t| t.name == trunk) {
                    t.proxy_addrs = addrs.clone();
                }
                endpoint.set_trunk_addrs(&trunk, addrs);
            }
            DriverEvent::Command(c) => self.command(endpoint, now, wall, c).await,
        }
    }

    async fn command(&mut self, ep: &mut Endpoint, now: Instant, wall: u64, c: SipCommand) {
        match c {
            SipCommand::Hangup(id) => {
                let _ = ep.hangup(now, id);
            }
            SipCommand::Refer(id, target) => {
                if ep.refer(now, id, &target).is_err() {
                    self.signal(id, CallSignal::TransferStatus(400));
                }
            }
            SipCommand::Dial { target, headers, reply } => {
                let v6 = match &target {
                    DialTarget::Uri(u) => u.contains('['),
                    _ => false,
                };
                let Some((sock, rtp)) = self.bind_rtp(ep, v6) else {
                    let _ = reply.send(Err(CallError::NoTrunk));
                    return;
                };
                match ep.dial_with_headers(now, wall, target, rtp, &headers) {
                    Ok(id) => {
                        let (handle, sig) = call::spawn(id, sock, None, &self.cfg, media_source(ep, id), self.cmd_tx.clone());
                        self.calls.insert(id, sig);
                        let _ = reply.send(Ok(handle));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
        }
    }

    fn signal(&mut self, id: CallId, s: CallSignal) {
        if let Some(tx) = self.calls.get(&id) {
            let _ = tx.send(s);
        }
    }

    /// An RTP socket on a random even port of the configured range.
    fn bind_rtp(&mut self, ep: &Endpoint, v6: bool) -> Option<(UdpSocket, SocketAddr)> {
        let ip: IpAddr = match self.cfg.rtp.bind_ip {
            Some(ip) => ip,
            None => ep.local_ip(v6),
        };
        for port in rtp_port_candidates(self.cfg.rtp.min, self.cfg.rtp.max, &mut self.rng) {
            if let Ok(s) = bind_udp(SocketAddr::new(ip, port)) {
                let mut advertised = SocketAddr::new(ip, port);
                if ip.is_unspecified() {
                    advertised.set_ip(ep.local_ip(v6));
                }
                return Some((s, advertised));
            }
        }
        None
    }

    async fn flush(&mut self, ep: &mut Endpoint, now: Instant) {
        while let Some(t) = ep.poll_transmit() {
            self.transmit(t);
        }
        while let Some(ev) = ep.poll_event() {
            match ev {
                EndpointEvent::Incoming { call: id, source, callee, caller } => {
                    let v6 = ep.call_peer(id).is_some_and(|p| p.addr.is_ipv6());
                    let Some((sock, rtp)) = self.bind_rtp(ep, v6) else {
                        let _ = ep.reject(now, id, 503);
                        continue;
                    };
                    let _ = ep.ring(now, id);
                    match ep.answer(now, id, rtp) {
                        Ok(media) => {
                            let (handle, sig) = call::spawn(id, sock, media, &self.cfg, media_source(ep, id), self.cmd_tx.clone());
                            self.calls.insert(id, sig);
                            // The application (speech, database, media) starts
                            // with the ACK: a spoofed INVITE never gets that far.
                            self.unconfirmed.insert(id, IncomingCall { source, callee, caller, handle });
                        }
                        Err(_) => continue,
                    }
                }
                EndpointEvent::Confirmed { call: id } => {
                    self.signal(id, CallSignal::Confirmed);
                    if let Some(call) = self.unconfirmed.remove(&id) {
                        if self.incoming.try_send(call).is_err() {
                            let _ = ep.hangup(now, id);
                        }
                    }
                }
                EndpointEvent::Progress { call, code } => self.signal(call, CallSignal::Progress(code)),
                EndpointEvent::Answered { call, media } => self.signal(call, CallSignal::Answered(media)),
                EndpointEvent::MediaUpdate { call, media } => self.signal(call, CallSignal::Media(media)),
                EndpointEvent::InfoDtmf { call, digit } => self.signal(call, CallSignal::Dtmf(digit)),
                EndpointEvent::TransferStatus { call, code } => self.signal(call, CallSignal::TransferStatus(code)),
                EndpointEvent::Ended { call, reason } => {
                    self.signal(call, CallSignal::Ended(reason));
                    self.calls.remove(&call);
                    if self.unconfirmed.remove(&call).is_some() {
                        tracing::debug!(?reason, "an inbound call ended before its ACK; the application never saw it");
                    }
                }
                EndpointEvent::Registration { trunk, status } => match status {
                    RegistrationStatus::Registered { expires_s } => tracing::info!(%trunk, expires_s, "registered to the carrier"),
                    RegistrationStatus::Failed { code } => tracing::warn!(%trunk, code, "registration to the carrier failed; retrying"),
                },
            }
            // Answering may have queued responses.
            while let Some(t) = ep.poll_transmit() {
                self.transmit(t);
            }
        }
        // What this turn produced for UDP goes out in one batch per socket.
        for (v6, sock) in &self.udp {
            let out = if *v6 { &mut self.udp_out6 } else { &mut self.udp_out4 };
            if !out.is_empty() {
                udp::send_batch(sock, out).await;
            }
        }
        // None left for a family with no socket of ours.
        self.udp_out4.clear();
        self.udp_out6.clear();
    }

    /// Queues a message: UDP ones are sent together at the end of the
    /// turn ([`State::flush`]), stream ones go to their connection's writer.
    fn transmit(&mut self, t: Transmit) {
        match t.peer.transport {
            Transport::Udp => {
                let out = if t.peer.addr.is_ipv6() { &mut self.udp_out6 } else { &mut self.udp_out4 };
                out.push((t.peer.addr, t.bytes));
            }
            Transport::Tcp | Transport::Tls => match self.streams.get(&t.peer) {
                Some(w) => {
                    if let Err(mpsc::error::TrySendError::Full(_)) = w.try_send(t.bytes) {
                        tracing::warn!(addr = %t.peer.addr, "SIP connection not reading: a message to it was dropped");
                    }
                }
                None => self.connect(t),
            },
        }
    }

    /// Connect, then send; the connection registers itself. Ours: not
    /// counted against the inbound caps, and no first-message rule (the
    /// peer answers when it likes).
    fn connect(&mut self, t: Transmit) {
        let peer = t.peer;
        let tls = match peer.transport {
            Transport::Tls => match self.tls_clients.for_addr(peer.addr) {
                Some(c) => Some(c),
                None => {
                    tracing::warn!(addr = %peer.addr, "no TLS trust settings for this peer (no system CA bundle); not connecting");
                    return;
                }
            },
            _ => None,
        };
        let (w, r) = mpsc::channel(tcp::WRITE_QUEUE);
        let _ = w.try_send(t.bytes);
        self.streams.insert(peer, w.clone());
        let net = self.net_tx.clone();
        let timeouts = tcp::Timeouts { first_message: None, idle: std::time::Duration::from_secs(self.cfg.limits.tcp_idle_s) };
        tokio::spawn(async move {
            let s = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer.addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    s
                }
                _ => {
                    let _ = net.send(DriverEvent::StreamClosed(peer)).await;
                    return;
                }
            };
            match tls {
                None => tcp::connection(s, peer, net, Some((w, r)), timeouts, None).await,
                Some((config, name)) => match tokio::time::timeout(CONNECT_TIMEOUT, TlsConnector::from(config).connect(name, s)).await {
                    Ok(Ok(s)) => tcp::connection(s, peer, net, Some((w, r)), timeouts, None).await,
                    Ok(Err(e)) => {
                        // A wrong, expired or unpinned certificate ends here.
                        tracing::warn!(addr = %peer.addr, error = %e, "SIP TLS connection refused: the peer's certificate did not verify");
                        let _ = net.send(DriverEvent::StreamClosed(peer)).await;
                    }
                    Err(_) => {
                        let _ = net.send(DriverEvent::StreamClosed(peer)).await;
                    }
                },
            }
        });
    }
}

/// A TCP connect or TLS handshake towards a peer gives up after this.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Every even port of `min..=max` once, in an order drawn from `rng`. Ports
/// handed out in sequence let anyone find a live call's media by probing
/// the ports after one they saw (plain RTP has no protection against
/// injection, RFC 3550 §9). A random start and a random stride coprime with
/// the number of ports visit them all without allocating, so a nearly full
/// range still yields its free port, and nothing hints at the next call's.
fn rtp_port_candidates(min: u16, max: u16, rng: &mut impl Rng) -> impl Iterator<Item = u16> {
    // RTP takes even ports (RFC 3550 §11); RTCP, when not multiplexed, the next one.
    let lo = (u32::from(min) + 1) & !1;
    let hi = u32::from(max) & !1;
    let n = if hi >= lo { (hi - lo) / 2 + 1 } else { 0 };
    let start = if n > 0 { rng.gen_range(0..n) } else { 0 };
    // A stride of ±1 would be a sequential scan again: avoided where the
    // range allows another (n > 6); 64 draws find one but in freak cases.
    let stride = (0..64).map(|_| rng.gen_range(1..n.max(2))).find(|&s| gcd(s, n) == 1 && (n <= 6 || (s != 1 && s != n - 1))).unwrap_or(1);
    // u64: start + i * stride stays far from overflow for any u16 range.
    (0..u64::from(n)).map(move |i| {
        let k = (u64::from(start) + i * u64::from(stride)) % u64::from(n);
        (u64::from(lo) + 2 * k) as u16
    })
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Where a call's RTP may come from: its SDP's address, unless the trunk or
/// extension at the other end is marked `nat`.
fn media_source(ep: &Endpoint, id: CallId) -> SourcePolicy {
    if ep.call_behind_nat(id) {
        SourcePolicy::NatLatch
    } else {
        SourcePolicy::Signalled
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// SIP over UDP arrives in bursts (a carrier's busiest minute, a flood).
/// The kernel's default receive buffer (about 200 KB: some 300 INVITEs)
/// drops whatever the loop has not read yet, and every drop comes back as
/// a retransmission half a second later — under load, more load. Like
/// Kamailio, ask for large buffers; the kernel caps them at
/// `net.core.rmem_max`/`wmem_max`, and a refusal leaves the defaults.
pub fn large_buffers(s: &UdpSocket) {
    let sock = socket2::SockRef::from(s);
    let _ = sock.set_recv_buffer_size(SIP_UDP_BUFFER);
    let _ = sock.set_send_buffer_size(SIP_UDP_BUFFER);
}

/// What [`large_buffers`] asks for.
const SIP_UDP_BUFFER: usize = 4 << 20;

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = std::net::TcpListener::bind(addr)?;
    s.set_nonblocking(true)?;
    TcpListener::from_std(s)
}

/// Where a UDP reader puts what it reads.
struct Queues {
    net: mpsc::Sender<DriverEvent>,
    /// Trunks' new INVITEs; when it is full they are shed.
    new_calls: mpsc::Sender<QueuedCall>,
    carriers: Arc<RwLock<Vec<config::Trunk>>>,
    /// New INVITEs shed since the driver last looked.
    shed: Arc<AtomicU64>,
}

async fn udp_reader(sock: Arc<UdpSocket>, q: Queues) {
    let mut bufs = vec![vec![0u8; MAX_MESSAGE_LEN]; udp::RECV_BATCH];
    let mut got = Vec::with_capacity(udp::RECV_BATCH);
    let mut shed = Shed::default();
    loop {
        if udp::recv_batch(&sock, &mut bufs, &mut got).await.is_err() {
            // ICMP port unreachable surfaces here on some systems: keep going.
            tokio::task::yield_now().await;
            continue;
        }
        for r in &got {
            let (from, arrived) = (r.from, r.arrived);
            let peer = Peer { transport: Transport::Udp, addr: from };
            let bytes = r.bytes(&bufs);
            if overload::acks_a_refusal(bytes) {
                continue;
            }
            let carrier = || q.carriers.read().unwrap_or_else(|e| e.into_inner()).iter().any(|t| t.contains(from.ip()));
            if overload::is_new_invite(bytes) && carrier() {
                match q.new_calls.try_send((peer, bytes.to_vec(), arrived)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        q.shed.fetch_add(1, Ordering::Relaxed);
                        shed.count(from);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            } else if q.net.send(DriverEvent::Datagram(peer, bytes.to_vec())).await.is_err() {
                return;
            }
        }
        // The driver's turn after each batch: on a busy socket this loop
        // would otherwise read on (tokio's budget allows 128 batches)
        // while what it read waits, and new calls age past their patience.
        tokio::task::yield_now().await;
    }
}

/// A trunk's new INVITE waiting for the driver, with when it was read.
type QueuedCall = (Peer, Vec<u8>, Instant);

/// Up to `n` of the new calls waiting, taken the full way; those that
/// waited too long are refused on the way without counting.
fn take_new_calls(endpoint: &mut Endpoint, calls: &mut mpsc::Receiver<QueuedCall>, now: Instant, wall: u64, n: usize) {
    let mut taken = 0;
    while taken < n {
        let Ok(c) = calls.try_recv() else { break };
        taken += usize::from(take_new_call(endpoint, now, wall, c));
    }
}

/// One new call into the endpoint: refused at once, statelessly (503),
/// when it waited longer than [`NEW_CALL_PATIENCE`]; true when taken the
/// full way.
fn take_new_call(endpoint: &mut Endpoint, now: Instant, wall: u64, (peer, bytes, arrived): QueuedCall) -> bool {
    if now.saturating_duration_since(arrived) > NEW_CALL_PATIENCE {
        endpoint.handle_new_call_late(now, wall, peer, &bytes);
        false
    } else {
        endpoint.handle_input(now, wall, peer, &bytes);
        true
    }
}

/// How long a new call may wait for the driver before it is refused.
/// Waiting longer means new calls come faster than the driver takes them:
/// the excess is refused at once (a carrier routes it elsewhere) rather
/// than left to fill [`NEW_CALL_QUEUE`] and be shed unread — a shed INVITE
/// comes back as retransmissions, up to 7 in 32 s, each read again, and
/// its call fails slowly instead of at once. Far below Timer A (500 ms)
/// and below the queue's length at the bench's capacity (256 at ~9 000/s:
/// 28 ms), so that refusing comes before shedding.
const NEW_CALL_PATIENCE: Duration = Duration::from_millis(20);

/// Trunks' new INVITEs waiting to be taken; past this they are dropped as
/// they arrive, unread and unanswered. Answering each (a 503) would take
/// the time the calls already carried need — past three times capacity,
/// refusals took two thirds of the core — and a long queue delays each
/// new call past the caller's patience. The carrier retransmits a dropped
/// INVITE (RFC 3261 Timer A), by when there may be room again. Strangers'
/// requests are not queued here: they go through the endpoint's per-source
/// rate limit like everything else, so a flood cannot take trunks' places.
const NEW_CALL_QUEUE: usize = 256;
/// New INVITEs taken at once before looking at the other traffic again.
const NEW_CALL_BATCH: usize = 16;

/// New calls shed while overloaded, told to the admin at most every 10 s.
#[derive(Default)]
struct Shed {
    since_told: u64,
    told: Option<Instant>,
}

impl Shed {
    fn count(&mut self, from: SocketAddr) {
        self.since_told += 1;
        let now = Instant::now();
        if self.told.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            tracing::warn!(
                shed = self.since_told,
                last_source = %from,
                "SIP overloaded: new calls' INVITEs dropped unread while {NEW_CALL_QUEUE} wait; their senders retransmit"
            );
            self.since_told = 0;
            self.told = Some(now);
        }
    }
}

/// A and AAAA records for `host`, in the resolver's order; empty on failure.
async fn lookup(host: &str, port: u16) -> Vec<SocketAddr> {
    match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => addrs.collect(),
        _ => Vec::new(),
    }
}

/// Datagrams taken from the queue at once.
const DATAGRAM_BATCH: usize = 256;

const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Carriers move their proxies rarely; a failed lookup is retried sooner.
const DNS_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);
const DNS_RETRY: std::time::Duration = std::time::Duration::from_secs(15);

async fn refresh_dns(trunk: String, host: String, port: u16, tx: mpsc::Sender<DriverEvent>) {
    loop {
        let addrs = lookup(&host, port).await;
        let wait = if addrs.is_empty() { DNS_RETRY } else { DNS_REFRESH };
        // An empty answer keeps the last good addresses.
        if !addrs.is_empty() && tx.send(DriverEvent::Resolved(trunk.clone(), addrs)).await.is_err() {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    /// New calls are taken the full way while fresh; past their patience
    /// (counted from when they arrived) they get a 503 and do not count
    /// against the turn's share.
    #[test]
    fn new_calls_past_their_patience_are_refused_without_counting() {
        let mut ep = Endpoint::for_test(
            "listen = [{ transport = \"udp\", addr = \"198.51.100.7:5060\" }]\nnumbers = [\"1000\"]\n\
             [[trunks]]\nname = \"carrier\"\ncidrs = [\"192.0.2.0/24\"]\n",
        );
        let peer = Peer { transport: Transport::Udp, addr: "192.0.2.10:5060".parse().unwrap() };
        let invite = |n: u32| {
            format!(
                "INVITE sip:1000@198.51.100.7 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{n}\r\nMax-Forwards: 70\r\n\
                 From: <sip:x@192.0.2.10>;tag=f{n}\r\nTo: <sip:1000@198.51.100.7>\r\nCall-ID: c{n}@x\r\nCSeq: 1 INVITE\r\n\
                 Contact: <sip:x@192.0.2.10>\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes()
        };
        let now = Instant::now() + Duration::from_secs(1);
        let (tx, mut rx) = mpsc::channel::<QueuedCall>(8);
        // Two that waited too long, then three fresh ones; a share of two.
        for n in 0..2 {
            tx.try_send((peer, invite(n), now - NEW_CALL_PATIENCE - Duration::from_millis(1))).unwrap();
        }
        for n in 2..5 {
            tx.try_send((peer, invite(n), now - Duration::from_millis(1))).unwrap();
        }
        take_new_calls(&mut ep, &mut rx, now, 0, 2);
        let refused = std::iter::from_fn(|| ep.poll_transmit()).filter(|t| t.bytes.starts_with(b"SIP/2.0 503 ")).count();
        let taken = std::iter::from_fn(|| ep.poll_event()).filter(|e| matches!(e, EndpointEvent::Incoming { .. })).count();
        assert_eq!((refused, taken), (2, 2));
        assert_eq!(rx.len(), 1, "the fifth waits for the next turn");
    }

    #[test]
    fn rtp_ports_are_random_even_and_all_tried() {
        let mut rng = StdRng::seed_from_u64(1);
        // An odd bound at each end: only the even ports inside are used.
        let mut all: Vec<u16> = rtp_port_candidates(10_001, 10_201, &mut rng).collect();
        let order = all.clone();
        all.sort_unstable();
        assert_eq!(all, (10_002..=10_200).step_by(2).collect::<Vec<_>>(), "every even port once");
        let steps = order.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert_eq!(steps, 0, "not handed out in sequence: {order:?}");
        // Successive calls start anywhere in the range, not after each other.
        let firsts: Vec<u16> = (0..50).map(|_| rtp_port_candidates(10_000, 20_000, &mut rng).next().unwrap()).collect();
        assert!(firsts.iter().all(|p| p % 2 == 0 && (10_000..=20_000).contains(p)));
        assert!(firsts.windows(2).all(|w| w[1].abs_diff(w[0]) != 2), "{firsts:?}");
        let mut distinct = firsts.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 45, "{firsts:?}");
        assert!(firsts.iter().any(|p| *p < 15_000) && firsts.iter().any(|p| *p >= 15_000), "{firsts:?}");
        // Degenerate ranges.
        assert_eq!(rtp_port_candidates(10_000, 10_001, &mut rng).collect::<Vec<_>>(), [10_000]);
        assert_eq!(rtp_port_candidates(10_001, 10_001, &mut rng).count(), 0);
        assert_eq!(rtp_port_candidates(65_534, 65_535, &mut rng).collect::<Vec<_>>(), [65_534]);
    }
}
