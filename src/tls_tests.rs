use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::*;

struct Made {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

fn self_signed(name: &str, years: Option<(i32, i32)>) -> Made {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    if let Some((from, to)) = years {
        p.not_before = rcgen::date_time_ymd(from, 1, 1);
        p.not_after = rcgen::date_time_ymd(to, 1, 1);
    }
    let c = p.self_signed(&key).unwrap();
    Made { cert_pem: c.pem(), key_pem: key.serialize_pem(), der: c.der().to_vec() }
}

fn write(dir: &Path, name: &str, m: &Made) -> TlsFiles {
    let files = TlsFiles { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) };
    std::fs::write(&files.cert, &m.cert_pem).unwrap();
    std::fs::write(&files.key, &m.key_pem).unwrap();
    files
}

#[test]
fn check_reports_every_problem_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good", &self_signed("clinic.example", None));
    let r = check(&good, SystemTime::now()).unwrap();
    assert!(r.subject.contains("rcgen") || !r.subject.is_empty(), "{r:?}");
    assert!(r.days_left > 300, "{r:?}");

    let missing = TlsFiles { cert: dir.path().join("nope.crt"), key: good.key.clone() };
    assert!(matches!(check(&missing, SystemTime::now()), Err(TlsError::Read(..))));

    let other = write(dir.path(), "other", &self_signed("other.example", None));
    let mixed = TlsFiles { cert: good.cert.clone(), key: other.key.clone() };
    let e = check(&mixed, SystemTime::now()).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");

    let expired = write(dir.path(), "expired", &self_signed("old.example", Some((2020, 2021))));
    let e = check(&expired, SystemTime::now()).unwrap_err();
    assert!(matches!(e, TlsError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("expired on"), "{e}");

    let future = write(dir.path(), "future", &self_signed("new.example", Some((2090, 2091))));
    assert!(matches!(check(&future, SystemTime::now()), Err(TlsError::NotYetValid { .. })));

    std::fs::write(dir.path().join("junk.crt"), "not a certificate").unwrap();
    let junk = TlsFiles { cert: dir.path().join("junk.crt"), key: good.key.clone() };
    assert!(matches!(check(&junk, SystemTime::now()), Err(TlsError::NoCertificate(_))));
    let nokey = TlsFiles { cert: good.cert.clone(), key: dir.path().join("junk.crt") };
    assert!(matches!(check(&nokey, SystemTime::now()), Err(TlsError::NoKey(_))));
}

#[test]
fn reloading_cert_swaps_in_a_changed_pair_and_keeps_the_old_one_when_broken() {
    let dir = tempfile::tempdir().unwrap();
    let first = self_signed("one.example", None);
    let files = write(dir.path(), "srv", &first);
    let rc = ReloadingCert::new(files.clone()).unwrap();
    assert_eq!(rc.current().cert[0].as_ref(), &first.der[..]);

    // Broken write: the old pair stays.
    std::thread::sleep(RELOAD_CHECK + Duration::from_millis(50));
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    assert_eq!(rc.current().cert[0].as_ref(), &first.der[..]);

    // A renewed pair: served from the next check on.
    let second = self_signed("two.example", None);
    std::thread::sleep(RELOAD_CHECK + Duration::from_millis(50));
    write(dir.path(), "srv", &second);
    assert_eq!(rc.current().cert[0].as_ref(), &second.der[..]);
}

#[test]
fn pins_parse_with_or_without_colons() {
    let m = self_signed("pin.example", None);
    let fp = fingerprint(&m.der);
    assert_eq!(fp.len(), 64);
    let colons: String = fp.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(":");
    assert_eq!(parse_pin(&fp).unwrap(), parse_pin(&colons.to_uppercase()).unwrap());
    assert!(matches!(parse_pin("abcd"), Err(TlsError::BadPin)));
    assert!(matches!(parse_pin(&"zz".repeat(32)), Err(TlsError::BadPin)));
}

