//! RFC 4568 SDES: the value of an SDP
//! `a=crypto:<tag> <crypto-suite> inline:<key||salt>[|<lifetime>][|<MKI>:<length>] [<session-param> ...]`
//! attribute (§9.1), parsed and written.
//!
//! Only what we can honour is accepted: one inline key without MKI, no
//! session parameters but the window-size hint. A line we refuse is
//! skipped by the offer/answer code, which then picks another or none.

use std::fmt;

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use thiserror::Error;

use super::{SrtpSuite, MASTER_LEN};

/// RFC 4568's base64 (RFC 3548) is padded; some stacks leave the padding out.
const BASE64: GeneralPurpose =
    GeneralPurpose::new(&STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent));
/// Longest base64 text we decode (a 30-octet key||salt is 40 characters).
const MAX_KEY_TEXT: usize = 64;

/// Why an `a=crypto` line cannot be used.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    #[error("malformed a=crypto attribute")]
    Syntax,
    #[error("unsupported crypto-suite")]
    UnsupportedSuite,
    #[error("key method other than one inline key")]
    KeyMethod,
    #[error("MKI is not supported")]
    Mki,
    #[error("session parameter we cannot honour")]
    SessionParam,
    #[error("key||salt is not base64")]
    Base64,
    #[error("key||salt of the wrong length for the suite")]
    KeyLength,
}

/// One usable `a=crypto` line.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// Identifies the line in the offer; the answer repeats it (§5.1).
    pub tag: u32,
    pub suite: SrtpSuite,
    /// Master key||salt; the first `suite.master_len()` octets are used.
    pub key: [u8; MASTER_LEN],
}

impl CryptoAttribute {
    /// A line for `suite` keyed with the leading octets of `master`.
    pub fn new(tag: u32, suite: SrtpSuite, master: &[u8; MASTER_LEN]) -> Self {
        CryptoAttribute { tag, suite, key: *master }
    }

    pub fn master(&self) -> &[u8] {
        &self.key[..self.suite.master_len()]
    }

    /// Parse an attribute value, what follows `a=crypto:`.
    pub fn parse(value: &str) -> Result<Self, CryptoError> {
        let mut fields = value.split_ascii_whitespace();
        let tag = fields.next().ok_or(CryptoError::Syntax)?;
        // tag = 1*9DIGIT
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CryptoError::Syntax);
        }
        let tag = tag.parse().map_err(|_| CryptoError::Syntax)?;
        let suite = SrtpSuite::from_sdes_name(fields.next().ok_or(CryptoError::Syntax)?).ok_or(CryptoError::UnsupportedSuite)?;
        let key_params = fields.next().ok_or(CryptoError::Syntax)?;
        // WSH (§6.3.7) is a hint to the receiver, whose window is ours to
        // choose; every other parameter changes the transform (KDR,
        // UNENCRYPTED_*, UNAUTHENTICATED_SRTP, FEC_*): refused.
        for param in fields {
            let wsh = param.strip_prefix("WSH=").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !wsh {
                return Err(CryptoError::SessionParam);
            }
        }
        // Several keys (`;`-separated) need MKIs to tell them apart.
        if key_params.contains(';') {
            return Err(CryptoError::KeyMethod);
        }
        let (method, info) = key_params.split_once(':').ok_or(CryptoError::Syntax)?;
        if !method.eq_ignore_ascii_case("inline") {
            return Err(CryptoError::KeyMethod);
        }
        let mut parts = info.split('|');
        let key_text = parts.next().unwrap_or_default();
        let mut lifetime_seen = false;
        for part in parts {
            if part.contains(':') {
                return Err(CryptoError::Mki);
            }
            // lifetime = ["2^"] 1*DIGIT, at most once and before the MKI.
            let digits = part.strip_prefix("2^").unwrap_or(part);
            if lifetime_seen || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CryptoError::Syntax);
            }
            lifetime_seen = true;
        }
        if key_text.len() > MAX_KEY_TEXT {
            return Err(CryptoError::KeyLength);
        }
        let decoded = BASE64.decode(key_text).map_err(|_| CryptoError::Base64)?;
        if decoded.len() != suite.master_len() {
            return Err(CryptoError::KeyLength);
        }
        let mut key = [0u8; MASTER_LEN];
        key[..decoded.len()].copy_from_slice(&decoded);
        Ok(CryptoAttribute { tag, suite, key })
    }
}

/// The attribute value, for `a=crypto:{}`.
impl fmt::Display for CryptoAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} inline:{}", self.tag, self.suite.sdes_name(), BASE64.encode(self.master()))
    }
}

/// The key is never printed.
impl fmt::Debug for CryptoAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoAttribute").field("tag", &self.tag).field("suite", &self.suite).finish_non_exhaustive()
    }
}
