//! RFC 7339's loss-based control: what a Via asks, what a response's Via
//! says back, and the percentage over fake time, alone and in a loop with
//! a carrier that honours it.

use std::time::{Duration, Instant};

use super::*;

#[test]
fn a_via_asks_with_oc_and_loss_or_no_algorithm() {
    assert!(asks(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;oc;oc-algo=\"loss,A\""));
    assert!(asks(b"SIP/2.0/UDP 192.0.2.1;OC ; branch=z9hG4bK1"));
    assert!(!asks(b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"));
    assert!(!asks(b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;oc;oc-algo=\"rate\""), "an algorithm we do not run");
    // Only the topmost value counts, and a quoted string is no parameter.
    assert!(!asks(b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1, SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2;oc"));
    assert!(!asks(b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;x=\";oc\""));
    assert!(!asks(b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1;occ"));
    assert!(asks(b"SIP/2.0/UDP [2001:db8::1]:5060;oc;branch=z9hG4bK1"));
}

#[test]
fn the_answer_replaces_the_clients_oc_parameters_in_the_top_value_only() {
    let via = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;oc;oc-algo=\"loss,A\";rport=5060, SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK9;oc";
    let out = with_params(via, ";oc=20;oc-algo=\"loss\"");
    assert_eq!(
        out,
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport=5060;oc=20;oc-algo=\"loss\", SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK9;oc"
    );
    assert_eq!(with_params("SIP/2.0/UDP h;oc", ";oc=0"), "SIP/2.0/UDP h;oc=0");
}

#[test]
fn refusals_ask_the_carrier_to_drop_the_excess_and_few_give_it_back() {
    let t0 = Instant::now();
    let mut c = LossControl::default();
    assert_eq!(c.percent(t0, 1000), 0);
    // 100 offered in a window, 60 refused: send the 40 % that was taken.
    for i in 0..100 {
        c.handle_new_call(t0 + Duration::from_millis(i / 2), 1000, i % 5 < 3);
    }
    assert_eq!(c.percent(t0 + WINDOW, 1000), 60);
    let told = c.via_params(t0 + WINDOW, 1000);
    assert_eq!(told, ";oc=60;oc-algo=\"loss\";oc-validity=500;oc-seq=1000.00001");
    // The carrier sends its 40 %; 6 refused (15 %): steady, the lines full.
    for i in 0..40 {
        c.handle_new_call(t0 + WINDOW + Duration::from_millis(i), 1000, i < 6);
    }
    assert_eq!(c.percent(t0 + 2 * WINDOW, 1000), 60, "steady while a few are refused");
    // None refused: 5 points back per window, idle windows included.
    for i in 0..20 {
        c.handle_new_call(t0 + 2 * WINDOW + Duration::from_millis(i), 1001, false);
    }
    assert_eq!(c.percent(t0 + 3 * WINDOW, 1001), 55);
    assert!(c.via_params(t0 + 3 * WINDOW, 1001).ends_with("oc-seq=1001.00002"), "a newer value has a larger oc-seq");
    assert_eq!(c.percent(t0 + 3 * WINDOW + Duration::from_secs(1), 1002), 5);
    assert_eq!(c.percent(t0 + 3 * WINDOW + Duration::from_secs(2), 1003), 0, "after quiet seconds, nothing held back");
}

#[test]
fn just_past_capacity_it_moves_half_way() {
    let t0 = Instant::now();
    let mut c = LossControl::default();
    // 30 of 100 refused: keep 85 % of what was sent, not 70 %.
    for i in 0..100 {
        c.handle_new_call(t0 + Duration::from_millis(i / 2), 0, i % 10 < 3);
    }
    assert_eq!(c.percent(t0 + WINDOW, 0), 15);
    // 20 of 100: a few, as it aims for; it holds.
    for i in 0..100 {
        c.handle_new_call(t0 + WINDOW + Duration::from_millis(i / 2), 0, i % 5 == 0);
    }
    assert_eq!(c.percent(t0 + 2 * WINDOW, 0), 15);
}

#[test]
fn a_few_refusals_in_a_tiny_window_do_not_move_it() {
    let t0 = Instant::now();
    let mut c = LossControl::default();
    c.handle_new_call(t0, 0, false);
    for _ in 0..3 {
        c.handle_new_call(t0, 0, true);
    }
    assert_eq!(c.percent(t0 + WINDOW, 0), 0);
}

#[test]
fn never_all_even_when_everything_is_refused() {
    let t0 = Instant::now();
    let mut c = LossControl::default();
    for _ in 0..1000 {
        c.handle_new_call(t0, 0, true);
    }
    assert_eq!(c.percent(t0 + WINDOW, 0), 95);
}

/// A server that takes `capacity` new calls a window and refuses the rest,
/// and a carrier with `demand` a window that drops the share it was last
/// told: the calls taken over 10 s stay at least 90 % of capacity, and
/// the refusals the server still sends are at most a fifth of the demand
/// (a 503-only carrier: a third of it at 1.5×, nine tenths at 10×).
#[test]
fn in_a_loop_with_a_carrier_that_honours_it_capacity_is_held() {
    for multiple in [1.5, 3.0, 10.0] {
        let (capacity, demand) = (100.0_f64, 100.0 * multiple);
        let t0 = Instant::now();
        let mut c = LossControl::default();
        let (mut taken, mut refused, mut credit) = (0.0, 0.0, 0.0);
        let windows = 100;
        for w in 0..windows {
            let at = t0 + WINDOW * w;
            let p = f64::from(c.percent(at, 0)) / 100.0;
            credit += demand * (1.0 - p);
            let sent = credit.floor();
            credit -= sent;
            for k in 0..sent as u32 {
                c.handle_new_call(at + Duration::from_micros(u64::from(k)), 0, f64::from(k) >= capacity);
            }
            if w >= 10 {
                taken += sent.min(capacity);
                refused += (sent - capacity).max(0.0);
            }
        }
        let measured = f64::from(windows - 10);
        let held = taken / (capacity * measured);
        assert!(held >= 0.9, "{multiple}×: {:.0} % of capacity", held * 100.0);
        assert!(refused / (demand * measured) < 0.2, "{multiple}×: {refused} refused");
    }
}

#[test]
fn calls_shed_unread_count_as_refused() {
    let t0 = Instant::now();
    let mut c = LossControl::default();
    for i in 0..40 {
        c.handle_new_call(t0 + Duration::from_millis(i), 0, false);
    }
    c.handle_refused(t0 + Duration::from_millis(50), 0, 60);
    assert_eq!(c.percent(t0 + WINDOW, 0), 60);
}
