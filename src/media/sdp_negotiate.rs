//! RFC 3264 offer/answer for one G.711 audio stream with RFC 4733 DTMF and,
//! as [`SdpConfig::srtp`] says, SDES-keyed SRTP (RFC 4568).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::super::srtp::{CryptoAttribute, SrtpParams, SrtpPolicy, SrtpSuite, MASTER_LEN};
use super::{Codec, Direction, MediaDescription, Origin, RtpMap, SdpError, SessionDescription};

/// Telephone-event clock rate and the events we understand (DTMF 0-15).
const TE_CLOCK: u32 = 8000;
const TE_EVENTS: &str = "0-15";

/// Local media parameters.
#[derive(Clone, PartialEq, Eq)]
pub struct SdpConfig {
    /// Address written into `c=` / `o=`.
    pub local_ip: IpAddr,
    /// Local RTP port.
    pub rtp_port: u16,
    /// Codecs in preference order.
    pub codecs: Vec<Codec>,
    /// Payload type for telephone-event in offers we generate.
    pub dtmf_pt: u8,
    /// Packetisation time we send and ask for, in ms.
    pub ptime: u32,
    pub username: String,
    /// Whether to offer/accept SRTP. The endpoint sets it, and only when
    /// the signalling is TLS: SDES keys travel in the SDP.
    pub srtp: SrtpPolicy,
    /// Our SRTP master key||salt, random (from a CSPRNG) and supplied by the
    /// caller, which keeps the session sans-IO; the leading
    /// `suite.master_len()` octets are used. Must be set when `srtp` is not
    /// `Off`. The same key is offered again in re-offers and answers.
    pub srtp_master: [u8; MASTER_LEN],
}

impl SdpConfig {
    pub fn new(local_ip: IpAddr, rtp_port: u16) -> Self {
        SdpConfig {
            local_ip,
            rtp_port,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            dtmf_pt: 101,
            ptime: 20,
            username: "clinivox".into(),
            srtp: SrtpPolicy::Off,
            srtp_master: [0; MASTER_LEN],
        }
    }
}

/// The master key is never printed.
impl fmt::Debug for SdpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdpConfig")
            .field("local_ip", &self.local_ip)
            .field("rtp_port", &self.rtp_port)
            .field("codecs", &self.codecs)
            .field("dtmf_pt", &self.dtmf_pt)
            .field("ptime", &self.ptime)
            .field("username", &self.username)
            .field("srtp", &self.srtp)
            .finish_non_exhaustive()
    }
}

/// Result of a successful negotiation, from our point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    /// Payload type for audio, as negotiated (used both ways).
    pub codec_pt: u8,
    /// Payload type for telephone-event, if both sides support it.
    pub dtmf_pt: Option<u8>,
    /// Where to send RTP (until symmetric-RTP latching says otherwise).
    pub remote: SocketAddr,
    /// Our direction: whether we may send and/or should expect media.
    pub direction: Direction,
    /// Remote's requested packetisation time in ms (20 when absent).
    pub ptime: u32,
    /// SRTP suite and keys when negotiated; `None` is plain RTP.
    pub srtp: Option<SrtpParams>,
}

/// Offer/answer state for one dialog: keeps `o=` identity and version.
#[derive(Clone)]
pub struct SdpSession {
    cfg: SdpConfig,
    session_id: u64,
    version: u64,
    generated_any: bool,
    last_offer: Option<SessionDescription>,
}

impl SdpSession {
    /// `session_id` should be random or time-derived (caller supplies it: sans-IO).
    pub fn new(cfg: SdpConfig, session_id: u64) -> Self {
        SdpSession { cfg, session_id, version: session_id, generated_any: false, last_offer: None }
    }

    pub fn config(&self) -> &SdpConfig {
        &self.cfg
    }

