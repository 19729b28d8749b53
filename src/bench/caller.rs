//! A scripted caller for benchmarks and end-to-end tests: a minimal SIP UAC
//! over UDP (INVITE with a PCMU + telephone-event offer, ACK, BYE; it
//! answers the other side's BYE) and a real-time RTP stream, 20 ms µ-law
//! packets paced by the clock, carrying whatever the script queues: PCM,
//! silence, RFC 4733 key presses.
//!
//! Everything is timed on the wire, from the caller's side: the instant
//! the last packet of an utterance left the socket ([`Caller::speech_sent`])
//! and the instant each loud packet of the other side's audio arrived
//! ([`Caller::first_loud_after`]). Their difference is the turn latency a
//! caller lives with, whatever the service measures internally.
//!
//! It is not a SIP stack: no authentication, no re-INVITEs, no
//! retransmission of the ACK. A misbehaving peer gives a [`CallerError`],
//! never a panic.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::media::dtmf::{digit_to_event, DtmfSender};
use crate::media::g711::{ulaw_decode, ulaw_encode};

/// Samples per 20 ms packet at 8 kHz.
const FRAME: usize = 160;
/// A received sample at least this loud (of 32 767) means the other side is
/// speaking: well above G.711 idle noise and comfort noise.
pub const LOUD: u16 = 2000;
/// Silence after each utterance, so the utterance's last packet is followed
/// by quiet ones like a person pausing (the endpointer needs the silence).
const AFTER_SPEECH: usize = 10;
/// Silence between key presses: each press is a new event.
const BETWEEN_KEYS: usize = 8;
/// How long each key is held.
const KEY_PRESS: Duration = Duration::from_millis(100);
/// RTP payload types offered.
const PT_PCMU: u8 = 0;
const PT_EVENT: u8 = 101;

#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("the call was refused: {0}")]
    Refused(String),
    #[error("no answer to the INVITE within {0:?}")]
    NoAnswer(Duration),
    #[error("the 200 OK lacks {0}")]
    BadAnswer(&'static str),
    #[error("no reply audio within {0:?}")]
    NoReply(Duration),
    #[error("'{0}' is not a telephone key")]
    BadKey(char),
    #[error("the RTP sender stopped")]
    SenderGone,
}

/// Where to call, and as whom.
#[derive(Debug, Clone)]
pub struct Dial {
    pub service: SocketAddr,
    /// User part of the From URI (the caller ID), e.g. `+34600222333`.
    pub from: String,
    /// User part of the Request-URI, e.g. the clinic's number.
    pub to: String,
    /// Call-ID; also seeds tags and branches, so keep it to token characters.
    pub call_id: String,
    /// The service may still be starting (loading a model): the INVITE is
    /// sent again every 500 ms until answered or this long has passed.
    pub answer_within: Duration,
}

/// An utterance queued with [`Caller::say`]; ask when it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utterance(usize);

/// One call in progress. Dropping it stops its tasks (without a BYE).
pub struct Caller {
    sip: Arc<UdpSocket>,
    dial: Dial,
    to_tag_line: String,
    cseq: u32,
    ticks: mpsc::UnboundedSender<Tick>,
    shared: Arc<Mutex<Shared>>,
    marks: usize,
    tasks: Vec<JoinHandle<()>>,
}

