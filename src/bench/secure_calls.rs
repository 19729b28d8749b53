//! The load generator of the TLS+SRTP comparison: calls the way a carrier
//! trunk places them, all over one signalling path (one UDP socket, or one
//! TLS connection), each `INVITE → 200 → ACK → [media] → BYE → 200`.
//!
//! - Over UDP, requests are retransmitted as RFC 3261 §17.1 says (T1
//!   doubling up to T2, INVITE retransmissions stopped by a provisional
//!   response); over TLS they are not (a reliable transport).
//! - Over TLS, messages are framed by Content-Length (the server's own
//!   [`Framer`]);
//!   one reader task hands each response to the call waiting on its
//!   Call-ID ([`Trunk::wait_for`]).
//! - Media: each call streams a known tone from its own UDP socket, 20 ms
//!   µ-law packets, SRTP-protected when the answer keyed SRTP, and counts
//!   the packets that come back carrying the tone ([`MediaCount`]).
//!
//! It is not a SIP stack: requests from the server are ignored (the echo
//! app never sends one while a call is held), no authentication, no
//! forking. Every wait has a deadline: a misbehaving server gives a
//! [`CallFailure`], never a hang or a panic.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::SecureBenchError;
use crate::media::g711::{ulaw_decode, ulaw_encode};
use crate::media::sdp::SessionDescription;
use crate::media::srtp::{CryptoAttribute, SrtpContexts, SrtpError, SrtpParams, SrtpSuite, MASTER_LEN};
use crate::sip::stream::{Framed, Framer};

/// RFC 3261 T1: the first UDP retransmission interval.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2: the longest UDP retransmission interval.
const T2: Duration = Duration::from_secs(4);
/// How long a request waits for its final response. Shorter than Timer B
/// (64·T1): a bench step should fail visibly, not stall half a minute.
pub const FINAL_WITHIN: Duration = Duration::from_secs(10);
/// Connecting (TCP and the TLS handshake) must finish within this.
const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// Largest SIP message taken from the server over TLS.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Samples, and µ-law octets, per 20 ms packet.
pub const FRAME: usize = 160;
/// Packets per second of a 20 ms packetisation.
pub const PACKETS_PER_SECOND: u32 = 50;
/// After its last packet a call listens this long for the echo's tail (the
/// server's jitter buffer holds a few packets back).
const DRAIN: Duration = Duration::from_millis(500);
/// RTP payload types offered: PCMU and RFC 4733 events.
const PT_PCMU: u8 = 0;
const PT_EVENT: u8 = 101;
/// Tag of our one `a=crypto` line.
const CRYPTO_TAG: u32 = 1;
/// RFC 863 discard: where a media-less call says its RTP goes.
const DISCARD_PORT: u16 = 9;
/// The number the bench server owns (its `numbers`).
pub const CALLEE: &str = "1000";

/// How calls travel: the two rows of every table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SIP over UDP, plain RTP.
    Plain,
    /// SIP over TLS, SRTP keyed by SDES.
    Secure,
}

impl Mode {
    pub const BOTH: [Mode; 2] = [Mode::Plain, Mode::Secure];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Plain => "UDP+RTP",
            Mode::Secure => "TLS+SRTP",
        }
    }

    fn via_transport(self) -> &'static str {
        match self {
            Mode::Plain => "UDP",
            Mode::Secure => "TLS",
        }
    }

    fn uri_params(self) -> &'static str {
        match self {
            Mode::Plain => "",
            Mode::Secure => ";transport=tls",
        }
    }
}