    /// The `a=crypto` lines of our offers: one per suite, tags from 1 in
    /// preference order (GCM 1, AES_CM_128_HMAC_SHA1_80 2), all keyed with
    /// our master.
    fn offered_crypto(&self) -> impl Iterator<Item = CryptoAttribute> + '_ {
        SrtpSuite::PREFERENCE.into_iter().zip(1..).map(|(suite, tag)| CryptoAttribute::new(tag, suite, &self.cfg.srtp_master))
    }

    /// Build an offer (initial or re-offer, e.g. hold with `SendOnly`).
    /// Every SDP we generate after the first carries an incremented version.
    pub fn create_offer(&mut self, direction: Direction) -> SessionDescription {
        let mut formats = Vec::new();
        let mut rtpmaps = Vec::new();
        for c in &self.cfg.codecs {
            formats.push(c.static_pt().to_string());
            rtpmaps.push(codec_rtpmap(*c, c.static_pt()));
        }
        let dpt = self.cfg.dtmf_pt;
        formats.push(dpt.to_string());
        rtpmaps.push(te_rtpmap(dpt));
        let mut m = self.audio_section(formats, rtpmaps, vec![(dpt, TE_EVENTS.into())], direction);
        if self.cfg.srtp != SrtpPolicy::Off {
            // Offered: best-effort SDES on RTP/AVP, which plain peers
            // answer without crypto (RFC 3264 lets them ignore the lines).
            if self.cfg.srtp == SrtpPolicy::Required {
                m.proto = "RTP/SAVP".into();
            }
            let lines: Vec<String> = self.offered_crypto().map(|c| format!("crypto:{c}")).collect();
            m.other_attributes.extend(lines);
        }
        let sdp = self.describe(vec![m]);
        self.last_offer = Some(sdp.clone());
        sdp
    }

    /// Answer a remote offer. `want` limits our direction (e.g. `SendRecv`).
    /// Non-audio or extra audio streams are rejected with port 0, and so are
    /// streams the SRTP policy refuses (see `security`); no stream accepted
    /// is [`SdpError::NotAcceptable`] (488).
    pub fn answer(&mut self, offer: &SessionDescription, want: Direction) -> Result<(SessionDescription, Negotiated), SdpError> {
        let mut chosen: Option<Negotiated> = None;
        let mut sections = Vec::with_capacity(offer.media.len());
        for m in &offer.media {
            let security = if chosen.is_none() && m.port != 0 { self.security(m) } else { None };
            let accepted = match security {
                Some(crypto) => self.pick(offer, m, want)?.map(|neg| (neg, crypto)),
                None => None,
            };
            match accepted {
                Some((mut neg, crypto)) => {
                    let mut formats = vec![neg.codec_pt.to_string()];
                    let mut rtpmaps = vec![codec_rtpmap(neg.codec, neg.codec_pt)];
                    let mut fmtps = Vec::new();
                    if let Some(d) = neg.dtmf_pt {
                        // Echo the offerer's dynamic PT: RFC 3264 §6.1.
                        formats.push(d.to_string());
                        rtpmaps.push(te_rtpmap(d));
                        fmtps.push((d, TE_EVENTS.to_string()));
                    }
                    let mut section = self.audio_section(formats, rtpmaps, fmtps, neg.direction);
                    if let Some(theirs) = crypto {
                        // One line: the offer's tag and suite, our key (RFC 4568 §7.1.2).
                        let ours = CryptoAttribute::new(theirs.tag, theirs.suite, &self.cfg.srtp_master);
                        if m.is_srtp_audio() {
                            section.proto = m.proto.clone();
                        }
                        section.other_attributes.push(format!("crypto:{ours}"));
                        neg.srtp = Some(SrtpParams { suite: theirs.suite, tx: ours.key, rx: theirs.key });
                    }
                    sections.push(section);
                    chosen = Some(neg);
                }
                None => sections.push(rejected(m)),
            }
        }
        let neg = chosen.ok_or(SdpError::NotAcceptable)?;
        Ok((self.describe(sections), neg))
    }

    /// Process the answer to our last offer (outbound calls, re-INVITEs).
    pub fn accept_answer(&mut self, answer: &SessionDescription) -> Result<Negotiated, SdpError> {
        let offer = self.last_offer.as_ref().ok_or(SdpError::AnswerMismatch("no offer outstanding"))?;
        let ours = &offer.media[0];
        let m = answer.media.first().ok_or(SdpError::AnswerMismatch("no m= line"))?;
        if m.port == 0 || !(m.is_rtp_audio() || m.is_srtp_audio()) {
            return Err(SdpError::NotAcceptable);
        }
        let srtp = self.answer_security(ours, m)?;
        let (codec, codec_pt) = m
            .payload_types()
            .find_map(|pt| {
                let c = codec_of(m, pt)?;
                self.cfg.codecs.contains(&c).then_some((c, pt))
            })
            .ok_or(SdpError::NotAcceptable)?;
        let dtmf_pt = m.payload_types().find(|pt| is_telephone_event(m, *pt));
        let (remote, theirs) = remote_and_direction(answer, m)?;
        let direction = theirs.reverse().intersect(ours.direction.unwrap_or_default());
        Ok(Negotiated { codec, codec_pt, dtmf_pt, remote, direction, ptime: m.ptime.unwrap_or(20), srtp })
    }

    /// Whether and how we take an offered stream: `None` rejects it,
    /// `Some(None)` is plain RTP, `Some(Some(line))` SRTP keyed by the
    /// offer's `line` (the first in our suite preference).
    ///
    /// - `Off`: plain RTP/AVP(F) only; `a=crypto` lines are ignored.
    /// - `Offered`: SRTP when the stream carries a usable line, RTP/SAVP(F)
    ///   or "best effort" RTP/AVP(F); plain RTP/AVP(F) otherwise.
    /// - `Required`: only streams with a usable line.
    fn security(&self, m: &MediaDescription) -> Option<Option<CryptoAttribute>> {
        let secure = m.is_srtp_audio();
        if !secure && !m.is_rtp_audio() {
            return None;
        }
        if self.cfg.srtp == SrtpPolicy::Off {
            return (!secure).then_some(None);
        }
        let best = SrtpSuite::PREFERENCE.into_iter().find_map(|s| m.crypto().find(|c| c.suite == s));
        match best {
            Some(line) => Some(Some(line)),
            None if secure || self.cfg.srtp == SrtpPolicy::Required => None,
            None => Some(None),
        }
    }

    /// SRTP from an answer to our offer: its `a=crypto` line must repeat the
    /// tag and suite of one of ours (RFC 4568 §7.1.3). None is plain RTP
    /// unless we required SRTP or the answer's profile is SAVP.
    fn answer_security(&self, ours: &MediaDescription, m: &MediaDescription) -> Result<Option<SrtpParams>, SdpError> {
        if self.cfg.srtp == SrtpPolicy::Off {
            return if m.is_srtp_audio() { Err(SdpError::NotAcceptable) } else { Ok(None) };
        }
        let found = m.crypto().find_map(|theirs| {
            let offered = ours.crypto().find(|o| o.tag == theirs.tag && o.suite == theirs.suite)?;
            Some(SrtpParams { suite: theirs.suite, tx: offered.key, rx: theirs.key })
        });
        match found {
            Some(p) => Ok(Some(p)),
            None if self.cfg.srtp == SrtpPolicy::Required || m.is_srtp_audio() => Err(SdpError::NotAcceptable),
            None => Ok(None),
        }
    }

    /// Choose codec/DTMF for one offered audio section; `None` if no common codec.
    fn pick(&self, offer: &SessionDescription, m: &MediaDescription, want: Direction) -> Result<Option<Negotiated>, SdpError> {
        // Our preference order wins; the PT is whatever the offerer used.
        let found = self.cfg.codecs.iter().find_map(|c| m.payload_types().find(|pt| codec_of(m, *pt) == Some(*c)).map(|pt| (*c, pt)));
        let Some((codec, codec_pt)) = found else {
            return Ok(None);
        };
        let dtmf_pt = m.payload_types().find(|pt| is_telephone_event(m, *pt));
        let (remote, theirs) = remote_and_direction(offer, m)?;
        let direction = theirs.reverse().intersect(want);
        Ok(Some(Negotiated { codec, codec_pt, dtmf_pt, remote, direction, ptime: m.ptime.unwrap_or(20), srtp: None }))
    }

    fn audio_section(
        &self,
        formats: Vec<String>,
        rtpmaps: Vec<RtpMap>,
        fmtps: Vec<(u8, String)>,
        direction: Direction,
    ) -> MediaDescription {
        MediaDescription {
            media: "audio".into(),
            port: self.cfg.rtp_port,
            proto: "RTP/AVP".into(),
            formats,
            connection: None,
            rtpmaps,
            fmtps,
            ptime: Some(self.cfg.ptime),
            direction: Some(direction),
            other_attributes: Vec::new(),
        }
    }

    fn describe(&mut self, media: Vec<MediaDescription>) -> SessionDescription {
        // RFC 3264 §8: a changed description needs a higher o= version.
        if self.generated_any {
            self.version += 1;
        }
        self.generated_any = true;
        SessionDescription {
            origin: Origin {
                username: self.cfg.username.clone(),
                session_id: self.session_id,
                session_version: self.version,
                address: self.cfg.local_ip,
            },
            session_name: "Clinivox".into(),
            connection: Some(self.cfg.local_ip),
            direction: None,
            media,
        }
    }
}