impl Caller {
    /// INVITE, wait for the 200 OK, ACK it, and start the media: silence
    /// flows at once, as from a real phone.
    pub async fn call(dial: Dial) -> Result<Caller, CallerError> {
        let sip = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let (lp, rp) = (sip.local_addr()?.port(), rtp.local_addr()?.port());
        let Dial { service, from, to, call_id, answer_within } = &dial;
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rp} RTP/AVP {PT_PCMU} {PT_EVENT}\r\n\
             a=rtpmap:{PT_PCMU} PCMU/8000\r\na=rtpmap:{PT_EVENT} telephone-event/8000\r\na=fmtp:{PT_EVENT} 0-15\r\na=ptime:20\r\n"
        );
        let invite = format!(
            "INVITE sip:{to}@{service} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK{call_id}i;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{from}@127.0.0.1>;tag=c{call_id}\r\nTo: <sip:{to}@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{from}@127.0.0.1:{lp}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let ok = invite_until_answered(&sip, *service, &invite, *answer_within).await?;
        let to_tag_line = header(&ok, "To").ok_or(CallerError::BadAnswer("a To header"))?.to_string();
        let media_port: u16 = ok
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .and_then(|p| p.parse().ok())
            .ok_or(CallerError::BadAnswer("an m=audio line"))?;
        let media = SocketAddr::new(service.ip(), media_port);
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut c = Caller { sip, dial, to_tag_line, cseq: 1, ticks: tx, shared, marks: 0, tasks: Vec::new() };
        c.send_in_dialog("ACK", 1).await?;
        c.tasks.push(tokio::spawn(send_media(rtp.clone(), media, rx, c.shared.clone())));
        c.tasks.push(tokio::spawn(receive_media(rtp, c.shared.clone())));
        c.tasks.push(tokio::spawn(answer_sip(c.sip.clone(), c.shared.clone())));
        Ok(c)
    }

    /// Queues speech (8 kHz PCM) followed by a short silence.
    pub fn say(&mut self, pcm: &[i16]) -> Utterance {
        for f in pcm.chunks(FRAME) {
            let mut frame = f.to_vec();
            frame.resize(FRAME, 0);
            let _ = self.ticks.send(Tick::Audio(frame));
        }
        let u = Utterance(self.marks);
        self.marks += 1;
        let _ = self.ticks.send(Tick::Mark(u.0));
        self.pause(AFTER_SPEECH);
        u
    }

    /// Queues key presses (RFC 4733), each followed by a short silence.
    pub fn keys(&self, keys: &str) -> Result<(), CallerError> {
        if let Some(bad) = keys.chars().find(|&k| digit_to_event(k).is_none()) {
            return Err(CallerError::BadKey(bad));
        }
        for k in keys.chars() {
            let _ = self.ticks.send(Tick::Key(k));
            self.pause(BETWEEN_KEYS);
        }
        Ok(())
    }

    /// Queues `ticks` packets (20 ms each) of silence.
    pub fn pause(&self, ticks: usize) {
        for _ in 0..ticks {
            let _ = self.ticks.send(Tick::Audio(vec![0; FRAME]));
        }
    }

    /// When the last packet of `u` left the socket (waits for it, up to `limit`).
    pub async fn speech_sent(&self, u: Utterance, limit: Duration) -> Result<Instant, CallerError> {
        let start = Instant::now();
        loop {
            if let Some(t) = self.lock().marks.get(&u.0) {
                return Ok(*t);
            }
            if start.elapsed() > limit || self.ticks.is_closed() {
                return Err(CallerError::SenderGone);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Samples of the other side's audio received so far.
    pub fn heard_len(&self) -> usize {
        self.lock().pcm.len()
    }

    /// Everything received so far (8 kHz PCM).
    pub fn heard(&self) -> Vec<i16> {
        self.lock().pcm.clone()
    }

    /// Arrival of the first loud packet after `t`, if any has come yet.
    pub fn first_loud_after(&self, t: Instant) -> Option<Instant> {
        let s = self.lock();
        let i = s.loud.partition_point(|&(_, at)| at <= t);
        s.loud.get(i).map(|&(_, at)| at)
    }

    /// True once the other side sent BYE.
    pub fn hung_up(&self) -> bool {
        self.lock().bye_received
    }

    /// Waits until the other side speaks after sample `from`; returns the
    /// arrival of the first loud packet.
    pub async fn reply_started(&self, from: usize, limit: Duration) -> Result<Instant, CallerError> {
        let start = Instant::now();
        loop {
            {
                let s = self.lock();
                // Packets are 160 samples: the first loud one starting at or after `from`,
                // or the one `from` falls in.
                let i = s.loud.partition_point(|&(at, _)| at + FRAME <= from);
                if let Some(&(_, at)) = s.loud.get(i) {
                    return Ok(at);
                }
            }
            if start.elapsed() > limit {
                return Err(CallerError::NoReply(limit));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the other side has spoken after sample `from` and then
    /// been quiet for `quiet`, or hung up, or `limit` passed; returns what
    /// it said since `from` in any case.
    pub async fn reply(&self, from: usize, quiet: Duration, limit: Duration) -> Vec<i16> {
        let start = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let s = self.lock();
            let from = from.min(s.pcm.len());
            let spoke = s.loud.last().is_some_and(|&(at, _)| at + FRAME > from);
            let done = spoke && s.loud.last().is_some_and(|&(_, t)| t.elapsed() >= quiet);
            if done || start.elapsed() > limit || s.bye_received {
                return s.pcm[from..].to_vec();
            }
        }
    }

    /// Sends BYE and waits up to 2 s for its 200 OK (true when it came).
    pub async fn bye(&mut self) -> Result<bool, CallerError> {
        self.cseq += 1;
        self.send_in_dialog("BYE", self.cseq).await?;
        for _ in 0..100 {
            if self.lock().bye_answered {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(false)
    }

    async fn send_in_dialog(&self, method: &str, cseq: u32) -> Result<(), CallerError> {
        let lp = self.sip.local_addr()?.port();
        let Dial { service, from, to, call_id, .. } = &self.dial;
        let msg = format!(
            "{method} sip:{to}@{service} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK{call_id}{method}{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{from}@127.0.0.1>;tag=c{call_id}\r\n{}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            self.to_tag_line
        );
        self.sip.send_to(msg.as_bytes(), *service).await?;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A task that panicked mid-update leaves plain data behind: still readable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What the RTP sender plays, one 20 ms tick at a time; a mark takes no
/// time, it notes when the packet before it was sent.
enum Tick {
    Audio(Vec<i16>),
    Key(char),
    Mark(usize),
}

/// State the media and SIP tasks share with the script.
#[derive(Default)]
struct Shared {
    /// Every received sample.
    pcm: Vec<i16>,
    /// Loud received packets: (index of their first sample, arrival), in order.
    loud: Vec<(usize, Instant)>,
    /// Utterance → when its last packet was sent.
    marks: BTreeMap<usize, Instant>,
    bye_received: bool,
    bye_answered: bool,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

async fn invite_until_answered(sip: &UdpSocket, service: SocketAddr, invite: &str, within: Duration) -> Result<String, CallerError> {
    let mut buf = vec![0u8; 65535];
    let start = Instant::now();
    while start.elapsed() < within {
        sip.send_to(invite.as_bytes(), service).await?;
        let until = Instant::now() + Duration::from_millis(500);
        while let Ok(r) = tokio::time::timeout_at(until.into(), sip.recv_from(&mut buf)).await {
            // ICMP port unreachable while the service is not listening yet: try again.
            let Ok((n, _)) = r else { break };
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if msg.starts_with("SIP/2.0 200") {
                return Ok(msg);
            }
            if !msg.starts_with("SIP/2.0 1") {
                return Err(CallerError::Refused(msg.lines().next().unwrap_or_default().to_string()));
            }
        }
    }
    Err(CallerError::NoAnswer(within))
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find(|l| l.to_ascii_lowercase().starts_with(&format!("{}:", name.to_ascii_lowercase())))
}

fn rtp_packet(pt: u8, marker: bool, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Real-time 20 ms pacing: one packet per tick, silence when idle; a key
/// press is RFC 4733 packets at their offsets, with audio held meanwhile.
async fn send_media(sock: Arc<UdpSocket>, to: SocketAddr, mut rx: mpsc::UnboundedReceiver<Tick>, shared: Arc<Mutex<Shared>>) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut seq, mut ts, mut n) = (0u16, 0u32, 0u64);
    let mut queue: VecDeque<Tick> = VecDeque::new();
    let mut dtmf: BTreeMap<u64, Vec<(bool, u32, [u8; 4])>> = BTreeMap::new();
    let silence = [ulaw_encode(0); FRAME];
    loop {
        tick.tick().await;
        while let Ok(t) = rx.try_recv() {
            queue.push_back(t);
        }
        if rx.is_closed() && queue.is_empty() && dtmf.is_empty() {
            return;
        }
        n += 1;
        if dtmf.is_empty() {
            let packet = match queue.pop_front() {
                Some(Tick::Key(k)) => {
                    // Keys were checked when queued; an unknown one is skipped.
                    for p in DtmfSender::new(k, ts, KEY_PRESS).into_iter().flatten() {
                        dtmf.entry(n + p.offset.as_millis() as u64 / 20).or_default().push((p.marker, p.timestamp, p.payload));
                    }
                    None
                }
                Some(Tick::Audio(f)) => Some(rtp_packet(PT_PCMU, false, seq, ts, &f.iter().map(|&s| ulaw_encode(s)).collect::<Vec<_>>())),
                // An utterance with no audio: it ends now.
                Some(Tick::Mark(m)) => {
                    lock(&shared).marks.insert(m, Instant::now());
                    Some(rtp_packet(PT_PCMU, false, seq, ts, &silence))
                }
                None => Some(rtp_packet(PT_PCMU, false, seq, ts, &silence)),
            };
            if let Some(p) = packet {
                if sock.send_to(&p, to).await.is_err() {
                    return;
                }
                seq = seq.wrapping_add(1);
            }
        }
        while let Some((&at, _)) = dtmf.first_key_value() {
            if at > n {
                break;
            }
            for (marker, ets, payload) in dtmf.pop_first().map(|(_, v)| v).unwrap_or_default() {
                let _ = sock.send_to(&rtp_packet(PT_EVENT, marker, seq, ets, &payload), to).await;
                seq = seq.wrapping_add(1);
            }
        }
        // Marks right behind the packet just sent: that was the utterance's last.
        let sent = Instant::now();
        while let Some(Tick::Mark(m)) = queue.front() {
            lock(&shared).marks.insert(*m, sent);
            queue.pop_front();
        }
        ts = ts.wrapping_add(FRAME as u32);
    }
}

async fn receive_media(sock: Arc<UdpSocket>, shared: Arc<Mutex<Shared>>) {
    let mut buf = vec![0u8; 2048];
    while let Ok((n, _)) = sock.recv_from(&mut buf).await {
        let at = Instant::now();
        // Only PCMU audio; events and anything shorter than a header are skipped.
        if n < 12 || buf[1] & 0x7f != PT_PCMU {
            continue;
        }
        let start = 12 + 4 * usize::from(buf[0] & 0x0f);
        let pcm: Vec<i16> = buf[start.min(n)..n].iter().map(|&c| ulaw_decode(c)).collect();
        let loud = pcm.iter().any(|s| s.unsigned_abs() > LOUD);
        let mut s = lock(&shared);
        if loud {
            let index = s.pcm.len();
            s.loud.push((index, at));
        }
        s.pcm.extend(pcm);
    }
}

/// Answers the service's BYE (the assistant hangs up after its goodbye)
/// and notes the 200 OK to ours.
async fn answer_sip(sock: Arc<UdpSocket>, shared: Arc<Mutex<Shared>>) {
    let mut buf = vec![0u8; 65535];
    while let Ok((n, from)) = sock.recv_from(&mut buf).await {
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        if msg.starts_with("SIP/2.0 200") && header(&msg, "CSeq").is_some_and(|c| c.trim_end().ends_with("BYE")) {
            lock(&shared).bye_answered = true;
        }
        if msg.starts_with("BYE ") {
            lock(&shared).bye_received = true;
            let mut resp = String::from("SIP/2.0 200 OK\r\n");
            for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
                for l in msg.lines().filter(|l| l.to_ascii_lowercase().starts_with(&format!("{}:", h.to_ascii_lowercase()))) {
                    resp.push_str(l);
                    resp.push_str("\r\n");
                }
            }
            resp.push_str("Content-Length: 0\r\n\r\n");
            let _ = sock.send_to(resp.as_bytes(), from).await;
        }
    }
}
