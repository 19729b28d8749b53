//! DTMF codec, receiver and sender tests.

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn ev(event: u8, end: bool, duration: u16) -> [u8; 4] {
    TelephoneEvent { event, end, volume: 10, duration }.to_bytes()
}

#[test]
fn payload_round_trip_and_layout() {
    let e = TelephoneEvent { event: 11, end: true, volume: 63, duration: 0x1234 };
    let b = e.to_bytes();
    assert_eq!(b, [11, 0x80 | 63, 0x12, 0x34]);
    assert_eq!(TelephoneEvent::parse(&b).unwrap(), e);
    // Reserved bit is ignored; extra bytes tolerated.
    let p = TelephoneEvent::parse(&[5, 0x40 | 7, 0, 160, 9, 9]).unwrap();
    assert_eq!((p.event, p.end, p.volume, p.duration), (5, false, 7, 160));
    assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), Err(DtmfError::TooShort(3)));
}

#[test]
fn digit_mapping() {
    let keys = "0123456789*#ABCD";
    for (i, c) in keys.chars().enumerate() {
        assert_eq!(digit_to_event(c), Some(i as u8));
        assert_eq!(event_to_digit(i as u8), Some(c));
    }
    assert_eq!(digit_to_event('a'), Some(12));
    assert_eq!(digit_to_event('x'), None);
    assert_eq!(event_to_digit(16), None);
}

#[test]
fn receiver_one_digit_despite_repeats() {
    let t0 = Instant::now();
    let mut rx = DtmfReceiver::default();
    let ts = 48_000;
    for (k, d) in [400u16, 400, 800, 1200].iter().enumerate() {
        rx.handle_packet(t0 + ms(50 * k as u64), ts, &ev(5, false, *d)).unwrap();
    }
    assert_eq!(rx.poll_digit(t0 + ms(160)), None);
    for k in 0..3 {
        rx.handle_packet(t0 + ms(200 + 20 * k), ts, &ev(5, true, 1600)).unwrap();
    }
    let d = rx.poll_digit(t0 + ms(240)).unwrap();
    assert_eq!(d, Digit { digit: '5', duration: ms(200) });
    assert_eq!(rx.poll_digit(t0 + ms(1000)), None);
    assert_eq!(rx.poll_timeout(), None);
}

#[test]
fn receiver_lost_start_packets() {
    let t0 = Instant::now();
    let mut rx = DtmfReceiver::default();
    // Only the end packets arrive.
    rx.handle_packet(t0, 1000, &ev(10, true, 960)).unwrap();
    rx.handle_packet(t0 + ms(20), 1000, &ev(10, true, 960)).unwrap();
    assert_eq!(rx.poll_digit(t0 + ms(20)).unwrap(), Digit { digit: '*', duration: ms(120) });
    assert_eq!(rx.poll_digit(t0 + ms(20)), None);
}

#[test]
fn receiver_lost_end_packets_closed_by_next_press_or_timeout() {
    let t0 = Instant::now();
    let mut rx = DtmfReceiver::default();
    rx.handle_packet(t0, 1000, &ev(1, false, 400)).unwrap();
    // Next press (different timestamp) closes the previous one.
    rx.handle_packet(t0 + ms(300), 9000, &ev(2, false, 400)).unwrap();
    assert_eq!(rx.poll_digit(t0 + ms(300)).unwrap().digit, '1');
    assert_eq!(rx.poll_digit(t0 + ms(300)), None);
    assert_eq!(rx.poll_timeout(), Some(t0 + ms(600)));
    assert_eq!(rx.poll_digit(t0 + ms(599)), None);
    let d = rx.poll_digit(t0 + ms(600)).unwrap();
    assert_eq!(d, Digit { digit: '2', duration: ms(50) });
    // Late end packet of the timed-out press is ignored.
    rx.handle_packet(t0 + ms(700), 9000, &ev(2, true, 800)).unwrap();
    assert_eq!(rx.poll_digit(t0 + ms(700)), None);
}

