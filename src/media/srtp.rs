//! SRTP (RFC 3711) for one call, keyed by SDES (RFC 4568 `a=crypto`, in
//! `srtp_sdes.rs`).
//!
//! The cryptography is webrtc-rs's `webrtc-srtp` crate, never ours: this
//! module picks the suite, carries the master keys from SDP to its
//! contexts, and stands between those contexts and the network. What a
//! stranger sends must not grow memory or disturb the peer's stream, so:
//!
//! - the RTP header is bounds-checked here before the crate parses it (the
//!   `rtp` crate's extension walk panics on bad lengths);
//! - each remote SSRC gets its own context with a replay window, created
//!   only once a packet of that SSRC has authenticated, at most
//!   [`MAX_STREAMS`] of them; packets of unknown SSRCs are tried on a
//!   "probe" context without replay state (a forged packet cannot prime a
//!   window), which is rebuilt after [`PROBE_FAILURES`] failures because the
//!   crate keeps an entry for every SSRC it is shown.
//!
//! SRTCP is not handled: the RTP session ignores muxed RTCP unread.

use std::borrow::Cow;
use std::fmt;

use rtp::header::Header;
use serde::Deserialize;
use thiserror::Error;
use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtp_no_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;
use webrtc_util::marshal::{MarshalSize, Unmarshal};

#[path = "srtp_sdes.rs"]
mod sdes;
pub use sdes::{CryptoAttribute, CryptoError};

/// Longest master key||salt we use (AES_CM_128: 16 + 14 octets).
pub const MASTER_LEN: usize = 30;
/// Replay window per remote SSRC (RFC 3711 §3.3.2: at least 64; libsrtp's 128).
pub const REPLAY_WINDOW: usize = 128;
/// Remote SSRCs with a context of their own; the least recently heard one
/// makes room for a new one.
pub const MAX_STREAMS: usize = 8;
/// Failed packets of unknown SSRCs the probe context absorbs before it is
/// rebuilt (each leaves an entry for its SSRC in the crate's table).
pub const PROBE_FAILURES: u32 = 64;

/// Whether a trunk or extension uses SRTP (`srtp = "off" | "offered" | "required"`).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SrtpPolicy {
    /// Never: RTP/SAVP offers are rejected, `a=crypto` lines ignored.
    #[default]
    Off,
    /// Use SRTP when the peer does; our offers carry `a=crypto` on RTP/AVP
    /// ("best effort" SDES, as baresip's `mediaenc=srtp` and Asterisk do).
    Offered,
    /// A call without SRTP is refused (488); our offers are RTP/SAVP.
    Required,
}

/// SRTP crypto-suites we negotiate (SDES names in [`SrtpSuite::sdes_name`]).
/// AES_CM_128_HMAC_SHA1_32 is not among them: `webrtc-srtp` lacks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpSuite {
    /// `AES_CM_128_HMAC_SHA1_80` (RFC 4568 §6.2.1): 16-octet key, 14-octet salt.
    AesCm128HmacSha1_80,
    /// `AEAD_AES_128_GCM` (RFC 7714 §12): 16-octet key, 12-octet salt.
    AeadAes128Gcm,
}

impl SrtpSuite {
    /// Our preference: GCM (one pass, a 16-octet tag) when the peer offers
    /// it, else the suite every SDES implementation has.
    pub const PREFERENCE: [SrtpSuite; 2] = [SrtpSuite::AeadAes128Gcm, SrtpSuite::AesCm128HmacSha1_80];

    pub fn sdes_name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    pub fn from_sdes_name(name: &str) -> Option<Self> {
        Self::PREFERENCE.into_iter().find(|s| s.sdes_name().eq_ignore_ascii_case(name))
    }

    /// Master key length in octets.
    pub fn key_len(self) -> usize {
        16
    }

    /// Master salt length in octets.
    pub fn salt_len(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => 14,
            SrtpSuite::AeadAes128Gcm => 12,
        }
    }

    /// Length of the inline key||salt.
    pub fn master_len(self) -> usize {
        self.key_len() + self.salt_len()
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            SrtpSuite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        }
    }
}