/// Why one call failed; counted per step, the first one printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    #[error("socket: {0}")]
    Io(String),
    #[error("no final response to {0} within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("{method} answered {code}")]
    Refused { method: &'static str, code: u16 },
    #[error("the 200 OK to INVITE {0}")]
    BadAnswer(&'static str),
    #[error("the signalling connection is gone")]
    Disconnected,
    #[error("SRTP: {0}")]
    Srtp(SrtpError),
}

fn io(e: std::io::Error) -> CallFailure {
    CallFailure::Io(e.to_string())
}

/// Calls waiting for responses, by Call-ID.
type Waiters = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<String>>>>;

fn lock(w: &Waiters) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<String>>> {
    // Plain data: still usable after a panic elsewhere.
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where requests are written.
enum Outbound {
    Udp(Arc<UdpSocket>),
    /// To the task that owns the TLS stream's write half.
    Tls(mpsc::Sender<Vec<u8>>),
}

/// One signalling path to the server, shared by all calls of a mode, as a
/// carrier's trunk is one socket or one TLS connection.
pub struct Trunk {
    mode: Mode,
    /// Suite offered in `a=crypto` (secure mode).
    suite: SrtpSuite,
    server: SocketAddr,
    local: SocketAddr,
    /// `None` once closed.
    out: Option<Outbound>,
    waiters: Waiters,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
}

impl Trunk {
    /// A UDP socket on loopback towards `server`.
    pub async fn udp(server: SocketAddr) -> Result<Trunk, SecureBenchError> {
        let sock = UdpSocket::bind("127.0.0.1:0").await?;
        // A carrier's side has large buffers too (the server's, see `large_buffers`).
        crate::sip::driver::large_buffers(&sock);
        let sock = Arc::new(sock);
        let local = sock.local_addr()?;
        let waiters = Waiters::default();
        let reader = tokio::spawn(udp_reader(sock.clone(), waiters.clone()));
        let suite = SrtpSuite::AesCm128HmacSha1_80;
        Ok(Trunk { mode: Mode::Plain, suite, server, local, out: Some(Outbound::Udp(sock)), waiters, reader, writer: None })
    }

    /// One TLS connection to `server`, whose certificate must chain to `ca`
    /// (PEM) and name 127.0.0.1; calls offer SRTP with `suite`.
    pub async fn tls(server: SocketAddr, ca: &Path, suite: SrtpSuite) -> Result<Trunk, SecureBenchError> {
        let trust = crate::tls::PeerTrust { ca: Some(ca.to_path_buf()), ..Default::default() };
        let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config(&trust)?);
        let name = crate::tls::server_name(&server.ip().to_string()).ok_or(SecureBenchError::Handshake("no server name".into()))?;
        let connect = async {
            let tcp = TcpStream::connect(server).await?;
            tcp.set_nodelay(true)?;
            connector.connect(name, tcp).await
        };
        let stream = tokio::time::timeout(CONNECT_WITHIN, connect)
            .await
            .map_err(|_| SecureBenchError::Handshake(format!("no TLS session within {CONNECT_WITHIN:?}")))?
            .map_err(|e| SecureBenchError::Handshake(e.to_string()))?;
        let local = stream.get_ref().0.local_addr()?;
        let (rd, wr) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(4096);
        let waiters = Waiters::default();
        let reader = tokio::spawn(tls_reader(rd, waiters.clone()));
        let writer = Some(tokio::spawn(tls_writer(wr, rx)));
        Ok(Trunk { mode: Mode::Secure, suite, server, local, out: Some(Outbound::Tls(tx)), waiters, reader, writer })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Closes the path: a TLS connection gets its close_notify (waited
    /// for up to a second), the reader stops, the socket is released.
    pub async fn close(mut self) {
        // Dropping the only sender ends the writer, which shuts the stream down.
        self.out = None;
        if let Some(w) = self.writer.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), w).await;
        }
    }

    async fn send(&self, msg: &str) -> Result<(), CallFailure> {
        match &self.out {
            Some(Outbound::Udp(s)) => s.send_to(msg.as_bytes(), self.server).await.map(|_| ()).map_err(io),
            Some(Outbound::Tls(tx)) => tx.send(msg.as_bytes().to_vec()).await.map_err(|_| CallFailure::Disconnected),
            None => Err(CallFailure::Disconnected),
        }
    }

    /// Responses with this Call-ID go to the returned waiter until it is dropped.
    fn wait_for(&self, call_id: &str) -> Waiter {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.waiters).insert(call_id.to_string(), tx);
        Waiter { waiters: self.waiters.clone(), call_id: call_id.to_string(), rx }
    }

    /// Sends `msg` and waits for its final response (matched by CSeq
    /// method); over UDP the request is retransmitted meanwhile.
    async fn transact(&self, w: &mut Waiter, msg: &str, method: &'static str) -> Result<Response, CallFailure> {
        self.send(msg).await?;
        let deadline = Instant::now() + FINAL_WITHIN;
        let mut interval = T1;
        let mut resend_at = (self.mode == Mode::Plain).then(|| Instant::now() + T1);
        loop {
            let wake = resend_at.map_or(deadline, |r| r.min(deadline));
            match tokio::time::timeout_at(wake, w.rx.recv()).await {
                Ok(Some(text)) => {
                    let Some(r) = Response::parse(text) else { continue };
                    if r.cseq_method != method {
                        continue;
                    }
                    if r.code < 200 {
                        if method == "INVITE" {
                            resend_at = None;
                        }
                        continue;
                    }
                    return Ok(r);
                }
                Ok(None) => return Err(CallFailure::Disconnected),
                Err(_) if Instant::now() >= deadline => return Err(CallFailure::Timeout(method, FINAL_WITHIN)),
                Err(_) => {
                    self.send(msg).await?;
                    interval = (interval * 2).min(T2);
                    resend_at = Some(Instant::now() + interval);
                }
            }
        }
    }
}

