//! SIP over TCP and TLS for the driver: the accept loop and one task per
//! connection that frames messages in and writes responses out. A TLS
//! connection is a TCP one with a rustls session inside: the same caps and
//! timeouts apply, and the handshake must finish within the first-message
//! time (a stranger cannot hold a half-open handshake).
//!
//! A TCP connection costs a file descriptor, a task and a buffer for as
//! long as the peer keeps it open, so each is bounded: connections per
//! source and in all (`flood::ConnLimits`), a first message within
//! `tcp_first_message_s`, no more than `tcp_idle_s` of silence, and a
//! message (headers included) no larger than `MAX_MESSAGE_LEN`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::DriverEvent;
use crate::sip::config::{SipConfig, Transport, Trunk};
use crate::sip::flood::ConnLimits;
use crate::sip::stream::{Framed, Framer};
use crate::sip::transaction::Peer;

/// Shared by the accept loop and the connections it starts.
pub(super) struct TcpGuard {
    conns: Mutex<ConnLimits>,
    /// Trunks' connections are not counted: a carrier is never locked out
    /// by strangers filling the caps (their timeouts still apply).
    trunks: Vec<Trunk>,
    first_message: Duration,
    idle: Duration,
}

impl TcpGuard {
    pub(super) fn new(cfg: &SipConfig) -> Arc<Self> {
        let limits = &cfg.limits;
        let mut trunks = cfg.trunks.clone();
        for t in &mut trunks {
            if let Some(a) = t.proxy.as_ref().and_then(|p| p.literal()) {
                t.proxy_addrs = vec![a];
            }
        }
        Arc::new(TcpGuard {
            conns: Mutex::new(ConnLimits::new(limits)),
            trunks,
            first_message: Duration::from_secs(limits.tcp_first_message_s),
            idle: Duration::from_secs(limits.tcp_idle_s),
        })
    }

    /// `None`: over a cap, refuse. `Some(None)`: a trunk, not counted.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Option<ConnPermit>> {
        if self.trunks.iter().any(|t| t.contains(ip)) {
            return Some(None);
        }
        // A poisoned lock only means a panic elsewhere; the counts are intact.
        let ok = self.conns.lock().unwrap_or_else(|e| e.into_inner()).open(ip);
        ok.then(|| Some(ConnPermit { guard: self.clone(), ip }))
    }
}

/// One counted connection; the count is given back when it drops.
pub(super) struct ConnPermit {
    guard: Arc<TcpGuard>,
    ip: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.guard.conns.lock().unwrap_or_else(|e| e.into_inner()).close(self.ip);
    }
}

/// How long to wait after a failed accept: out of file descriptors
/// (EMFILE) fails at once and again until one is freed, so retrying
/// without a pause would spin a core.
pub(super) fn next_backoff(prev: Option<Duration>) -> Duration {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);
    prev.map_or(FIRST, |d| (d * 2).min(MAX))
}