/// Negotiated SRTP: the suite and both master keys. Only the first
/// `suite.master_len()` octets of `tx`/`rx` are used.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SrtpParams {
    pub suite: SrtpSuite,
    /// Our master key||salt: what we protect with, as we sent it in SDP.
    pub tx: [u8; MASTER_LEN],
    /// The peer's master key||salt: what we unprotect with.
    pub rx: [u8; MASTER_LEN],
}

impl SrtpParams {
    pub fn tx_master(&self) -> &[u8] {
        &self.tx[..self.suite.master_len()]
    }

    pub fn rx_master(&self) -> &[u8] {
        &self.rx[..self.suite.master_len()]
    }
}

/// Keys are never printed.
impl fmt::Debug for SrtpParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpParams").field("suite", &self.suite).finish_non_exhaustive()
    }
}

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SrtpError {
    #[error("not an SRTP packet")]
    Malformed,
    #[error("SRTP authentication failed")]
    Authentication,
    #[error("replayed SRTP packet")]
    Replay,
    #[error("SRTP master key or salt of the wrong length")]
    KeyLength,
    #[error("cannot protect the RTP packet")]
    Protect,
}

/// The SRTP state of one call: one context that protects what we send, and
/// per remote SSRC one that unprotects what we receive.
pub struct SrtpContexts {
    params: SrtpParams,
    tx: Context,
    streams: Vec<RxStream>,
    probe: Option<Probe>,
    /// Counts unprotected packets; orders `streams` by last use.
    clock: u64,
}

struct RxStream {
    ssrc: u32,
    ctx: Context,
    used: u64,
}

struct Probe {
    ctx: Context,
    failures: u32,
}

impl SrtpContexts {
    pub fn new(params: &SrtpParams) -> Result<Self, SrtpError> {
        let tx = context(params.suite, params.tx_master(), false)?;
        // Built now so that a bad remote key fails here, not per packet.
        let probe = Probe { ctx: context(params.suite, params.rx_master(), false)?, failures: 0 };
        Ok(SrtpContexts { params: *params, tx, streams: Vec::new(), probe: Some(probe), clock: 0 })
    }

    pub fn params(&self) -> &SrtpParams {
        &self.params
    }

    /// Apply renegotiated parameters (re-INVITE). The sending context is
    /// kept while our key and suite stay the same, so its packet index (and
    /// rollover counter) goes on: restarting it under the same key would
    /// reuse keystream (RFC 3711 §9.1). A new remote key or suite starts the
    /// receiving side over.
    pub fn update(&mut self, params: &SrtpParams) -> Result<(), SrtpError> {
        if *params == self.params {
            return Ok(());
        }
        let same_suite = params.suite == self.params.suite;
        let tx = if same_suite && params.tx_master() == self.params.tx_master() {
            None
        } else {
            Some(context(params.suite, params.tx_master(), false)?)
        };
        if !same_suite || params.rx_master() != self.params.rx_master() {
            let probe = Probe { ctx: context(params.suite, params.rx_master(), false)?, failures: 0 };
            self.streams.clear();
            self.probe = Some(probe);
        }
        if let Some(tx) = tx {
            self.tx = tx;
        }
        self.params = *params;
        Ok(())
    }

    /// Encrypt and authenticate one RTP packet of ours.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        match self.tx.encrypt_rtp(packet) {
            Ok(b) => Ok(b.to_vec()),
            Err(_) => Err(SrtpError::Protect),
        }
    }

    /// Authenticate and decrypt one received SRTP packet; the plain RTP
    /// packet on success. Forged, tampered, replayed or garbage packets are
    /// errors and leave the state of every authenticated stream untouched.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let header = checked_header(packet)?;
        self.clock += 1;
        let clock = self.clock;
        if let Some(s) = self.streams.iter_mut().find(|s| s.ssrc == header.ssrc) {
            let plain = s.ctx.decrypt_rtp_with_header(packet, &header).map_err(classify)?;
            s.used = clock;
            return Ok(plain.to_vec());
        }
        let probe = match self.probe.as_mut() {
            Some(p) => p,
            None => self.probe.insert(Probe { ctx: context(self.params.suite, self.params.rx_master(), false)?, failures: 0 }),
        };
        if let Err(e) = probe.ctx.decrypt_rtp_with_header(packet, &header) {
            probe.failures += 1;
            if probe.failures >= PROBE_FAILURES {
                self.probe = None;
            }
            return Err(classify(e));
        }
        // The probe now holds this SSRC's index: the next unknown SSRC gets
        // a fresh one. The stream's own context starts its replay window at
        // this (authentic) packet.
        self.probe = None;
        let mut ctx = context(self.params.suite, self.params.rx_master(), true)?;
        let plain = ctx.decrypt_rtp_with_header(packet, &header).map_err(classify)?;
        if self.streams.len() >= MAX_STREAMS {
            if let Some(oldest) = self.streams.iter().enumerate().min_by_key(|(_, s)| s.used).map(|(i, _)| i) {
                self.streams.swap_remove(oldest);
            }
        }
        self.streams.push(RxStream { ssrc: header.ssrc, ctx, used: clock });
        Ok(plain.to_vec())
    }
}