impl Drop for Trunk {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(w) = &self.writer {
            w.abort();
        }
    }
}

/// A call's inbox; unregisters its Call-ID when dropped.
struct Waiter {
    waiters: Waiters,
    call_id: String,
    rx: mpsc::UnboundedReceiver<String>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        lock(&self.waiters).remove(&self.call_id);
    }
}

/// Hands a response to the call waiting on its Call-ID. Requests, and
/// responses nobody waits for (a late retransmission), are dropped.
fn dispatch(waiters: &Waiters, msg: &[u8]) {
    let Ok(text) = std::str::from_utf8(msg) else { return };
    if !text.starts_with("SIP/2.0 ") {
        return;
    }
    let Some(call_id) = header(text, "Call-ID", "i") else { return };
    if let Some(tx) = lock(waiters).get(call_id) {
        let _ = tx.send(text.to_string());
    }
}

/// Reads the UDP socket and dispatches each datagram. Should the socket
/// fail, every waiting call is told at once (its channel closes).
async fn udp_reader(sock: Arc<UdpSocket>, waiters: Waiters) {
    let mut buf = vec![0u8; 65_535];
    while let Ok((n, _)) = sock.recv_from(&mut buf).await {
        dispatch(&waiters, &buf[..n]);
    }
    lock(&waiters).clear();
}

/// Reads the TLS stream, frames it, dispatches each message. When the
/// connection ends every waiting call is told at once (its channel closes).
async fn tls_reader(mut rd: ReadHalf<TlsStream<TcpStream>>, waiters: Waiters) {
    let mut framer = Framer::new(MAX_MESSAGE);
    let mut chunk = vec![0u8; 16 * 1024];
    'read: loop {
        while let Some(f) = framer.next_message() {
            match f {
                Framed::Message(m) => dispatch(&waiters, &m),
                // Unframeable: the stream cannot be resynchronised.
                Framed::Invalid(_) => break 'read,
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => framer.push(&chunk[..n]),
        }
    }
    lock(&waiters).clear();
}

/// Writes queued messages; flushes when the queue is empty; shuts the
/// stream down (TLS close_notify) when every sender is gone.
async fn tls_writer(mut wr: WriteHalf<TlsStream<TcpStream>>, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(m) = rx.recv().await {
        if wr.write_all(&m).await.is_err() {
            return;
        }
        if rx.is_empty() && wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// The value of the first header named `name` (or its compact form), trimmed.
pub fn header<'a>(msg: &'a str, name: &str, compact: &str) -> Option<&'a str> {
    let head = msg.split("\r\n\r\n").next().unwrap_or(msg);
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        let n = n.trim();
        (n.eq_ignore_ascii_case(name) || n.eq_ignore_ascii_case(compact)).then(|| v.trim())
    })
}

/// What a call needs of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub cseq_method: String,
    pub text: String,
}

impl Response {
    pub fn parse(text: String) -> Option<Response> {
        let code = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
        let cseq_method = header(&text, "CSeq", "CSeq")?.split_whitespace().nth(1)?.to_string();
        Some(Response { code, cseq_method, text })
    }
}

/// Our side of one call's dialog: enough to write its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub mode: Mode,
    /// Our signalling address (Via, Contact).
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub call_id: String,
    pub from_tag: String,
    /// The To header from the server's response (with its tag), once known.
    pub to: Option<String>,
}

