//! Transaction timers with fake time (RFC 3261 §17).

use super::*;
use crate::sip::message::{parse, SipMessage};

fn udp() -> Peer {
    Peer { transport: Transport::Udp, addr: "127.0.0.1:5070".parse().unwrap() }
}

fn req(method: &str) -> Request {
    let s = format!(
        "{method} sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\n\
         From: <sip:b@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    );
    match parse(s.as_bytes(), true) {
        Ok(SipMessage::Request(r)) => r,
        _ => unreachable!("fixed test message parses"),
    }
}

fn resp(code: u16, method: &str) -> Response {
    let mut r = crate::sip::dialog::response_for(&req(method), code, Some("t"));
    r.headers.set("CSeq", format!("1 {method}"));
    r
}

fn drain(t: &mut Transactions) -> usize {
    std::iter::from_fn(|| t.poll_transmit()).count()
}

#[test]
fn client_invite_timer_a_doubles_and_timer_b_times_out() {
    let mut t = Transactions::new(Timers::default());
    let t0 = Instant::now();
    t.client_send(t0, "z9hG4bKx", req("INVITE"), udp());
    assert_eq!(drain(&mut t), 1);
    // Retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; B fires at 32 s.
    let mut sends = Vec::new();
    let mut events = Vec::new();
    let mut now = t0;
    while let Some(next) = t.poll_timeout() {
        now = next;
        events.extend(t.handle_timeout(now));
        if drain(&mut t) > 0 {
            sends.push((now - t0).as_millis());
        }
    }
    assert_eq!(sends, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!((now - t0).as_secs(), 32);
    assert!(matches!(events.as_slice(), [TxEvent::ClientTimeout(_)]));
}

#[test]
fn client_non_invite_caps_at_t2_and_stops_on_final() {
    let mut t = Transactions::new(Timers::default());
    let t0 = Instant::now();
    t.client_send(t0, "z9hG4bKx", req("OPTIONS"), udp());
    drain(&mut t);
    let mut gaps = Vec::new();
    let mut last = t0;
    let mut now = t0;
    while now < t0 + Duration::from_secs(12) {
        now = t.poll_timeout().unwrap();
        t.handle_timeout(now);
        if drain(&mut t) > 0 {
            gaps.push((now - last).as_millis());
            last = now;
        }
    }
    assert_eq!(&gaps[..5], &[500, 1000, 2000, 4000, 4000]);
    assert!(t.client_receive(now, &resp(200, "OPTIONS"), "z9hG4bKx", "OPTIONS").is_some());
    // Retransmitted final is absorbed; Timer K (T4) ends the transaction.
    assert!(t.client_receive(now, &resp(200, "OPTIONS"), "z9hG4bKx", "OPTIONS").is_none());
    let end = t.poll_timeout().unwrap();
    assert_eq!(end - now, Duration::from_secs(5));
    t.handle_timeout(end);
    assert_eq!(t.len(), (0, 0));
}

#[test]
fn client_invite_non_2xx_is_acked_once_per_final() {
    let mut t = Transactions::new(Timers::default());
    let t0 = Instant::now();
    t.client_send(t0, "z9hG4bKx", req("INVITE"), udp());
    drain(&mut t);
    assert!(t.client_receive(t0, &resp(486, "INVITE"), "z9hG4bKx", "INVITE").is_some());
    assert_eq!(drain(&mut t), 1, "ACK sent");
    assert!(t.client_receive(t0, &resp(486, "INVITE"), "z9hG4bKx", "INVITE").is_none());
    assert_eq!(drain(&mut t), 1, "ACK re-sent for the retransmitted final");
}

#[test]
fn server_invite_retransmits_error_until_ack_then_timer_i() {
    let mut t = Transactions::new(Timers::default());
    let t0 = Instant::now();
    let inv = req("INVITE");
    let key = TxKey { id: "z9hG4bKx|127.0.0.1:5070".into(), method: "INVITE".into() };
    assert_eq!(t.server_receive(t0, &key, &inv, udp()), ServerMatch::New);
    t.server_respond(t0, &key, &resp(486, "INVITE"), udp());
    assert_eq!(drain(&mut t), 1);
    // Timer G: 0.5 s, then 1 s.
    let g1 = t.poll_timeout().unwrap();
    assert_eq!(g1 - t0, Duration::from_millis(500));
    t.handle_timeout(g1);
    assert_eq!(drain(&mut t), 1);
    // A retransmitted INVITE gets the final again; the ACK stops it all.
    assert_eq!(t.server_receive(g1, &key, &inv, udp()), ServerMatch::Absorbed);
    assert_eq!(drain(&mut t), 1);
    assert_eq!(t.server_receive(g1, &key, &req("ACK"), udp()), ServerMatch::Absorbed);
    let i = t.poll_timeout().unwrap();
    assert_eq!(i - g1, Duration::from_secs(5), "Timer I = T4");
    assert!(t.handle_timeout(i).is_empty());
    assert_eq!(drain(&mut t), 0);
    assert_eq!(t.len(), (0, 0));
}

#[test]
fn server_invite_without_ack_reports_timer_h() {
    let mut t = Transactions::new(Timers::default());
    let t0 = Instant::now();
    let key = TxKey { id: "k".into(), method: "INVITE".into() };
    t.server_receive(t0, &key, &req("INVITE"), udp());
    t.server_respond(t0, &key, &resp(500, "INVITE"), udp());
    let mut now = t0;
    let mut evs = Vec::new();
    while let Some(n) = t.poll_timeout() {
        now = n;
        evs.extend(t.handle_timeout(now));
    }
    assert_eq!(now - t0, Duration::from_secs(32), "Timer H = 64*T1");
    assert!(matches!(evs.as_slice(), [TxEvent::ServerNoAck(_)]));
}

#[test]
fn server_invite_after_2xx_absorbs_retransmitted_invites_until_timer_l() {
    let mut t = Transactions::new(Timers::default());
    let t0 = Instant::now();
    let inv = req("INVITE");
    let key = TxKey { id: "z9hG4bKx|127.0.0.1:5070".into(), method: "INVITE".into() };
    assert_eq!(t.server_receive(t0, &key, &inv, udp()), ServerMatch::New);
    t.server_respond(t0, &key, &resp(200, "INVITE"), udp());
    assert_eq!(drain(&mut t), 1);
    // The caller's INVITE retransmissions crossed our 200: not a new call,
    // and not answered from here (the dialog layer resends the 200).
    let later = t0 + Duration::from_secs(2);
    assert_eq!(t.server_receive(later, &key, &inv, udp()), ServerMatch::Absorbed);
    assert_eq!(drain(&mut t), 0);
    // An ACK on the same branch is passed up.
    assert_eq!(t.server_receive(later, &key, &req("ACK"), udp()), ServerMatch::New);
    // Timer L (64·T1) ends it quietly; nothing is retransmitted meanwhile.
    let end = t.poll_timeout().unwrap();
    assert_eq!(end - t0, Duration::from_secs(32));
    assert!(t.handle_timeout(end).is_empty());
    assert_eq!(drain(&mut t), 0);
    assert_eq!(t.len(), (0, 0));
}

#[test]
fn timer_queue_has_one_entry_per_transaction_and_drains() {
    // Many unanswered-by-ACK 486s: each timeout visits only what is due,
    // and everything (queue, per-source counts) is gone after Timer H.
    let mut t = Transactions::new(Timers::default());
    let t0 = Instant::now();
    let invite = req("INVITE");
    for i in 0..2_000 {
        let key = TxKey { id: format!("z9hG4bK{i}|h"), method: "INVITE".into() };
        assert_eq!(t.server_receive(t0, &key, &invite, udp()), ServerMatch::New);
        t.server_respond(t0, &key, &resp(486, "INVITE"), udp());
    }
    drain(&mut t);
    assert_eq!(t.queued(), 2_000);
    assert_eq!(t.server_count_from(udp().addr.ip()), 2_000);
    let mut wakeups = 0;
    let mut events = 0;
    while let Some(next) = t.poll_timeout() {
        events += t.handle_timeout(next).len();
        assert!(t.queued() <= t.len().0);
        wakeups += 1;
    }
    drain(&mut t);
    assert_eq!(events, 2_000, "Timer H for each");
    // All started together: one wake-up per retransmission step, not per
    // transaction (G at 0.5, 1.5, 3.5, 7.5, 11.5 … then H at 32 s).
    assert!(wakeups < 20, "{wakeups} wake-ups");
    assert_eq!((t.len(), t.queued(), t.server_count_from(udp().addr.ip())), ((0, 0), 0, 0));
}