#[test]
fn receiver_same_digit_twice_and_stale_packets() {
    let t0 = Instant::now();
    let mut rx = DtmfReceiver::default();
    for ts in [100u32, 5000] {
        rx.handle_packet(t0, ts, &ev(7, false, 400)).unwrap();
        rx.handle_packet(t0, ts, &ev(7, true, 800)).unwrap();
        rx.handle_packet(t0, ts, &ev(7, true, 800)).unwrap();
    }
    assert_eq!(rx.poll_digit(t0).unwrap().digit, '7');
    assert_eq!(rx.poll_digit(t0).unwrap().digit, '7');
    assert_eq!(rx.poll_digit(t0), None);
    // An update from before the current press is ignored, not a new digit.
    rx.handle_packet(t0, 9000, &ev(3, false, 400)).unwrap();
    rx.handle_packet(t0, 8000, &ev(4, false, 400)).unwrap();
    rx.handle_packet(t0, 9000, &ev(3, true, 800)).unwrap();
    assert_eq!(rx.poll_digit(t0).unwrap().digit, '3');
    assert_eq!(rx.poll_digit(t0 + ms(5000)), None);
}

#[test]
fn receiver_timestamp_wrap_and_bad_input() {
    let t0 = Instant::now();
    let mut rx = DtmfReceiver::default();
    rx.handle_packet(t0, u32::MAX - 10, &ev(8, false, 400)).unwrap();
    rx.handle_packet(t0, 50, &ev(9, false, 400)).unwrap(); // newer across wrap
    assert_eq!(rx.poll_digit(t0).unwrap().digit, '8');
    assert!(rx.handle_packet(t0, 60, &[1]).is_err());
    // Non-DTMF event (flash) is accepted and ignored.
    rx.handle_packet(t0, 70, &ev(16, true, 400)).unwrap();
    assert_eq!(rx.poll_digit(t0 + ms(1000)).unwrap().digit, '9');
    assert_eq!(rx.poll_digit(t0 + ms(1000)), None);
}

#[test]
fn sender_sequence_for_press() {
    let pkts: Vec<_> = DtmfSender::new('#', 777, ms(180)).unwrap().collect();
    // Updates at 0, 50, 100, 150 ms then three end packets at 180, 200, 220 ms.
    assert_eq!(pkts.len(), 4 + 3);
    assert!(pkts[0].marker && pkts[1..].iter().all(|p| !p.marker));
    assert!(pkts.iter().all(|p| p.timestamp == 777));
    let parsed: Vec<_> = pkts.iter().map(|p| TelephoneEvent::parse(&p.payload).unwrap()).collect();
    let durs: Vec<_> = parsed.iter().map(|e| e.duration).collect();
    assert_eq!(durs, [400, 800, 1200, 1440, 1440, 1440, 1440]);
    let ends: Vec<_> = parsed.iter().map(|e| e.end).collect();
    assert_eq!(ends, [false, false, false, false, true, true, true]);
    assert!(parsed.iter().all(|e| e.event == 11 && e.volume == DEFAULT_VOLUME));
    let offs: Vec<_> = pkts.iter().map(|p| p.offset.as_millis()).collect();
    assert_eq!(offs, [0, 50, 100, 150, 180, 200, 220]);
    assert!(DtmfSender::new('x', 0, ms(100)).is_err());
}

#[test]
fn sender_to_receiver_yields_one_digit() {
    let t0 = Instant::now();
    let mut rx = DtmfReceiver::default();
    for c in "0123456789*#ABCD".chars() {
        for p in DtmfSender::new(c, 1234, ms(100)).unwrap().with_volume(99) {
            rx.handle_packet(t0 + p.offset, p.timestamp.wrapping_add(c as u32), &p.payload).unwrap();
        }
        assert_eq!(rx.poll_digit(t0), Some(Digit { digit: c, duration: ms(100) }));
        assert_eq!(rx.poll_digit(t0), None);
    }
}