impl Dialog {
    fn new(trunk: &Trunk) -> Dialog {
        Dialog {
            mode: trunk.mode,
            local: trunk.local,
            server: trunk.server,
            call_id: format!("{:016x}@bench", rand::random::<u64>()),
            from_tag: format!("{:08x}", rand::random::<u32>()),
            to: None,
        }
    }

    /// One request of the dialog; `sdp` as an `application/sdp` body.
    pub fn request(&self, method: &str, cseq: u32, branch: &str, sdp: Option<&str>) -> String {
        let Dialog { mode, local, server, call_id, from_tag, to } = self;
        let (transport, params) = (mode.via_transport(), mode.uri_params());
        let to = to.clone().unwrap_or_else(|| format!("<sip:{CALLEE}@{server}>"));
        let mut m = format!(
            "{method} sip:{CALLEE}@{server}{params} SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:bench@{}>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:bench@{local}{params}>\r\n",
            local.ip()
        );
        match sdp {
            Some(body) => m.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len())),
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        m
    }
}

fn new_branch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Our offer: PCMU and telephone-event on `rtp`; with `crypto`, RTP/SAVP
/// and that one `a=crypto` line (RFC 4568).
pub fn offer_sdp(rtp: SocketAddr, crypto: Option<&CryptoAttribute>) -> String {
    let (ip, port) = (rtp.ip(), rtp.port());
    let proto = if crypto.is_some() { "RTP/SAVP" } else { "RTP/AVP" };
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} {proto} {PT_PCMU} {PT_EVENT}\r\n\
         a=rtpmap:{PT_PCMU} PCMU/8000\r\na=rtpmap:{PT_EVENT} telephone-event/8000\r\na=fmtp:{PT_EVENT} 0-15\r\na=ptime:20\r\n"
    );
    if let Some(c) = crypto {
        s.push_str(&format!("a=crypto:{c}\r\n"));
    }
    s
}

/// A fresh `a=crypto` line for `suite`, keyed from the OS-seeded CSPRNG.
fn new_crypto(suite: SrtpSuite) -> CryptoAttribute {
    let mut key = [0u8; MASTER_LEN];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut key);
    CryptoAttribute::new(CRYPTO_TAG, suite, &key)
}

/// What the server's 200 OK to our INVITE set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Where to send our RTP.
    pub media: SocketAddr,
    /// The SRTP keys, when the answer accepted our `a=crypto` line.
    pub srtp: Option<SrtpParams>,
}

