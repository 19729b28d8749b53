//! Per-packet cost of the media hot paths, with fake time.
//!
//! `cargo run --release --example media_bench [packets] [runs]`

use std::hint::black_box;
use std::time::{Duration, Instant};

use clinivox::media::g711::{Codec, FRAME_SAMPLES};
use clinivox::media::rtp_session::{MediaEvent, RtpConfig, RtpSession};
use clinivox::media::sdp::{Direction, Negotiated};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn negotiated() -> Negotiated {
    Negotiated {
        codec: Codec::Pcmu,
        codec_pt: 0,
        dtmf_pt: Some(101),
        remote: "192.0.2.1:4000".parse().unwrap(),
        direction: Direction::SendRecv,
        ptime: 20,
        srtp: None,
    }
}

fn speech_like(k: usize) -> [i16; FRAME_SAMPLES] {
    let mut f = [0i16; FRAME_SAMPLES];
    for (i, s) in f.iter_mut().enumerate() {
        let t = (k * FRAME_SAMPLES + i) as f32 / 8000.0;
        *s = (8000.0 * (t * 440.0 * std::f32::consts::TAU).sin() + 3000.0 * (t * 1250.0 * std::f32::consts::TAU).sin()) as i16;
    }
    f
}

/// Receive path: RTP parse + latch/PT filter + jitter insert + G.711 decode + playout.
fn bench_receive(n: usize) -> f64 {
    let mut rng = StdRng::seed_from_u64(1);
    let t0 = Instant::now();
    let mut rx = RtpSession::new(t0, negotiated(), RtpConfig::default(), &mut rng);
    let from = "192.0.2.1:4000".parse().unwrap();
    // One template packet; sequence number and timestamp are patched in place.
    let mut pkt = vec![0u8; 12 + FRAME_SAMPLES];
    pkt[0] = 0x80;
    pkt[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    Codec::Pcmu.encode_into(&speech_like(0), &mut pkt[12..]);
    let mut frames = 0u64;
    let start = Instant::now();
    for k in 0..n {
        let now = t0 + Duration::from_millis(20 * k as u64);
        pkt[2..4].copy_from_slice(&(k as u16).to_be_bytes());
        pkt[4..8].copy_from_slice(&((k as u32).wrapping_mul(160)).to_be_bytes());
        let _ = rx.handle_datagram(now, from, black_box(&pkt));
        while let Some(ev) = rx.poll_event(now) {
            if let MediaEvent::Frame(f) = ev {
                frames += black_box(f[0]) as u64 & 1;
            }
        }
    }
    let el = start.elapsed();
    black_box(frames);
    el.as_nanos() as f64 / n as f64
}

/// Send path: G.711 encode + RTP header + datagram hand-off.
fn bench_send(n: usize) -> f64 {
    let mut rng = StdRng::seed_from_u64(2);
    let t0 = Instant::now();
    let mut tx = RtpSession::new(t0, negotiated(), RtpConfig::default(), &mut rng);
    let pcm = speech_like(1);
    let mut bytes = 0usize;
    let start = Instant::now();
    for _ in 0..n {
        tx.send_frame(black_box(&pcm));
        while let Some((_, d)) = tx.poll_transmit(t0) {
            bytes += black_box(d).len();
        }
    }
    let el = start.elapsed();
    black_box(bytes);
    el.as_nanos() as f64 / n as f64
}

fn bench_codec(n: usize, decode: bool) -> f64 {
    let pcm = speech_like(2);
    let mut codes = [0u8; FRAME_SAMPLES];
    Codec::Pcmu.encode_into(&pcm, &mut codes);
    let mut out = [0i16; FRAME_SAMPLES];
    let start = Instant::now();
    for _ in 0..n {
        if decode {
            Codec::Pcmu.decode_into(black_box(&codes), &mut out);
            black_box(&out);
        } else {
            Codec::Pcmu.encode_into(black_box(&pcm), &mut codes);
            black_box(&codes);
        }
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    println!("media_bench: {n} packets x {runs} runs (20 ms G.711 PCMU, 160 samples)\n");
    println!("| path                                        | median ns/pkt | min    | max    |");
    println!("|---------------------------------------------|--------------:|-------:|-------:|");
    let cases: [(&str, &dyn Fn(usize) -> f64); 4] = [
        ("receive: parse + jitter + decode + playout", &bench_receive),
        ("send: encode + RTP header + queue", &bench_send),
        ("  G.711 decode 160 samples", &|n| bench_codec(n, true)),
        ("  G.711 encode 160 samples", &|n| bench_codec(n, false)),
    ];
    for (name, f) in cases {
        let (med, lo, hi) = median((0..runs).map(|_| f(n)).collect());
        println!("| {name:<43} | {med:>13.1} | {lo:>6.1} | {hi:>6.1} |");
    }
}
