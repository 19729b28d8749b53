//! TLS for SIP (RFC 3261 §26, RFC 5630) and the HTTPS API, with rustls.
//!
//! - Our certificate chain and key come from PEM files; [`ReloadingCert`]
//!   looks at their modification times at most once a second, on a
//!   handshake, and swaps in the new pair when both load and match (a
//!   renewed certificate is picked up without a restart; a half-written or
//!   broken pair is logged and the old one kept).
//! - TLS 1.2 and 1.3 only, with rustls's aws-lc-rs provider: AEAD suites
//!   with forward secrecy only (no CBC, no RSA key exchange).
//! - Towards a trunk we verify the carrier's certificate: against the
//!   system's roots, a CA file of its own (`tls_ca`), or one pinned
//!   certificate (`tls_pin_sha256`); and present a client certificate when
//!   the carrier wants mutual TLS.
//! - [`check`] is what `clinivox check-config` says about a pair of files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Where the system keeps its trusted roots (Debian's ca-certificates).
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A certificate chain (leaf first) and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, String),
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    #[error("the private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("unusable private key in {0}: {1}")]
    BadKey(PathBuf, String),
    #[error("certificate in {0} cannot be parsed: {1}")]
    BadCertificate(PathBuf, String),
    #[error("certificate in {path} expired on {not_after}")]
    Expired { path: PathBuf, not_after: String },
    #[error("certificate in {path} is not valid before {not_before}")]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("tls_pin_sha256 must be 64 hex digits (colons allowed), the SHA-256 of the certificate's DER")]
    BadPin,
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// rustls with aws-lc-rs: AEAD suites with (EC)DHE only, and the hybrid
/// X25519MLKEM768 key exchange first (post-quantum: traffic recorded today
/// stays private), falling back to X25519/P-256 for older peers.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read(path.to_path_buf(), e.to_string()))
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey(path.to_path_buf()))
}

/// Load a pair, checking that the key is the certificate's.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain = load_chain(&files.cert)?;
    let key = load_key(&files.key)?;
    let signing = provider().key_provider.load_private_key(key).map_err(|e| TlsError::BadKey(files.key.clone(), e.to_string()))?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch { cert: files.cert.clone(), key: files.key.clone() }),
        Err(e) => Err(TlsError::BadCertificate(files.cert.clone(), e.to_string())),
    }
}

/// What check-config reports about a usable pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertReport {
    pub subject: String,
    pub not_after: String,
    /// Whole days from `now` to expiry.
    pub days_left: i64,
}

/// Load the pair and look at the leaf's validity period at `now`: missing,
/// unreadable, mismatched, expired and not-yet-valid are errors.
pub fn check(files: &TlsFiles, now: SystemTime) -> Result<CertReport, TlsError> {
    let ck = load_certified_key(files)?;
    let leaf = ck.cert.first().ok_or_else(|| TlsError::NoCertificate(files.cert.clone()))?;
    validity(&files.cert, leaf, now)
}

fn validity(path: &Path, der: &CertificateDer<'_>, now: SystemTime) -> Result<CertReport, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::BadCertificate(path.to_path_buf(), e.to_string()))?;
    let v = cert.validity();
    let now_s = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if now_s > v.not_after.timestamp() {
        return Err(TlsError::Expired { path: path.to_path_buf(), not_after: v.not_after.to_string() });
    }
    if now_s < v.not_before.timestamp() {
        return Err(TlsError::NotYetValid { path: path.to_path_buf(), not_before: v.not_before.to_string() });
    }
    Ok(CertReport {
        subject: cert.subject().to_string(),
        not_after: v.not_after.to_string(),
        days_left: (v.not_after.timestamp() - now_s) / 86_400,
    })
}

/// Our certificate, reloaded when its files change on disk.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    state: Mutex<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    stamp: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

/// Files are looked at no more often than this (a stat per handshake
/// would cost little, but a flood of handshakes should not cost stats).
const RELOAD_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

fn stamp(files: &TlsFiles) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(&files.cert), m(&files.key))
}

impl ReloadingCert {
    /// Fails when the files are not a usable pair now.
    pub fn new(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let key = Arc::new(load_certified_key(&files)?);
        let stamp = stamp(&files);
        Ok(Arc::new(ReloadingCert { files, state: Mutex::new(Loaded { key, stamp, checked: Instant::now() }) }))
    }

    /// The pair to present now, reloading it first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.checked.elapsed() >= RELOAD_CHECK {
            st.checked = Instant::now();
            let now = stamp(&self.files);
            if now != st.stamp {
                match load_certified_key(&self.files) {
                    Ok(k) => {
                        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                        st.key = Arc::new(k);
                        st.stamp = now;
                    }
                    // Half-written (a renewal in progress) or broken: keep
                    // serving the old one and look again next time.
                    Err(e) => tracing::warn!(error = %e, "TLS certificate changed on disk but cannot be used; keeping the previous one"),
                }
            }
        }
        st.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A server configuration presenting `cert`; `alpn` e.g. `http/1.1`.
pub fn server_config(cert: Arc<ReloadingCert>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let mut cfg =
        ServerConfig::builder_with_provider(provider()).with_protocol_versions(VERSIONS)?.with_no_client_auth().with_cert_resolver(cert);
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// How we check a TLS server we connect to (a carrier's proxy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerTrust {
    /// PEM file of the CA(s) to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// SHA-256 of the one certificate to accept (its DER), hex.
    pub pin_sha256: Option<String>,
    /// Our client certificate, for carriers that want mutual TLS.
    pub client: Option<TlsFiles>,
}

/// Parse `ab:cd:…` or `abcd…` into 32 bytes.
pub fn parse_pin(s: &str) -> Result<[u8; 32], TlsError> {
    let hex_only: String = s.chars().filter(|c| *c != ':').collect();
    let v = hex::decode(hex_only).map_err(|_| TlsError::BadPin)?;
    v.try_into().map_err(|_| TlsError::BadPin)
}

/// SHA-256 of a certificate's DER, as `tls_pin_sha256` takes it.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

pub fn client_config(trust: &PeerTrust) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider()).with_protocol_versions(VERSIONS)?;
    let builder = match &trust.pin_sha256 {
        Some(pin) => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(PinnedCert { pin: parse_pin(pin)?, provider: provider() }))
        }
        None => {
            let path = trust.ca.clone().unwrap_or_else(|| PathBuf::from(SYSTEM_ROOTS));
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(load_chain(&path)?);
            if added == 0 {
                return Err(TlsError::NoCertificate(path));
            }
            builder.with_root_certificates(roots)
        }
    };
    let cfg = match &trust.client {
        Some(files) => {
            let ck = load_certified_key(files)?;
            builder.with_client_auth_cert(ck.cert, load_key(&files.key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// Accepts exactly one certificate, by its SHA-256, within its validity
/// period; the handshake signature is still checked against it, so only
/// the holder of its key gets through.
#[derive(Debug)]
struct PinnedCert {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&got[..], &self.pin[..])) {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure));
        }
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(now.as_secs());
        match validity(Path::new("pinned"), end_entity, at) {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(TlsError::Expired { .. }) => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)),
            Err(TlsError::NotYetValid { .. }) => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet)),
            Err(_) => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The name to check a server's certificate against: a DNS name, or an IP
/// address (certificates for a carrier's bare IP carry it as an IP SAN).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(h.to_string()).ok()
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