/// Reads the SDP answer of a 200 OK. With `offered`, the answer must be
/// RTP/SAVP with an `a=crypto` line of the same tag and suite (RFC 4568
/// §5.1.2) holding the server's key; without, plain RTP/AVP and no key.
pub fn parse_answer(response: &str, offered: Option<&CryptoAttribute>) -> Result<Answer, CallFailure> {
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let sdp = SessionDescription::parse(body).map_err(|_| CallFailure::BadAnswer("has no valid SDP"))?;
    let m = sdp
        .media
        .iter()
        .find(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
        .ok_or(CallFailure::BadAnswer("has no audio stream"))?;
    let ip = sdp.media_connection(m).ok_or(CallFailure::BadAnswer("has no c= address"))?;
    let media = SocketAddr::new(ip, m.port);
    let srtp = match offered {
        Some(ours) => {
            if !m.is_srtp_audio() {
                return Err(CallFailure::BadAnswer("is not RTP/SAVP"));
            }
            let theirs = m
                .crypto()
                .find(|c| c.tag == ours.tag && c.suite == ours.suite)
                .ok_or(CallFailure::BadAnswer("has no a=crypto line for our offer"))?;
            Some(SrtpParams { suite: ours.suite, tx: ours.key, rx: theirs.key })
        }
        None => {
            if !m.is_rtp_audio() || m.crypto().next().is_some() {
                return Err(CallFailure::BadAnswer("is not plain RTP/AVP"));
            }
            None
        }
    };
    Ok(Answer { media, srtp })
}

/// The audio every call sends: one second of 440 Hz + 1250 Hz as 50 µ-law
/// frames, repeated. Both are whole cycles per second, so the signal is
/// periodic over the 50 frames and an echoed packet is recognised by its
/// payload being one of them.
pub struct Tone {
    frames: Vec<[u8; FRAME]>,
    set: HashSet<[u8; FRAME]>,
}

impl Tone {
    pub fn new() -> Tone {
        let frames: Vec<[u8; FRAME]> = (0..PACKETS_PER_SECOND as usize)
            .map(|f| {
                std::array::from_fn(|i| {
                    let t = (f * FRAME + i) as f32 / 8000.0;
                    let tau = 2.0 * std::f32::consts::PI;
                    let code = ulaw_encode((((tau * 440.0 * t).sin() + 0.5 * (tau * 1250.0 * t).sin()) * 9000.0) as i16);
                    // The echo app decodes and re-encodes: −0 (0x7F) would
                    // come back as +0 (0xFF). Send what comes back unchanged.
                    ulaw_encode(ulaw_decode(code))
                })
            })
            .collect();
        let set = frames.iter().copied().collect();
        Tone { frames, set }
    }

    /// The payload of packet `n`.
    pub fn frame(&self, n: u64) -> &[u8; FRAME] {
        &self.frames[(n % self.frames.len() as u64) as usize]
    }

    /// Whether `payload` is one of the tone's frames.
    pub fn contains(&self, payload: &[u8]) -> bool {
        <&[u8; FRAME]>::try_from(payload).is_ok_and(|p| self.set.contains(p))
    }
}

impl Default for Tone {
    fn default() -> Self {
        Tone::new()
    }
}

/// What one call saw of its media.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaCount {
    /// Packets we sent.
    pub sent: u64,
    /// Packets received that authenticated (SRTP) and carry one of the
    /// tone's frames as PCMU: the echo.
    pub echoed: u64,
    /// Received packets SRTP refused (forged, damaged, replayed, garbage).
    pub rejected: u64,
    /// Received packets whose payload, as it crossed the wire, starts with
    /// a tone frame: voice in clear. Over UDP+RTP every echo is; with SRTP
    /// none should be.
    pub in_clear: u64,
}

impl MediaCount {
    /// Counts one received datagram, unprotecting it first when `srtp` is given.
    pub fn record(&mut self, wire: &[u8], srtp: Option<&mut SrtpContexts>, tone: &Tone) {
        if rtp_payload(wire).and_then(|(_, p)| p.get(..FRAME)).is_some_and(|p| tone.contains(p)) {
            self.in_clear += 1;
        }
        let plain: Cow<'_, [u8]> = match srtp {
            Some(ctx) => match ctx.unprotect_rtp(wire) {
                Ok(p) => Cow::Owned(p),
                Err(_) => {
                    self.rejected += 1;
                    return;
                }
            },
            None => Cow::Borrowed(wire),
        };
        if rtp_payload(&plain).is_some_and(|(pt, p)| pt == PT_PCMU && tone.contains(p)) {
            self.echoed += 1;
        }
    }

    pub fn add(&mut self, o: &MediaCount) {
        self.sent += o.sent;
        // A concealed (repeated) frame can come back twice: a call never
        // counts more echoes than it sent.
        self.echoed += o.echoed.min(o.sent);
        self.rejected += o.rejected;
        self.in_clear += o.in_clear;
    }
}

/// An RTP packet's payload type and payload (after CSRCs and extension,
/// padding removed), or `None` if it is not a well-formed RTP version 2 packet.
pub fn rtp_payload(packet: &[u8]) -> Option<(u8, &[u8])> {
    let first = *packet.first()?;
    if first >> 6 != 2 {
        return None;
    }
    let mut start = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = packet.len();
    if first & 0x20 != 0 {
        end = end.checked_sub(usize::from(*packet.last()?))?;
    }
    Some((packet.get(1)? & 0x7f, packet.get(start..end)?))
}

