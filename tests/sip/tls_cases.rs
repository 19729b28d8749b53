//! SIP over TLS (issue 14), in process: a desk phone registers over TLS with
//! digest and is called back on its own connection; the TLS port says
//! nothing to plaintext or silent clients; a trunk over TLS refuses a
//! carrier whose certificate is from another CA or expired, and the call
//! fails at once rather than after Timer B.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clinivox::sip::config::Transport;
use clinivox::sip::endpoint::DialTarget;
use clinivox::sip::stream::{Framed, Framer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::common::*;

fn tls_config(dir: &Path, ca: &TestCa, extra: &str) -> String {
    let (cert, key, _) = tls_pair(dir, "server", &["127.0.0.1"], Some(ca), false);
    format!(
        r#"
listen = [
  {{ transport = "udp", addr = "127.0.0.1:0" }},
  {{ transport = "tls", addr = "127.0.0.1:0" }},
]
numbers = ["1000"]
nonce_secret = "test"
digest_algorithms = ["SHA-256"]
[rtp]
min = 31000
max = 31999
[tls]
cert = "{cert}"
key = "{key}"
[limits]
tcp_first_message_s = 2
[[extensions]]
number = "201"
password = "desk-201-secret"
srtp = "required"
{extra}
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

/// Reads one SIP message from a stream, framed by the server's own `Framer`.
async fn read_message<S: AsyncRead + Unpin>(s: &mut S, framer: &mut Framer, wait: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match framer.next_message() {
            Some(Framed::Message(m)) => return Some(String::from_utf8_lossy(&m).into_owned()),
            Some(Framed::Invalid(_)) => return None,
            None => {}
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        framer.push(&chunk[..n]);
    }
}

fn register_msg(me: SocketAddr, n: u32, auth: Option<&str>) -> String {
    // The Contact names a port nobody listens on, as a phone behind NAT
    // would: only the connection it registered over reaches it.
    let mut m = format!(
        "REGISTER sips:clinivox.local SIP/2.0\r\nVia: SIP/2.0/TLS {me};branch=z9hG4bKtls{n}\r\nMax-Forwards: 70\r\n\
         From: <sips:201@clinivox.local>;tag=t{n}\r\nTo: <sips:201@clinivox.local>\r\nCall-ID: tlsreg@test\r\n\
         CSeq: {n} REGISTER\r\nContact: <sips:201@192.0.2.55:5999>\r\nExpires: 600\r\n"
    );
    if let Some(a) = auth {
        m.push_str(&format!("Authorization: {a}\r\n"));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_phone_registers_over_tls_and_is_called_on_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let srv = start(&tls_config(dir.path(), &ca, "")).await;
    let tls_addr = srv.addr(Transport::Tls, false);
    let mut phone = tls_connect(tls_addr, &ca.pem).await.expect("TLS handshake with the configured certificate");
    let me = phone.get_ref().0.local_addr().unwrap();
    let mut buf = Framer::default();
    phone.write_all(register_msg(me, 1, None).as_bytes()).await.unwrap();
    let challenge = read_message(&mut phone, &mut buf, Duration::from_secs(3)).await.expect("a challenge");
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let ch = clinivox::sip::digest::best_challenge(challenge.lines().filter_map(|l| l.strip_prefix("WWW-Authenticate: "))).unwrap();
    let auth = clinivox::sip::digest::authorize(&ch, "201", "desk-201-secret", "REGISTER", "sips:clinivox.local", "c1").unwrap();
    phone.write_all(register_msg(me, 2, Some(&auth)).as_bytes()).await.unwrap();
    let ok = read_message(&mut phone, &mut buf, Duration::from_secs(3)).await.expect("an answer");
    assert!(ok.starts_with("SIP/2.0 200"), "registered over TLS:\n{ok}");

    // Clinivox calls 201: the INVITE comes down the same TLS connection.
    let handle = srv.handle.clone();
    let dial = tokio::spawn(async move { handle.dial(DialTarget::Extension("201".into())).await });
    let invite = read_message(&mut phone, &mut buf, Duration::from_secs(5)).await.expect("an INVITE on the registration's connection");
    assert!(invite.starts_with("INVITE sips:201@192.0.2.55:5999"), "{invite}");
    let via = header(&invite, "Via").unwrap();
    assert!(via.starts_with("SIP/2.0/TLS"), "sent over TLS: {via}");
    let contact = header(&invite, "Contact").unwrap();
    assert!(contact.contains("transport=tls") || contact.starts_with("<sips:"), "{contact}");
    // SRTP required for 201: offered as RTP/SAVP with SDES keys, inside TLS.
    assert!(invite.contains("m=audio ") && invite.contains(" RTP/SAVP "), "{invite}");
    assert!(invite.contains("a=crypto:1 AEAD_AES_128_GCM inline:"), "{invite}");
    // Busy: the call ends cleanly.
    let busy = invite
        .lines()
        .filter(|l| ["via:", "from:", "to:", "call-id:", "cseq:"].iter().any(|h| l.to_ascii_lowercase().starts_with(h)))
        .map(|l| if l.to_ascii_lowercase().starts_with("to:") { format!("{l};tag=busy") } else { l.to_string() })
        .collect::<Vec<_>>()
        .join("\r\n");
    phone.write_all(format!("SIP/2.0 486 Busy Here\r\n{busy}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await.unwrap();
    let ack = read_message(&mut phone, &mut buf, Duration::from_secs(3)).await.expect("the ACK for 486");
    assert!(ack.starts_with("ACK "), "{ack}");
    let _ = dial.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_port_answers_no_plaintext_and_drops_silent_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let srv = start(&tls_config(dir.path(), &ca, "")).await;
    let tls_addr = srv.addr(Transport::Tls, false);
    // SIP in clear to the TLS port: no SIP answer, the connection is closed.
    let answer = tcp_exchange(tls_addr, &options(tls_addr, "TCP", 1), Duration::from_secs(4)).await;
    assert!(answer.as_deref().is_none_or(|a| !a.starts_with("SIP/2.0")), "plaintext got a SIP answer: {answer:?}");
    // A client that completes no handshake is cut off (first-message time, 2 s).
    let mut idle = tokio::net::TcpStream::connect(tls_addr).await.unwrap();
    let mut b = [0u8; 16];
    let t0 = std::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(6), idle.read(&mut b)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "silent client still connected: {r:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // After all that, OPTIONS over TLS is answered.
    let mut c = tls_connect(tls_addr, &ca.pem).await.unwrap();
    c.write_all(&options(tls_addr, "TLS", 2)).await.unwrap();
    let mut buf = Framer::default();
    let resp = read_message(&mut c, &mut buf, Duration::from_secs(3)).await.expect("OPTIONS answered");
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}");
}

/// A stand-in carrier: accepts one TLS connection with `cert`/`key` and
/// reports the first SIP request line it reads (None: no handshake).
async fn carrier(cert: &Path, key: &Path) -> (SocketAddr, tokio::task::JoinHandle<Option<String>>) {
    let files = clinivox::tls::TlsFiles { cert: cert.into(), key: key.into() };
    let cfg = clinivox::tls::server_config(clinivox::tls::ReloadingCert::new(files).unwrap(), &[]).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (s, _) = l.accept().await.ok()?;
        let mut t = tokio_rustls::TlsAcceptor::from(cfg).accept(s).await.ok()?;
        let mut buf = Framer::default();
        let msg = read_message(&mut t, &mut buf, Duration::from_secs(5)).await?;
        let _ = respond_busy(&mut t, &msg).await;
        msg.lines().next().map(str::to_string)
    });
    (addr, task)
}

async fn respond_busy<S: AsyncWrite + Unpin>(s: &mut S, req: &str) -> std::io::Result<()> {
    let keep: Vec<&str> = req
        .lines()
        .filter(|l| ["via:", "from:", "to:", "call-id:", "cseq:"].iter().any(|h| l.to_ascii_lowercase().starts_with(h)))
        .collect();
    s.write_all(format!("SIP/2.0 486 Busy Here\r\n{}\r\nContent-Length: 0\r\n\r\n", keep.join("\r\n")).as_bytes()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_over_tls_refuses_a_carrier_with_a_wrong_or_expired_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ours = TestCa::new(dir.path(), "carrier-ca");
    let other = TestCa::new(dir.path(), "other-ca");
    let (good_c, good_k, _) = tls_pair(dir.path(), "good", &["127.0.0.1"], Some(&ours), false);
    let (wrong_c, wrong_k, _) = tls_pair(dir.path(), "wrong", &["127.0.0.1"], Some(&other), false);
    let (old_c, old_k, _) = tls_pair(dir.path(), "old", &["127.0.0.1"], Some(&ours), true);
    for (label, cert, key, accepted) in
        [("good", &good_c, &good_k, true), ("other CA", &wrong_c, &wrong_k, false), ("expired", &old_c, &old_k, false)]
    {
        let (addr, seen) = carrier(cert, key).await;
        let trunk =
            format!("[[trunks]]\nname = \"carrier\"\nproxy = \"{addr}\"\ntransport = \"tls\"\ntls_ca = \"{}\"\n", ours.pem.display());
        let srv = start(&tls_config(dir.path(), &ours, &trunk)).await;
        let t0 = std::time::Instant::now();
        let mut call = srv.handle.dial(DialTarget::Number { number: "600123456".into(), trunk: None }).await.expect("dial accepted");
        // The call ends either way (486 from the carrier, or the failed
        // connection): soon, not after Timer B's 32 s.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(ev) = call.events.recv().await {
                if let clinivox::call::CallEvent::HangUp(c) = ev {
                    return Some(c);
                }
            }
            None
        })
        .await;
        assert!(ended.is_ok(), "{label}: the call did not end within 10 s");
        let line = tokio::time::timeout(Duration::from_secs(6), seen).await.ok().and_then(|r| r.ok()).flatten();
        if accepted {
            assert!(line.as_deref().is_some_and(|l| l.starts_with("INVITE sip:600123456@")), "{label}: {line:?}");
        } else {
            assert!(line.is_none(), "{label}: the INVITE went to a carrier whose certificate should not verify: {line:?}");
            assert!(t0.elapsed() < Duration::from_secs(10), "{label}: {:?}", t0.elapsed());
        }
    }
}