/// Our offered keys are never printed (the last offer carries them).
impl fmt::Debug for SdpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdpSession")
            .field("cfg", &self.cfg)
            .field("session_id", &self.session_id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A rejected stream keeps its media/proto/formats with port 0 (RFC 3264 §6).
fn rejected(m: &MediaDescription) -> MediaDescription {
    MediaDescription {
        media: m.media.clone(),
        port: 0,
        proto: m.proto.clone(),
        formats: if m.formats.is_empty() { vec!["0".into()] } else { m.formats.clone() },
        ..Default::default()
    }
}

/// Remote RTP address and the peer's effective direction. A `c=0.0.0.0`
/// (RFC 2543-style hold) means the peer does not want to receive.
fn remote_and_direction(sdp: &SessionDescription, m: &MediaDescription) -> Result<(SocketAddr, Direction), SdpError> {
    let ip = sdp.media_connection(m).ok_or(SdpError::MissingConnection)?;
    let mut dir = sdp.media_direction(m);
    if ip.is_unspecified() {
        dir = Direction::from_flags(dir.sends(), false);
    }
    Ok((SocketAddr::new(ip, m.port), dir))
}

fn codec_of(m: &MediaDescription, pt: u8) -> Option<Codec> {
    match m.rtpmap(pt) {
        Some(r) if r.clock_rate == 8000 && r.channels.unwrap_or(1) == 1 => {
            if r.encoding.eq_ignore_ascii_case("PCMU") {
                Some(Codec::Pcmu)
            } else if r.encoding.eq_ignore_ascii_case("PCMA") {
                Some(Codec::Pcma)
            } else {
                None
            }
        }
        Some(_) => None,
        // Static payload types need no rtpmap (RFC 3551 table 4).
        None => match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        },
    }
}

fn is_telephone_event(m: &MediaDescription, pt: u8) -> bool {
    m.rtpmap(pt).is_some_and(|r| r.encoding.eq_ignore_ascii_case("telephone-event") && r.clock_rate == TE_CLOCK)
}

fn codec_rtpmap(c: Codec, pt: u8) -> RtpMap {
    RtpMap { pt, encoding: c.encoding_name().into(), clock_rate: 8000, channels: None }
}

fn te_rtpmap(pt: u8) -> RtpMap {
    RtpMap { pt, encoding: "telephone-event".into(), clock_rate: TE_CLOCK, channels: None }
}