/// A plain RTP packet of ours.
pub fn rtp_packet(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.extend_from_slice(&[0x80, PT_PCMU]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// What a call streams: `packets` packets of `tone`, 20 ms apart.
pub struct Media {
    pub packets: u64,
    pub tone: Arc<Tone>,
}

/// Places one call on `trunk`: INVITE (with SRTP keys in secure mode),
/// wait for 200, ACK, stream `media` if any, BYE, wait for its 200. The
/// answer is checked in both modes (SRTP in secure mode, none in plain),
/// and the call is hung up whatever happened after the 200.
pub async fn call(trunk: &Trunk, media: Option<&Media>) -> Result<MediaCount, CallFailure> {
    // A call without media needs no socket of its own (thousands at once
    // would run out of file descriptors): its offer names the discard port.
    let rtp = match media {
        Some(_) => Some(UdpSocket::bind("127.0.0.1:0").await.map_err(io)?),
        None => None,
    };
    let rtp_addr = match &rtp {
        Some(s) => s.local_addr().map_err(io)?,
        None => SocketAddr::from(([127, 0, 0, 1], DISCARD_PORT)),
    };
    let crypto = (trunk.mode == Mode::Secure).then(|| new_crypto(trunk.suite));
    let mut dialog = Dialog::new(trunk);
    let mut inbox = trunk.wait_for(&dialog.call_id);
    let branch = new_branch();
    let sdp = offer_sdp(rtp_addr, crypto.as_ref());
    // An INVITE that gets no final response is abandoned (no CANCEL): the
    // call counts as failed, and the server ends it on its own timers.
    let ok = trunk.transact(&mut inbox, &dialog.request("INVITE", 1, &branch, Some(&sdp)), "INVITE").await?;
    dialog.to = header(&ok.text, "To", "t").map(str::to_string);
    if ok.code >= 300 {
        // A failure is ACKed within its transaction (RFC 3261 §17.1.1.3).
        if dialog.to.is_some() {
            trunk.send(&dialog.request("ACK", 1, &branch, None)).await?;
        }
        return Err(CallFailure::Refused { method: "INVITE", code: ok.code });
    }
    if !dialog.to.as_deref().is_some_and(|t| t.contains("tag=")) {
        return Err(CallFailure::BadAnswer("has no To tag"));
    }
    // The 2xx is ACKed as its own transaction, before the answer is judged:
    // the server holds the call either way, and the BYE below ends it.
    trunk.send(&dialog.request("ACK", 1, &new_branch(), None)).await?;
    let streamed = match (parse_answer(&ok.text, crypto.as_ref()), media, &rtp) {
        (Ok(a), Some(m), Some(sock)) => stream(sock, a.media, a.srtp, m).await,
        (Ok(_), _, _) => Ok(MediaCount::default()),
        (Err(e), _, _) => Err(e),
    };
    let bye = trunk.transact(&mut inbox, &dialog.request("BYE", 2, &new_branch(), None), "BYE").await;
    let count = streamed?;
    match bye?.code {
        200..=299 => Ok(count),
        code => Err(CallFailure::Refused { method: "BYE", code }),
    }
}

/// Sends `media.packets` packets every 20 ms to `to` (SRTP-protected with
/// `srtp`) while counting what comes back, then listens [`DRAIN`] longer.
async fn stream(sock: &UdpSocket, to: SocketAddr, srtp: Option<SrtpParams>, media: &Media) -> Result<MediaCount, CallFailure> {
    let mut count = MediaCount::default();
    if media.packets == 0 {
        return Ok(count);
    }
    // One context for both directions: it protects with our key and
    // unprotects with the server's.
    let mut ctx = srtp.map(|p| SrtpContexts::new(&p)).transpose().map_err(CallFailure::Srtp)?;
    let ssrc: u32 = rand::random();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut drain_until: Option<Instant> = None;
    let mut buf = vec![0u8; 2048];
    loop {
        let drained = async {
            match drain_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick(), if count.sent < media.packets => {
                let n = count.sent;
                let packet = rtp_packet(n as u16, (n as u32).wrapping_mul(FRAME as u32), ssrc, media.tone.frame(n));
                let wire = match ctx.as_mut() {
                    Some(c) => c.protect_rtp(&packet).map_err(CallFailure::Srtp)?,
                    None => packet,
                };
                sock.send_to(&wire, to).await.map_err(io)?;
                count.sent += 1;
                if count.sent == media.packets {
                    drain_until = Some(Instant::now() + DRAIN);
                }
            }
            r = sock.recv_from(&mut buf) => {
                let (n, _) = r.map_err(io)?;
                count.record(&buf[..n], ctx.as_mut(), &media.tone);
            }
            _ = drained => break,
        }
    }
    Ok(count)
}
