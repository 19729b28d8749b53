//! Every RFC 4475 / RFC 5118 torture message over UDP and TCP: the server
//! answers as the RFCs expect (or drops what cannot be answered), never
//! crashes or hangs, and still answers OPTIONS afterwards on v4 and v6.
//! And a stranger on the same host who knows a live call's RTP port and
//! dialog identifiers can neither hear, talk into, nor end it.
//! And floods from outsider loopback addresses (issue 13): INVITEs over
//! UDP, idle TCP connections, a header that never ends.
//! And SIP over TLS (issue 14): `sip/tls_cases.rs`.

#[path = "sip/common.rs"]
mod common;
#[path = "sip/tls_cases.rs"]
mod tls_cases;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clinivox::sip::config::Transport;
use common::*;
use tokio::net::UdpSocket;

/// (file, expected first status over UDP; None = no answer). The policy
/// answers (404 unknown number, 481 no dialog) come from our test config:
/// loopback is a trusted trunk owning only number 1000. A REGISTER for an
/// extension we do not have is challenged (401) like any other, so that
/// the answer does not reveal which extensions exist.
const EXPECTED: &[(&str, Option<u16>)] = &[
    // RFC 4475 §3.1.1 valid messages.
    // Its To carries a tag: an in-dialog request for a dialog we lack.
    ("rfc4475/wsinv.dat", Some(481)),
    ("rfc4475/intmeth.dat", Some(501)),
    ("rfc4475/esc01.dat", Some(404)),
    ("rfc4475/escnull.dat", Some(401)),
    ("rfc4475/esc02.dat", Some(501)),
    ("rfc4475/lwsdisp.dat", Some(200)),
    ("rfc4475/longreq.dat", Some(404)),
    ("rfc4475/dblreq.dat", Some(401)),
    ("rfc4475/semiuri.dat", Some(200)),
    ("rfc4475/transports.dat", Some(200)),
    ("rfc4475/mpart01.dat", Some(405)),
    ("rfc4475/unreason.dat", None),
    ("rfc4475/noreason.dat", None),
    // §3.1.2 invalid messages.
    ("rfc4475/badinv01.dat", Some(400)),
    ("rfc4475/clerr.dat", Some(400)),
    ("rfc4475/ncl.dat", Some(400)),
    ("rfc4475/scalar02.dat", Some(400)),
    ("rfc4475/scalarlg.dat", None),
    ("rfc4475/quotbal.dat", Some(400)),
    ("rfc4475/ltgtruri.dat", Some(400)),
    ("rfc4475/lwsruri.dat", Some(400)),
    ("rfc4475/lwsstart.dat", Some(400)),
    ("rfc4475/trws.dat", Some(400)),
    ("rfc4475/escruri.dat", Some(400)),
    ("rfc4475/baddate.dat", Some(404)),
    ("rfc4475/regbadct.dat", Some(400)),
    ("rfc4475/badaspec.dat", Some(400)),
    ("rfc4475/baddn.dat", Some(400)),
    ("rfc4475/badvers.dat", Some(505)),
    ("rfc4475/mismatch01.dat", Some(400)),
    ("rfc4475/mismatch02.dat", Some(400)),
    ("rfc4475/bigcode.dat", None),
    // §3.2 transaction layer.
    ("rfc4475/badbranch.dat", Some(200)),
    // §3.3 application layer.
    ("rfc4475/insuf.dat", Some(400)),
    ("rfc4475/unkscm.dat", Some(416)),
    ("rfc4475/novelsc.dat", Some(416)),
    ("rfc4475/unksm2.dat", Some(404)),
    ("rfc4475/bext01.dat", Some(420)),
    ("rfc4475/invut.dat", Some(415)),
    ("rfc4475/regaut01.dat", Some(401)),
    ("rfc4475/multi01.dat", Some(400)),
    ("rfc4475/mcl01.dat", Some(400)),
    ("rfc4475/bcast.dat", None),
    ("rfc4475/zeromf.dat", Some(200)),
    ("rfc4475/cparam01.dat", Some(401)),
    ("rfc4475/cparam02.dat", Some(401)),
    ("rfc4475/regescrt.dat", Some(401)),
    ("rfc4475/sdp01.dat", Some(406)),
    // §3.4 backward compatibility.
    ("rfc4475/inv2543.dat", Some(404)),
    // In the archive, no section: its request line has no SIP version.
    ("rfc4475/test.dat", None),
    // RFC 5118.
    ("rfc5118/ipv6-good", Some(401)),
    ("rfc5118/ipv6-bad", Some(400)),
    ("rfc5118/port-ambiguous", Some(401)),
    ("rfc5118/port-unambiguous", Some(401)),
    ("rfc5118/via-received-param-with-delim", Some(481)),
    ("rfc5118/via-received-param-no-delim", Some(200)),
    ("rfc5118/ipv6-correct-abnf-2-colons", Some(200)),
    ("rfc5118/ipv6-bug-abnf-3-colons", Some(200)),
    ("rfc5118/ipv4-mapped-ipv6", Some(404)),
    ("rfc5118/mult-ip-in-header", Some(481)),
    // Its Content-Length (268) exceeds its body (251 bytes even with CRLF):
    // RFC 3261 §18.3 makes that a 400 over UDP; over TCP we wait for more.
    ("rfc5118/ipv6-in-sdp", Some(400)),
    ("rfc5118/mult-ip-in-sdp", Some(404)),
];

