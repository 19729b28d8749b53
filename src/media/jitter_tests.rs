//! Jitter buffer tests, driven by fake time in 1 ms steps.

use super::*;

const SSRC: u32 = 0x1234_5678;

/// One scheduled arrival.
#[derive(Clone, Copy)]
struct Arr {
    at_ms: u64,
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    tag: u8,
}

fn stream(n: usize, seq0: u16, ts0: u32) -> Vec<Arr> {
    (0..n)
        .map(|k| Arr {
            at_ms: k as u64 * 20,
            seq: seq0.wrapping_add(k as u16),
            ts: ts0.wrapping_add(160 * k as u32),
            ssrc: SSRC,
            marker: k == 0,
            tag: k as u8,
        })
        .collect()
}

/// A distinctive non-silent µ-law code per frame tag.
fn code(tag: u8) -> u8 {
    0x90 + tag % 0x60
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Out {
    A(u8),
    C,
    S,
}

fn run(jb: &mut JitterBuffer, arrivals: &[Arr], until_ms: u64) -> (Vec<Out>, Vec<PushOutcome>) {
    let t0 = Instant::now();
    let (mut out, mut pushes) = (Vec::new(), Vec::new());
    for ms in 0..=until_ms {
        let now = t0 + Duration::from_millis(ms);
        for a in arrivals.iter().filter(|a| a.at_ms == ms) {
            let meta = RtpMeta { seq: a.seq, timestamp: a.ts, ssrc: a.ssrc, marker: a.marker };
            pushes.push(jb.push(now, meta, Codec::Pcmu, &[code(a.tag); 160]));
        }
        while let Some(f) = jb.poll_frame(now) {
            out.push(match f.kind {
                FrameKind::Audio => Out::A(Codec::Pcmu.encode(f.pcm[0]) - 0x90),
                FrameKind::Concealed => Out::C,
                FrameKind::Silence => Out::S,
            });
        }
    }
    (out, pushes)
}

fn audio(tags: impl IntoIterator<Item = u8>) -> Vec<Out> {
    tags.into_iter().map(Out::A).collect()
}

fn jb() -> JitterBuffer {
    JitterBuffer::new(JitterConfig::default())
}

#[test]
fn in_order_plays_after_target_delay() {
    let mut jb = jb();
    assert_eq!(jb.poll_timeout(), None);
    let (out, _) = run(&mut jb, &stream(10, 100, 5000), 60 + 9 * 20);
    assert_eq!(out, audio(0..10));
    let s = jb.stats();
    assert_eq!((s.received, s.lost, s.late, s.played), (10, 0, 0, 10));
}

#[test]
fn first_frame_due_exactly_at_target_delay() {
    let mut jb = jb();
    let t0 = Instant::now();
    let meta = RtpMeta { seq: 1, timestamp: 0, ssrc: SSRC, marker: true };
    jb.push(t0, meta, Codec::Pcma, &[0xD5; 160]);
    assert_eq!(jb.poll_timeout(), Some(t0 + Duration::from_millis(60)));
    assert!(jb.poll_frame(t0 + Duration::from_millis(59)).is_none());
    let f = jb.poll_frame(t0 + Duration::from_millis(60)).unwrap();
    assert_eq!((f.kind, f.pcm[0]), (FrameKind::Audio, 8));
    assert_eq!(jb.poll_timeout(), Some(t0 + Duration::from_millis(80)));
}

#[test]
fn reordered_packets_are_sorted() {
    let mut arr = stream(10, 0, 0);
    arr[3].at_ms = 85; // after packet 4, before its playout at 120 ms
    arr[6].at_ms = 119;
    let mut jb = jb();
    let (out, pushes) = run(&mut jb, &arr, 240);
    assert_eq!(out, audio(0..10));
    assert!(pushes.iter().all(|p| *p == PushOutcome::Buffered));
}

#[test]
fn short_loss_is_concealed_with_fade() {
    let mut arr = stream(10, 0, 0);
    arr.remove(4);
    let mut jb = jb();
    let (out, _) = run(&mut jb, &arr, 240);
    let mut want = audio(0..4);
    want.push(Out::C);
    want.extend(audio(5..10));
    assert_eq!(out, want);
    let s = jb.stats();
    assert_eq!((s.lost, s.concealed, s.received), (1, 1, 9));
}

#[test]
fn long_loss_fades_then_silence() {
    let mut arr = stream(12, 0, 0);
    arr.drain(2..8); // six frames missing
    let mut jb = jb();
    let t0 = Instant::now();
    for a in &arr[..2] {
        let m = RtpMeta { seq: a.seq, timestamp: a.ts, ssrc: SSRC, marker: false };
        jb.push(t0 + Duration::from_millis(a.at_ms), m, Codec::Pcmu, &[0x80; 160]);
    }
    let mut levels = Vec::new();
    for k in 0..6 {
        let f = jb.poll_frame(t0 + Duration::from_millis(60 + 20 * k)).unwrap();
        levels.push((f.kind, f.pcm[0].abs(), f.pcm[159].abs()));
    }
    assert_eq!(levels[1].0, FrameKind::Audio);
    // Concealment fades monotonically to zero over three frames, then silence.
    assert_eq!(levels[2].0, FrameKind::Concealed);
    assert!(levels[2].1 <= levels[1].1 && levels[2].2 < levels[2].1);
    assert!(levels[3].1 < levels[2].1 && levels[4].1 < levels[3].1);
    assert_eq!((levels[5].0, levels[5].1), (FrameKind::Silence, 0));
    let (out, _) = run(&mut JitterBuffer::new(JitterConfig::default()), &arr, 300);
    assert_eq!(&out[2..8], &[Out::C, Out::C, Out::C, Out::S, Out::S, Out::S]);
    assert_eq!(&out[8..12], &audio(8..12)[..]);
}

#[test]
fn late_packet_is_dropped_and_counted() {
    let mut arr = stream(10, 0, 0);
    arr[3].at_ms = 130; // playout of frame 3 was at 120 ms
    let mut jb = jb();
    let (out, pushes) = run(&mut jb, &arr, 240);
    assert_eq!(out[3], Out::C);
    assert!(pushes.contains(&PushOutcome::Late));
    let s = jb.stats();
    assert_eq!((s.late, s.lost, s.concealed), (1, 0, 1));
}

#[test]
fn duplicates_before_and_after_playout() {
    let mut arr = stream(6, 0, 0);
    let mut early = arr[2];
    early.at_ms = 45;
    let mut after = arr[2];
    after.at_ms = 150; // frame 2 played at 100 ms
    arr.push(early);
    arr.push(after);
    let mut jb = jb();
    let (out, pushes) = run(&mut jb, &arr, 200);
    assert_eq!(out[..6], audio(0..6));
    assert_eq!(pushes.iter().filter(|p| **p == PushOutcome::Duplicate).count(), 2);
    let s = jb.stats();
    assert_eq!((s.duplicates, s.lost, s.received), (2, 0, 6));
}

#[test]
fn sequence_and_timestamp_wrap() {
    let mut arr = stream(12, 65530, u32::MAX - 160 * 5 + 1);
    arr.remove(7); // lost right after the seq wrap
    let mut jb = jb();
    let (out, _) = run(&mut jb, &arr, 60 + 11 * 20);
    let mut want = audio(0..7);
    want.push(Out::C);
    want.extend(audio(8..12));
    assert_eq!(out, want);
    assert_eq!(jb.stats().lost, 1);
}

#[test]
fn timestamp_jump_resyncs() {
    let mut arr = stream(10, 0, 0);
    for a in &mut arr[5..] {
        a.ts = a.ts.wrapping_add(80_000_000); // sender clock restart
    }
    let mut jb = jb();
    let (out, pushes) = run(&mut jb, &arr, 400);
    assert_eq!(pushes[5], PushOutcome::Resynced);
    let played: Vec<_> = out.iter().filter(|o| matches!(o, Out::A(_))).copied().collect();
    assert_eq!(played, audio(0..10));
    assert_eq!(jb.stats().resyncs, 1);
    assert_eq!(jb.stats().lost, 0);
}

#[test]
fn ssrc_change_resets_stream() {
    let mut arr = stream(10, 0, 0);
    for a in &mut arr[5..] {
        a.ssrc = 0xDEAD;
        a.seq = a.seq.wrapping_add(30_000);
        a.ts = a.ts.wrapping_add(1234);
    }
    let mut jb = jb();
    let (out, pushes) = run(&mut jb, &arr, 400);
    assert_eq!(pushes[5], PushOutcome::Resynced);
    let played: Vec<_> = out.iter().filter(|o| matches!(o, Out::A(_))).copied().collect();
    assert_eq!(played, audio(0..10));
    let s = jb.stats();
    assert_eq!((s.resyncs, s.lost, s.received), (1, 0, 10));
}

#[test]
fn talkspurt_after_silence_keeps_target_delay() {
    // DTX: 5 frames, 1 s of no packets, then a marked talkspurt whose
    // timestamp only advanced 200 ms (sender clock skew): re-anchored, not late.
    let mut arr = stream(10, 0, 0);
    for (k, a) in arr[5..].iter_mut().enumerate() {
        a.at_ms = 1000 + 20 * k as u64;
        a.ts = 160 * 15 + 160 * k as u32;
        a.marker = k == 0;
    }
    let mut jb = jb();
    let (out, pushes) = run(&mut jb, &arr, 1300);
    assert!(pushes.iter().all(|p| *p == PushOutcome::Buffered));
    let played: Vec<_> = out.iter().filter(|o| matches!(o, Out::A(_))).copied().collect();
    assert_eq!(played, audio(0..10));
    assert_eq!(jb.stats().lost, 0);
    // First frame of the new talkspurt plays at 1000 + 60 ms.
    let first = out.iter().position(|o| *o == Out::A(5)).unwrap();
    assert_eq!(60 + 20 * first as u64, 1060);
}

#[test]
fn multi_frame_packets_and_invalid_sizes() {
    let mut jb = jb();
    let t0 = Instant::now();
    let m = |seq, ts| RtpMeta { seq, timestamp: ts, ssrc: 1, marker: false };
    assert_eq!(jb.push(t0, m(1, 0), Codec::Pcmu, &[]), PushOutcome::Invalid);
    assert_eq!(jb.push(t0, m(1, 0), Codec::Pcmu, &[0xFF; 4096]), PushOutcome::Invalid);
    // A 40 ms packet fills two frames.
    assert_eq!(jb.push(t0, m(1, 0), Codec::Pcmu, &[0x80; 320]), PushOutcome::Buffered);
    assert_eq!(jb.buffered_frames(), 2);
    assert_eq!(jb.stats().invalid, 2);
}

#[test]
fn burst_after_stall_is_trimmed() {
    // 20 packets arrive at once: depth is trimmed toward the target.
    let mut arr = stream(20, 0, 0);
    arr.iter_mut().for_each(|a| a.at_ms = 0);
    let mut jb = jb();
    let (out, _) = run(&mut jb, &arr, 60 + 25 * 20);
    let s = jb.stats();
    assert!(s.overflow_dropped > 0);
    assert_eq!(s.played + s.overflow_dropped, 20);
    assert!(out.len() >= 20);
}

/// 30 ms packets (SIPp's sample capture, some carriers) play gap-free.
#[test]
fn thirty_ms_packets_fill_frames_at_sample_precision() {
    let mut jb = jb();
    let t0 = Instant::now();
    let mut played = 0;
    let mut silent = 0;
    for k in 0..20u32 {
        let meta = RtpMeta { seq: k as u16, timestamp: k * 240, ssrc: 7, marker: k == 0 };
        let now = t0 + std::time::Duration::from_millis(30 * k as u64);
        assert_eq!(jb.push(now, meta, Codec::Pcmu, &[0x80; 240]), PushOutcome::Buffered);
        while let Some(f) = jb.poll_frame(now) {
            if f.pcm.iter().any(|s| *s != 0) {
                played += 1
            } else {
                silent += 1
            }
        }
    }
    // 20 × 30 ms = 30 frames of audio; all but the buffered tail played.
    assert!(played >= 25, "played {played}, silent {silent}");
    assert_eq!(silent, 0);
}