impl fmt::Debug for SrtpContexts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContexts").field("suite", &self.params.suite).field("streams", &self.streams.len()).finish()
    }
}

/// How one RTP session's packets are protected on the wire: what
/// `RtpSession` holds, so that it has one call on the way in and one on the
/// way out.
#[derive(Debug)]
pub(super) enum Protection {
    Plain,
    Srtp(Box<SrtpContexts>),
    /// SRTP was negotiated but its contexts could not be built: nothing is
    /// sent or accepted, rather than anything in the clear.
    Unusable(SrtpError),
}

impl Protection {
    pub(super) fn new(params: Option<SrtpParams>) -> Self {
        match params.map(|p| SrtpContexts::new(&p)) {
            None => Protection::Plain,
            Some(Ok(c)) => Protection::Srtp(Box::new(c)),
            Some(Err(e)) => Protection::Unusable(e),
        }
    }

    /// Renegotiated (re-INVITE): see [`SrtpContexts::update`].
    pub(super) fn update(&mut self, params: Option<SrtpParams>) {
        if let (Protection::Srtp(c), Some(p)) = (&mut *self, params) {
            if let Err(e) = c.update(&p) {
                *self = Protection::Unusable(e);
            }
            return;
        }
        *self = Protection::new(params);
    }

    pub(super) fn protect(&mut self, packet: Vec<u8>) -> Result<Vec<u8>, SrtpError> {
        match self {
            Protection::Plain => Ok(packet),
            Protection::Srtp(c) => c.protect_rtp(&packet),
            Protection::Unusable(e) => Err(*e),
        }
    }

    pub(super) fn unprotect<'a>(&mut self, packet: &'a [u8]) -> Result<Cow<'a, [u8]>, SrtpError> {
        match self {
            Protection::Plain => Ok(Cow::Borrowed(packet)),
            Protection::Srtp(c) => c.unprotect_rtp(packet).map(Cow::Owned),
            Protection::Unusable(e) => Err(*e),
        }
    }
}

fn context(suite: SrtpSuite, master: &[u8], replay_protection: bool) -> Result<Context, SrtpError> {
    let (key, salt) = master.split_at(suite.key_len().min(master.len()));
    let replay = if replay_protection { srtp_replay_protection(REPLAY_WINDOW) } else { srtp_no_replay_protection() };
    Context::new(key, salt, suite.profile(), Some(replay), None).map_err(|_| SrtpError::KeyLength)
}

/// The RTP header, checked so that the crate's own parse cannot panic and
/// its idea of where the payload starts is the packet's.
fn checked_header(packet: &[u8]) -> Result<Header, SrtpError> {
    let hlen = super::rtp_session::rtp_header_len(packet).ok_or(SrtpError::Malformed)?;
    let header = Header::unmarshal(&mut &packet[..hlen]).map_err(|_| SrtpError::Malformed)?;
    // An extension the parser stops early in would shift the payload offset.
    if header.version != 2 || header.marshal_size() != hlen {
        return Err(SrtpError::Malformed);
    }
    Ok(header)
}

fn classify(e: webrtc_srtp::Error) -> SrtpError {
    use webrtc_srtp::Error as E;
    match e {
        E::SrtpSsrcDuplicated(..) | E::ErrDuplicated => SrtpError::Replay,
        E::ErrTooShortRtp | E::SrtpTooSmall(..) => SrtpError::Malformed,
        _ => SrtpError::Authentication,
    }
}

#[cfg(test)]
#[path = "srtp_tests.rs"]
mod tests;