fn load(name: &str) -> Vec<u8> {
    let path = testdata().join("sip-torture").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if name.starts_with("rfc5118/") {
        // Stored with bare LF (see the directory README): send CRLF.
        let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n").replace('\n', "\r\n");
        return text.into_bytes();
    }
    bytes
}

fn status(line: &Option<String>) -> Option<u16> {
    line.as_ref()?.split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_messages_udp_and_tcp() {
    let srv = start(BASE_CONFIG).await;
    let udp = srv.addr(Transport::Udp, false);
    let tcp = srv.addr(Transport::Tcp, false);
    // Every file in the directory must be in the table (no silent skips).
    for dir in ["rfc4475", "rfc5118"] {
        for e in std::fs::read_dir(testdata().join("sip-torture").join(dir)).unwrap() {
            let name = format!("{dir}/{}", e.unwrap().file_name().to_string_lossy());
            assert!(EXPECTED.iter().any(|(n, _)| *n == name), "{name} has no expectation");
        }
    }
    let mut failures = Vec::new();
    for (name, want) in EXPECTED {
        let msg = load(name);
        let wait = Duration::from_millis(if want.is_some() { 2000 } else { 300 });
        let got = status(&udp_exchange(udp, &msg, wait).await);
        if got != *want {
            failures.push(format!("UDP {name}: want {want:?} got {got:?}"));
        }
        // Over TCP, a Content-Length beyond the data means "wait for more":
        // no answer until the peer sends the rest or closes.
        // no answer until the peer sends the rest or closes. Likewise a
        // message whose header block never ends (no blank line) is incomplete.
        let incomplete = !msg.windows(4).any(|w| w == b"\r\n\r\n");
        let want_tcp = if incomplete || ["rfc4475/clerr.dat", "rfc5118/ipv6-in-sdp"].contains(name) { None } else { *want };
        let wait = Duration::from_millis(if want_tcp.is_some() { 2000 } else { 300 });
        let got = status(&tcp_exchange(tcp, &msg, wait).await);
        if got != want_tcp {
            failures.push(format!("TCP {name}: want {want_tcp:?} got {got:?}"));
        }
    }
    // Still alive on every transport and family.
    for (t, v6) in [(Transport::Udp, false), (Transport::Tcp, false), (Transport::Udp, true), (Transport::Tcp, true)] {
        let a = srv.addr(t, v6);
        let msg = options(a, t.as_str(), 7 + v6 as u32);
        let got = match t {
            Transport::Udp => udp_exchange(a, &msg, Duration::from_secs(2)).await,
            Transport::Tcp | Transport::Tls => tcp_exchange(a, &msg, Duration::from_secs(2)).await,
        };
        if status(&got) != Some(200) {
            failures.push(format!("OPTIONS after torture on {t:?} v6={v6}: {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// One REGISTER for extension 201 over UDP from `s`; the whole response.
async fn register(s: &tokio::net::UdpSocket, to: std::net::SocketAddr, n: u32, contact: &str, auth: Option<&str>) -> String {
    let me = s.local_addr().unwrap();
    let mut msg = format!(
        "REGISTER sip:clinivox.local SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbf{n}x{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:201@clinivox.local>;tag=bf{n}\r\nTo: <sip:201@clinivox.local>\r\n\
         Call-ID: bf{}@test\r\nCSeq: {n} REGISTER\r\nContact: <{contact}>\r\nExpires: 600\r\n",
        me.port(),
        me.port()
    );
    if let Some(a) = auth {
        msg.push_str(&format!("Authorization: {a}\r\n"));
    }
    msg.push_str("Content-Length: 0\r\n\r\n");
    s.send_to(msg.as_bytes(), to).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (len, _) = tokio::time::timeout(Duration::from_secs(3), s.recv_from(&mut buf)).await.expect("an answer to REGISTER").unwrap();
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

fn status_of(resp: &str) -> u16 {
    status(&resp.lines().next().map(str::to_string)).expect("a status line")
}

/// Asks for a challenge and answers it with `password`: (the final
/// response, the Authorization sent).
async fn register_with(s: &tokio::net::UdpSocket, to: std::net::SocketAddr, n: u32, password: &str) -> (String, String) {
    let me = s.local_addr().unwrap();
    let contact = format!("sip:201@{me}");
    let challenge = register(s, to, 2 * n, &contact, None).await;
    assert_eq!(status_of(&challenge), 401, "{challenge}");
    let values: Vec<&str> = challenge.lines().filter_map(|l| l.strip_prefix("WWW-Authenticate: ")).collect();
    let ch = clinivox::sip::digest::best_challenge(values.into_iter()).expect("a digest challenge");
    let auth = clinivox::sip::digest::authorize(&ch, "201", password, "REGISTER", "sip:clinivox.local", &format!("cn{n}")).unwrap();
    (register(s, to, 2 * n + 1, &contact, Some(&auth)).await, auth)
}

/// Issue 13: a dictionary attack on a real extension over UDP. After a
/// handful of wrong passwords the extension and the address are locked:
/// the real password, late in the dictionary, is refused like the rest, and
/// so it is from another address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_brute_force_is_locked_out() {
    let srv = start(BASE_CONFIG).await;
    let to = srv.addr(Transport::Udp, false);
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dictionary = ["123456", "password", "201", "secret201", "letmein", "qwerty", "clinic2024", "admin", "desk-201-secret"];
    let mut answers = Vec::new();
    for (n, word) in dictionary.iter().enumerate() {
        let (resp, _) = register_with(&s, to, n as u32 + 1, word).await;
        answers.push((*word, status_of(&resp)));
    }
    assert!(answers.iter().all(|(_, code)| *code == 403), "every guess refused, the real password too: {answers:?}");
    // The extension is locked, not only the attacking address.
    let other = tokio::net::UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let (resp, _) = register_with(&other, to, 50, "desk-201-secret").await;
    assert_eq!(status_of(&resp), 403, "the real phone must wait out the lockout too:\n{resp}");
}

/// Issue 13: an `Authorization` captured from a phone's REGISTER, replayed
/// from another host (127.0.0.2) with its own Contact, is refused; so is
/// the same replay from the phone's own address (its nonce and nc are spent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_register_authorization_is_refused() {
    let srv = start(BASE_CONFIG).await;
    let to = srv.addr(Transport::Udp, false);
    let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (resp, auth) = register_with(&phone, to, 1, "desk-201-secret").await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let attacker = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let contact = format!("sip:201@{}", attacker.local_addr().unwrap());
    for n in 0..3 {
        let resp = register(&attacker, to, 10 + n, &contact, Some(&auth)).await;
        assert_eq!(status_of(&resp), 401, "a replay from another address must be re-challenged:\n{resp}");
    }
    let resp = register(&phone, to, 20, "sip:201@127.0.0.1:9", Some(&auth)).await;
    assert_eq!(status_of(&resp), 401, "a replayed (nonce, nc) must be re-challenged:\n{resp}");
}

/// A SIP message from `sock`; the next one whose CSeq names `method` and
/// whose status is final.
async fn final_response(sock: &UdpSocket, method: &str) -> String {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf)).await.expect("a response").unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        let cseq_ok = msg.lines().any(|l| l.starts_with("CSeq:") && l.ends_with(method));
        if cseq_ok && msg.starts_with("SIP/2.0 ") && !msg.starts_with("SIP/2.0 1") {
            return msg;
        }
    }
}

fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend(seq.to_be_bytes());
    p.extend(ts.to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Packets received on a socket: all of them, and those whose payload is
/// nothing but one of two µ-law codes.
#[derive(Debug, Default, Clone, Copy)]
struct Heard {
    packets: usize,
    only: [usize; 2],
}

fn count_rtp(sock: Arc<UdpSocket>, codes: [u8; 2]) -> Arc<Mutex<Heard>> {
    let seen = Arc::new(Mutex::new(Heard::default()));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = sock.recv_from(&mut buf).await {
            let mut s = out.lock().unwrap();
            s.packets += 1;
            for (k, code) in codes.iter().enumerate() {
                if n > 12 && buf[12..n].iter().all(|b| b == code) {
                    s.only[k] += 1;
                }
            }
        }
    });
    seen
}

/// The echo app answers a trunk call from 127.0.0.1. A stranger at
/// 127.0.0.2 sends RTP (audio and RFC 4733 key presses) to the call's port
/// and a BYE with the dialog's identifiers: it hears nothing, its audio is
/// not echoed, its key is not reported, its BYE is refused, and the caller
/// keeps its echo until its own BYE ends the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_hear_talk_into_or_end_a_call() {
    // The trunk is 127.0.0.1 alone: anything else on loopback is a stranger.
    let cfg = BASE_CONFIG.replace("\"127.0.0.0/8\"", "\"127.0.0.1/32\"");
    assert_ne!(cfg, BASE_CONFIG, "BASE_CONFIG's trunk CIDR changed; update the test");
    let mut srv = start(&cfg).await;
    let server = srv.addr(Transport::Udp, false);
    let sip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let me = sip.local_addr().unwrap();
    let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let stranger_rtp = Arc::new(UdpSocket::bind("127.0.0.2:0").await.expect("127.0.0.2 is loopback on Linux"));
    let stranger_sip = UdpSocket::bind("127.0.0.2:0").await.unwrap();

    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        rtp.local_addr().unwrap().port()
    );
    let dialog = "From: <sip:caller@127.0.0.1>;tag=c1\r\nCall-ID: hijack@test\r\nMax-Forwards: 70\r\n";
    let invite = format!(
        "INVITE sip:1000@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKinv1\r\n{dialog}To: <sip:1000@{server}>\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sip.send_to(invite.as_bytes(), server).await.unwrap();
    let ok = final_response(&sip, "INVITE").await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to = ok.lines().find_map(|l| l.strip_prefix("To: ")).expect("To in the 200").to_string();
    let port: u16 = ok.lines().find_map(|l| l.strip_prefix("m=audio ")).and_then(|m| m.split(' ').next()?.parse().ok()).unwrap();
    let media: SocketAddr = SocketAddr::new(server.ip(), port);
    let ack = format!("ACK sip:clinivox@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKack1\r\n{dialog}To: {to}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n");
    sip.send_to(ack.as_bytes(), server).await.unwrap();

    let call = tokio::time::timeout(Duration::from_secs(5), srv.incoming.recv()).await.expect("the call is handed over").unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let echo = tokio::spawn(clinivox::call::apps::echo(call.handle, Arc::new(move |l| sink.lock().unwrap().push(l))));

    // µ-law codes: the caller's audio, and the stranger's.
    let (mine, theirs) = (0x90u8, 0x10u8);
    let caller_heard = count_rtp(rtp.clone(), [mine, theirs]);
    let stranger_heard = count_rtp(stranger_rtp.clone(), [mine, theirs]);
    // The caller talks all along, paced like a phone, until its BYE.
    let talking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (caller, still) = (rtp.clone(), talking.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for i in 0u16.. {
            tick.tick().await;
            if !still.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let _ = caller.send_to(&rtp_packet(0, i, u32::from(i) * 160, 0x1111, &[mine; 160]), media).await;
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..100u16 {
        tick.tick().await;
        // Every tenth packet a complete press of key 1 (end bit set), else audio.
        let p = if i % 10 == 9 {
            rtp_packet(101, i, u32::from(i) * 160, 0xBAD, &[1, 0x80 | 10, 0x03, 0x20])
        } else {
            rtp_packet(0, i, u32::from(i) * 160, 0xBAD, &[theirs; 160])
        };
        stranger_rtp.send_to(&p, media).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stranger_heard.lock().unwrap().packets, 0, "the stranger must not receive the call's audio");
    let heard = *caller_heard.lock().unwrap();
    assert!(heard.only[0] >= 50, "the caller hears its echo: {heard:?}");
    assert_eq!(heard.only[1], 0, "the stranger's audio must not be echoed: {heard:?}");
    assert!(!lines.lock().unwrap().iter().any(|l| l.starts_with("DTMF")), "{:?}", lines.lock().unwrap());

    // A BYE with the dialog's identifiers from the stranger: refused.
    let bye = |from: SocketAddr, branch: &str, cseq: u32| {
        format!(
            "BYE sip:clinivox@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch={branch}\r\n{dialog}To: {to}\r\n\
             CSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let stranger = stranger_sip.local_addr().unwrap();
    stranger_sip.send_to(bye(stranger, "z9hG4bKbye1", 2).as_bytes(), server).await.unwrap();
    let refused = final_response(&stranger_sip, "BYE").await;
    assert!(refused.starts_with("SIP/2.0 403"), "{refused}");
    // The call goes on: the caller is still echoed.
    let before = caller_heard.lock().unwrap().only[0];
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(caller_heard.lock().unwrap().only[0] >= before + 15, "the echo continues after the stranger's BYE");
    // The caller's own BYE ends it.
    sip.send_to(bye(me, "z9hG4bKbye2", 3).as_bytes(), server).await.unwrap();
    let ended = final_response(&sip, "BYE").await;
    talking.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(ended.starts_with("SIP/2.0 200"), "{ended}");
    tokio::time::timeout(Duration::from_secs(5), echo).await.expect("the echo app sees the hang-up").unwrap();
    let lines = lines.lock().unwrap();
    assert!(lines.iter().any(|l| l.starts_with("HANGUP Remote")), "{lines:?}");
}

/// `BASE_CONFIG` where only 127.0.0.1 (and ::1) is the trunk, so other
/// loopback addresses are outsiders, with TCP limits small enough to test.
fn guarded_config() -> String {
    let cfg = BASE_CONFIG.replace(r#"cidrs = ["127.0.0.0/8", "::1/128"]"#, r#"cidrs = ["127.0.0.1/32", "::1/128"]"#);
    assert_ne!(cfg, BASE_CONFIG, "BASE_CONFIG's trunk line changed; update this test");
    format!("{cfg}\n[limits]\nmax_tcp_connections = 200\nmax_tcp_per_source = 50\ntcp_first_message_s = 3\n")
}

fn invite_from(from: std::net::SocketAddr, to: std::net::SocketAddr, n: u32) -> Vec<u8> {
    let sdp = format!("v=0\r\no=- {n} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\n", ip = from.ip());
    format!(
        "INVITE sip:1000@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKflood{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:scanner@{from}>;tag=f{n}\r\nTo: <sip:1000@{to}>\r\nCall-ID: flood{n}@{ip}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:scanner@{from}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len(),
        ip = from.ip()
    )
    .into_bytes()
}

/// 5,000 INVITEs in about 2 s from an outsider (127.0.0.2): we send back
/// fewer bytes than we got, never answer one request twice (an INVITE
/// transaction's 403 used to be resent ~11 times), and the trunk's
/// OPTIONS and INVITEs are answered during and after the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsider_invite_flood_is_not_amplified_and_the_trunk_is_served() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let srv = start(&guarded_config()).await;
    let to = srv.addr(Transport::Udp, false);
    let outsider = Arc::new(tokio::net::UdpSocket::bind("127.0.0.2:0").await.expect("127.0.0.2 is loopback"));
    let from = outsider.local_addr().unwrap();
    // Everything the outsider gets back: bytes, and answers per Call-ID.
    let got: Arc<Mutex<(usize, HashMap<String, u32>)>> = Arc::default();
    let reader = {
        let (s, got) = (outsider.clone(), got.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, _)) = s.recv_from(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]);
                let call = text.lines().find_map(|l| l.strip_prefix("Call-ID: ")).unwrap_or("").to_string();
                let mut g = got.lock().unwrap();
                g.0 += n;
                *g.1.entry(call).or_default() += 1;
            }
        })
    };
    // The trunk asks every 200 ms during the flood.
    let trunk_probe = tokio::spawn(async move {
        let mut answered = 0;
        for n in 0..10 {
            // Sent twice at most, as a UA's Timer E would: a datagram lost
            // in a full socket buffer is not what this test is about.
            for _ in 0..2 {
                let status = udp_exchange(to, &options(to, "UDP", 100 + n), Duration::from_secs(1)).await;
                if status.as_deref().is_some_and(|s| s.starts_with("SIP/2.0 200")) {
                    answered += 1;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        answered
    });
    let mut sent = 0usize;
    for burst in 0..40u32 {
        for i in 0..125u32 {
            let msg = invite_from(from, to, burst * 125 + i);
            sent += msg.len();
            outsider.send_to(&msg, to).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(trunk_probe.await.unwrap(), 10, "the trunk's OPTIONS went unanswered during the flood");
    // Long enough for Timer G's first retransmissions (0.5, 1.5 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    reader.abort();
    let (bytes_back, per_call) = {
        let g = got.lock().unwrap();
        (g.0, g.1.clone())
    };
    let answers: u32 = per_call.values().sum();
    assert!(bytes_back <= sent, "amplifier: {bytes_back} bytes back for {sent} received");
    assert!(answers < 500, "{answers} answers to 5,000 INVITEs: no rate limit");
    let resent: Vec<_> = per_call.iter().filter(|(_, n)| **n > 1).collect();
    assert!(resent.is_empty(), "answered more than once: {resent:?}");
    // After the flood: the trunk's OPTIONS and INVITE (404: unknown number).
    assert_eq!(status(&udp_exchange(to, &options(to, "UDP", 999), Duration::from_secs(2)).await), Some(200));
    let trunk_invite = String::from_utf8(invite_from("127.0.0.1:5099".parse().unwrap(), to, 7)).unwrap().replace("sip:1000@", "sip:999@");
    assert_eq!(status(&udp_exchange(to, trunk_invite.as_bytes(), Duration::from_secs(2)).await), Some(404));
}

/// Raise the soft descriptor limit towards `want` (the hard limit caps
/// it); returns the soft limit now in force.
fn raise_nofile(want: u64) -> u64 {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read or write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 1024;
        }
        if l.rlim_cur < want {
            let mut r = l;
            r.rlim_cur = want.min(l.rlim_max) as libc::rlim_t;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0 {
                l = r;
            }
        }
    }
    l.rlim_cur
}

/// 1,100 idle TCP connections from 22 outsider addresses (1,000 would
/// have exhausted our descriptors before): beyond the caps they are
/// closed at once, the rest when no message came within
/// `tcp_first_message_s`; a header that never ends is cut off; afterwards
/// a real TCP request is answered. The trunk is served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_connections_and_endless_headers_leave_the_listener_alive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;
    let limit = raise_nofile(8192);
    // Our side and the server's side of each held connection, plus margin.
    let count = 1_100usize.min((limit as usize).saturating_sub(400));
    assert!(count >= 300, "descriptor limit {limit} too low for this test");
    let srv = start(&guarded_config()).await;
    let to = srv.addr(Transport::Tcp, false);
    let t0 = Instant::now();
    let mut watchers = Vec::new();
    for i in 0..count {
        let ip = format!("127.0.0.{}", 2 + i / 50);
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(3), sock.connect(to)).await else {
            continue; // a full backlog may refuse some: fine
        };
        // Each waits for the server to close it: how long did it hold?
        let opened = Instant::now();
        watchers.push(tokio::spawn(async move {
            let mut b = [0u8; 64];
            let closed = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await;
            closed.is_ok().then(|| (opened, Instant::now()))
        }));
    }
    assert!(watchers.len() >= count * 9 / 10, "only {} of {count} connected", watchers.len());
    // While strangers hold the caps, the trunk's TCP request is served.
    let status_now = tcp_exchange(to, &options(to, "TCP", 50), Duration::from_secs(2)).await;
    assert_eq!(status(&status_now), Some(200), "trunk over TCP during the idle flood");
    // Connections the server kept (until the first-message timeout) versus
    // those it closed at once; at no moment more kept than the total cap.
    let mut held = Vec::new();
    for w in watchers {
        let (opened, closed) = w.await.unwrap().expect("the server never closed an idle connection");
        if closed - opened >= Duration::from_secs(2) {
            held.push((opened, closed));
        }
    }
    let mut edges: Vec<(Instant, i32)> = held.iter().flat_map(|(o, c)| [(*o, 1), (*c, -1)]).collect();
    edges.sort_by_key(|&(t, d)| (t, d));
    let most = edges
        .iter()
        .scan(0, |n, (_, d)| {
            *n += d;
            Some(*n)
        })
        .max()
        .unwrap_or(0);
    // A little slack: we see a close a moment after the server freed its slot.
    assert!(most <= 210, "{most} idle connections held at once: over max_tcp_connections (200)");
    assert!(!held.is_empty(), "no connection was held until the first-message timeout");
    assert!(t0.elapsed() < Duration::from_secs(20));

    // A header that never ends, from an outsider: cut off at 64 KiB.
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.50:0".parse().unwrap()).unwrap();
    let mut s = s.connect(to).await.unwrap();
    let _ = s.write_all(format!("OPTIONS sip:{to} SIP/2.0\r\n").as_bytes()).await;
    let pad = "X-Pad: ".to_string() + &"a".repeat(1000) + "\r\n";
    let mut wrote = 0;
    while wrote < 200_000 {
        if s.write_all(pad.as_bytes()).await.is_err() {
            break; // closed by the server: what we want
        }
        wrote += pad.len();
    }
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the server kept reading an endless header");
    // And afterwards: a real request over TCP (trunk) and UDP is answered.
    for (t, n) in [(Transport::Tcp, 60), (Transport::Udp, 61)] {
        let a = srv.addr(t, false);
        let got = match t {
            Transport::Tcp | Transport::Tls => tcp_exchange(a, &options(a, "TCP", n), Duration::from_secs(2)).await,
            Transport::Udp => udp_exchange(a, &options(a, "UDP", n), Duration::from_secs(2)).await,
        };
        assert_eq!(status(&got), Some(200), "{t:?} after the TCP flood");
    }
    // An outsider's real request over TCP, once the flood is over, is
    // answered too (statelessly: no Server header, no Allow).
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind("127.0.0.51:0".parse().unwrap()).unwrap();
    let mut s = s.connect(to).await.unwrap();
    s.write_all(&options(to, "TCP", 62)).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("answer in time").unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 200") && !text.contains("Allow:") && !text.contains("Server:"), "{text}");
}