/// A real handshake over a socket pair: the trunk side checks the server
/// against a CA, a pin, or refuses it.
#[tokio::test]
async fn client_verification_by_ca_and_by_pin() {
    let dir = tempfile::tempdir().unwrap();
    // CA and a leaf it signed for 127.0.0.1.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_p = CertificateParams::new(vec!["Clinic test CA".to_string()]).unwrap();
    ca_p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_p.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let server = write(dir.path(), "leaf", &Made { cert_pem: leaf.pem(), key_pem: leaf_key.serialize_pem(), der: leaf.der().to_vec() });
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let stranger = self_signed("127.0.0.1", None);
    std::fs::write(dir.path().join("stranger-ca.pem"), &stranger.cert_pem).unwrap();

    let trust_ca = PeerTrust { ca: Some(dir.path().join("ca.pem")), ..Default::default() };
    assert!(handshake(&server, &trust_ca).await.is_ok());
    let trust_other = PeerTrust { ca: Some(dir.path().join("stranger-ca.pem")), ..Default::default() };
    assert!(handshake(&server, &trust_other).await.is_err(), "a certificate from another CA is refused");
    let pinned = PeerTrust { pin_sha256: Some(fingerprint(leaf.der())), ..Default::default() };
    assert!(handshake(&server, &pinned).await.is_ok());
    let wrong_pin = PeerTrust { pin_sha256: Some(fingerprint(&stranger.der)), ..Default::default() };
    assert!(handshake(&server, &wrong_pin).await.is_err(), "another certificate than the pinned one is refused");

    // Expired, even when pinned, is refused.
    let old = write(dir.path(), "old", &self_signed("127.0.0.1", Some((2020, 2021))));
    let old_der = load_chain(&old.cert).unwrap()[0].to_vec();
    let pinned_old = PeerTrust { pin_sha256: Some(fingerprint(&old_der)), ..Default::default() };
    // ReloadingCert::new does not check dates (check-config does): serve it anyway.
    assert!(handshake(&old, &pinned_old).await.is_err(), "an expired certificate is refused");
}

async fn handshake(server: &TlsFiles, trust: &PeerTrust) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let scfg = server_config(ReloadingCert::new(server.clone()).map_err(|e| e.to_string())?, &[]).map_err(|e| e.to_string())?;
    let ccfg = client_config(trust).map_err(|e| e.to_string())?;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        if let Ok(mut t) = tokio_rustls::TlsAcceptor::from(scfg).accept(s).await {
            let mut b = [0u8; 4];
            if t.read_exact(&mut b).await.is_ok() {
                let _ = t.write_all(&b).await;
            }
        }
    });
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut t = tokio_rustls::TlsConnector::from(ccfg).connect(server_name("127.0.0.1").unwrap(), s).await.map_err(|e| e.to_string())?;
    t.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut b = [0u8; 4];
    t.read_exact(&mut b).await.map_err(|e| e.to_string())?;
    srv.abort();
    (&b == b"ping").then_some(()).ok_or_else(|| "echo differs".into())
}

/// A carrier that wants mutual TLS: our client certificate (from the
/// trunk's `tls_client_cert`/`tls_client_key`) is presented and accepted;
/// without it the carrier refuses the handshake.
#[tokio::test]
async fn client_certificate_for_a_carrier_that_wants_mutual_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_p = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_p.self_signed(&ca_key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let signed = |name: &str| {
        let k = KeyPair::generate().unwrap();
        let c = CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&k, &ca, &ca_key).unwrap();
        Made { cert_pem: c.pem(), key_pem: k.serialize_pem(), der: c.der().to_vec() }
    };
    let carrier = write(dir.path(), "carrier", &signed("127.0.0.1"));
    let clinic = write(dir.path(), "clinic", &signed("clinic.example"));
    // The carrier's side: only clients with a certificate from the CA.
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(load_chain(&dir.path().join("ca.pem")).unwrap());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build().unwrap();
    let scfg = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(ReloadingCert::new(carrier).unwrap()),
    );
    for (with_cert, expect) in [(true, true), (false, false)] {
        let trust = PeerTrust { ca: Some(dir.path().join("ca.pem")), client: with_cert.then(|| clinic.clone()), ..Default::default() };
        let ccfg = client_config(&trust).unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(scfg.clone());
        let srv = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut t = acceptor.accept(s).await.ok()?;
            let mut b = [0u8; 4];
            t.read_exact(&mut b).await.ok()?;
            t.write_all(&b).await.ok()?;
            t.get_ref().1.peer_certificates().map(|c| c.len())
        });
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let echoed = async {
            let mut t = tokio_rustls::TlsConnector::from(ccfg).connect(server_name("127.0.0.1").unwrap(), s).await.ok()?;
            t.write_all(b"ping").await.ok()?;
            let mut b = [0u8; 4];
            t.read_exact(&mut b).await.ok()?;
            Some(b)
        }
        .await;
        let seen = srv.await.unwrap();
        assert_eq!(echoed.is_some(), expect, "with client certificate: {with_cert}");
        assert_eq!(seen.is_some(), expect, "the carrier saw our certificate: {with_cert}");
    }
}