/// Accept until `on_conn` says stop. Errors are logged and retried after
/// a back-off: one failed accept (EMFILE, ECONNABORTED) once ended SIP
/// over TCP until a restart.
pub(super) async fn accept_loop<S, A, F>(mut accept: A, mut on_conn: impl FnMut(S, SocketAddr) -> bool)
where
    A: FnMut() -> F,
    F: Future<Output = std::io::Result<(S, SocketAddr)>>,
{
    let mut backoff = None;
    loop {
        match accept().await {
            Ok((s, addr)) => {
                backoff = None;
                if !on_conn(s, addr) {
                    return;
                }
            }
            Err(e) => {
                let wait = next_backoff(backoff);
                backoff = Some(wait);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "accepting a SIP TCP connection failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Accept SIP over TCP, or over TLS when `tls` is given.
pub(super) async fn acceptor(l: TcpListener, tx: mpsc::Sender<DriverEvent>, guard: Arc<TcpGuard>, tls: Option<TlsAcceptor>) {
    accept_loop(
        || l.accept(),
        |s, addr| {
            if tx.is_closed() {
                return false; // the SIP task is gone
            }
            match guard.admit(addr.ip()) {
                Some(permit) => {
                    // A response waits for no delayed ACK (Nagle would hold
                    // the 200 after a 100 Trying for ~40 ms).
                    let _ = s.set_nodelay(true);
                    let timeouts = Timeouts { first_message: Some(guard.first_message), idle: guard.idle };
                    let tx = tx.clone();
                    match &tls {
                        None => {
                            tokio::spawn(connection(s, Peer { transport: Transport::Tcp, addr }, tx, None, timeouts, permit));
                        }
                        Some(acceptor) => {
                            let acceptor = acceptor.clone();
                            tokio::spawn(async move {
                                let started = Instant::now();
                                match tokio::time::timeout(guard_first(timeouts), acceptor.accept(s)).await {
                                    Ok(Ok(t)) => {
                                        // What the handshake took comes off the first-message time.
                                        let left = guard_first(timeouts).saturating_sub(started.elapsed());
                                        let timeouts = Timeouts { first_message: Some(left), ..timeouts };
                                        connection(t, Peer { transport: Transport::Tls, addr }, tx, None, timeouts, permit).await
                                    }
                                    Ok(Err(e)) => tracing::debug!(%addr, error = %e, "SIP TLS handshake failed"),
                                    Err(_) => tracing::debug!(%addr, "SIP TLS handshake not finished in time"),
                                }
                            });
                        }
                    }
                }
                // Over a cap: closed at once, before any byte is read.
                None => tracing::debug!(%addr, "SIP TCP connection refused: over the connection limit"),
            }
            true
        },
    )
    .await
}

fn guard_first(t: Timeouts) -> Duration {
    t.first_message.unwrap_or(t.idle)
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// Inbound only: the first whole message must come within this.
    pub first_message: Option<Duration>,
    pub idle: Duration,
}

/// The SIP task's side and the connection's side of its write queue.
pub(super) type Writer = (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>);

/// Messages queued for one connection. A carrier's trunk carries every
/// call's signalling on one connection, and nothing sent over TCP or TLS
/// is retransmitted, so a burst must fit: a dropped 200 to a BYE is lost
/// for good. A peer that leaves this many unread is stalled, and
/// `WRITE_TIMEOUT` closes its connection.
pub(super) const WRITE_QUEUE: usize = 1024;

/// A write that the peer does not read within this is abandoned (the
/// peer would otherwise hold the connection with a full window).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// After an unframeable message, time for our 400 to go out.
const LINGER: Duration = Duration::from_millis(200);

/// One loop per connection: frame what is read, write what the SIP task
/// sends, close on a deadline (first message, idle, or linger).
pub(super) async fn connection<S>(
    s: S,
    peer: Peer,
    tx: mpsc::Sender<DriverEvent>,
    writer: Option<Writer>,
    timeouts: Timeouts,
    _permit: Option<ConnPermit>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let addr = peer.addr;
    let (w, mut wr) = writer.unwrap_or_else(|| mpsc::channel(WRITE_QUEUE));
    if tx.send(DriverEvent::StreamOpened(peer, w)).await.is_err() {
        return;
    }
    let (mut rd, mut wh) = tokio::io::split(s);
    let mut framer = Framer::default();
    let mut chunk = vec![0u8; 8192];
    let mut seen_message = timeouts.first_message.is_none();
    let mut deadline = Instant::now() + timeouts.first_message.unwrap_or(timeouts.idle);
    let mut closing = false;
    loop {
        tokio::select! {
            r = rd.read(&mut chunk), if !closing => {
                let n = match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                framer.push(&chunk[..n]);
                while let Some(f) = framer.next_message() {
                    match f {
                        Framed::Message(msg) => {
                            seen_message = true;
                            if tx.send(DriverEvent::Datagram(peer, msg)).await.is_err() {
                                closing = true;
                            }
                        }
                        Framed::Invalid(bytes) => {
                            // Unframeable (bad Content-Length, over the size
                            // cap): answer 400 if it parses that far, then
                            // close, as the stream cannot be resynchronised.
                            let _ = tx.send(DriverEvent::Datagram(peer, bytes)).await;
                            closing = true;
                        }
                    }
                }
                if closing {
                    deadline = Instant::now() + LINGER;
                } else if seen_message {
                    deadline = Instant::now() + timeouts.idle;
                }
            }
            b = wr.recv() => {
                let Some(b) = b else { break };
                match tokio::time::timeout(WRITE_TIMEOUT, wh.write_all(&b)).await {
                    Ok(Ok(())) if !closing && seen_message => deadline = Instant::now() + timeouts.idle,
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if !seen_message {
                    tracing::debug!(%addr, transport = peer.transport.as_str(), "SIP connection closed: no message in time");
                }
                break;
            }
        }
    }
    // A TLS session ends with close_notify (RFC 8446 §6.1).
    let _ = tokio::time::timeout(LINGER, wh.shutdown()).await;
    let _ = tx.send(DriverEvent::StreamClosed(peer)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn backoff_doubles_to_a_second() {
        let mut d = None;
        let seq: Vec<u64> = (0..10)
            .map(|_| {
                d = Some(next_backoff(d));
                d.map_or(0, |d| d.as_millis() as u64)
            })
            .collect();
        assert_eq!(seq, vec![10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
    }

    #[tokio::test]
    async fn accept_loop_survives_errors() {
        // Three failures (as when out of descriptors), then two connections:
        // both are handed on; the loop did not end at the first error.
        let mut script: VecDeque<std::io::Result<(u32, SocketAddr)>> = VecDeque::new();
        for _ in 0..3 {
            script.push_back(Err(std::io::Error::from_raw_os_error(24)));
        }
        let a: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        script.push_back(Ok((1, a)));
        script.push_back(Err(std::io::Error::from(std::io::ErrorKind::ConnectionAborted)));
        script.push_back(Ok((2, a)));
        let script = std::sync::Mutex::new(script);
        let mut got = Vec::new();
        let t0 = std::time::Instant::now();
        accept_loop(
            || {
                let next = script.lock().unwrap().pop_front();
                async move { next.unwrap_or_else(|| Err(std::io::Error::other("script over"))) }
            },
            |s, _| {
                got.push(s);
                s < 2
            },
        )
        .await;
        assert_eq!(got, vec![1, 2]);
        // It waited between failures (10 + 20 + 40 ms, then 10 again).
        assert!(t0.elapsed() >= Duration::from_millis(80), "{:?}", t0.elapsed());
    }
}