/// Issue 13: an INVITE from a trunk's address (which anyone can spoof over
/// UDP) whose sender never ACKs. The call is answered, as a carrier's ACK
/// may be late, but the application (speech, database) never sees it and
/// no RTP goes to the address its SDP named: a spoofed INVITE cannot fill
/// the lines or make us stream at a victim. With the ACK, both start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_invite_never_acked_starts_nothing_and_sends_no_rtp() {
    let mut srv = start(BASE_CONFIG).await;
    let to = srv.addr(Transport::Udp, false);
    let sig = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let from = sig.local_addr().unwrap();
    let victim = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let heard = count_rtp(victim.clone(), [0xff, 0x7f]);
    let port = victim.local_addr().unwrap().port();
    let sdp = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n");
    let head = |method: &str, to_tag: &str, cseq: &str| {
        format!(
            "{method} sip:1000@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKnoack{}\r\nMax-Forwards: 70\r\n\
             From: <sip:carrier@{from}>;tag=na1\r\nTo: <sip:1000@{to}>{to_tag}\r\nCall-ID: noack@test\r\nCSeq: {cseq}\r\n\
             Contact: <sip:carrier@{from}>\r\n",
            method.len()
        )
    };
    let invite = format!("{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", head("INVITE", "", "1 INVITE"), sdp.len());
    sig.send_to(invite.as_bytes(), to).await.unwrap();
    let ok = final_response(&sig, "INVITE").await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(srv.incoming.try_recv().is_err(), "the application was started before the ACK");
    assert_eq!(heard.lock().unwrap().packets, 0, "RTP was sent before the ACK");
    // The ACK, from the caller: the application gets the call and media flows.
    let tag = ok.lines().find(|l| l.starts_with("To:")).and_then(|l| l.split(";tag=").nth(1)).expect("a To tag").trim().to_string();
    let ack = format!("{}Content-Length: 0\r\n\r\n", head("ACK", &format!(";tag={tag}"), "1 ACK"));
    sig.send_to(ack.as_bytes(), to).await.unwrap();
    let call =
        tokio::time::timeout(Duration::from_secs(3), srv.incoming.recv()).await.expect("the call reaches the application after the ACK");
    assert!(call.is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(heard.lock().unwrap().packets > 5, "media flows once confirmed: {:?}", heard.lock().unwrap());
}
