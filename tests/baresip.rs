//! baresip as a real peer (a softphone like the clinic's callers and desk
//! phones), inside `unshare -n` (loopback only). Each baresip plays a WAV as
//! its microphone (`aufile`) and records what it hears (`sndfile`); the
//! tests look for the played sound in the recordings by cross-correlation,
//! not just for a non-empty file.
#![cfg(feature = "whisper")]

#[path = "sip/common.rs"]
mod common;
#[path = "support/phone.rs"]
mod phone;

use std::path::{Path, PathBuf};

use common::*;

/// A baresip user agent's configuration directory.
struct Phone {
    dir: PathBuf,
}

impl Phone {
    /// `port`: its SIP port (it also takes port+1 for TLS); `account`: the
    /// accounts line; `mic`: the WAV it sends (8 kHz mono S16).
    fn new(root: &Path, name: &str, port: u16, account: &str, mic: &Path) -> Phone {
        Phone::with_config(root, name, port, account, mic, "")
    }

    /// With extra configuration lines (TLS CA file, the srtp module).
    fn with_config(root: &Path, name: &str, port: u16, account: &str, mic: &Path, extra: &str) -> Phone {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("phone dir");
        phone::configure(&dir, name, port, account, mic);
        if !extra.is_empty() {
            let path = dir.join("config");
            let mut config = std::fs::read_to_string(&path).expect("baresip config");
            config.push_str(extra);
            std::fs::write(&path, config).expect("baresip config");
        }
        Phone { dir }
    }

    /// Shell command running it for `secs`, with extra start-up commands.
    fn cmd(&self, secs: u32, commands: &str) -> String {
        let e = if commands.is_empty() { String::new() } else { format!("-e '{commands}'") };
        format!("baresip -f {dir} {e} -t {secs} > {dir}/log.txt 2>&1", dir = self.dir.display())
    }

    /// What it heard: the decoded receive stream `sndfile` recorded.
    fn heard(&self) -> Vec<f32> {
        let f = std::fs::read_dir(&self.dir)
            .expect("phone dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| panic!("no recording in {}: {}", self.dir.display(), self.log()));
        clinivox::speech::wav::read(&f).expect("recording is a WAV").samples
    }

    fn log(&self) -> String {
        phone::without_status_lines(&std::fs::read_to_string(self.dir.join("log.txt")).unwrap_or_default())
    }
}

/// A frequency sweep (distinct at every instant, so correlation has one
/// clear peak) as an 8 kHz mono WAV, with silence after it.
fn sweep(path: &Path, f0: f32, f1: f32, secs: f32, tail_secs: f32) -> Vec<f32> {
    let n = (8000.0 * secs) as usize;
    let mut phase = 0.0f32;
    let mut v: Vec<f32> = (0..n)
        .map(|i| {
            let f = f0 + (f1 - f0) * i as f32 / n as f32;
            phase += 2.0 * std::f32::consts::PI * f / 8000.0;
            0.4 * phase.sin()
        })
        .collect();
    v.extend(std::iter::repeat_n(0.0, (8000.0 * tail_secs) as usize));
    let pcm: Vec<i16> = v.iter().map(|s| (s * 32767.0) as i16).collect();
    clinivox::speech::wav::write_i16(path, 8000, &pcm).expect("write sweep");
    v
}

/// Best normalised correlation of `needle` (its first `len` samples, from
/// `skip`) anywhere in `hay`: 1.0 is an exact (scaled) copy.
fn best_correlation(hay: &[f32], needle: &[f32], skip: usize, len: usize) -> f32 {
    let n = &needle[skip..skip + len];
    let nn: f32 = n.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut best = 0.0f32;
    for lag in 0..hay.len().saturating_sub(len) {
        let h = &hay[lag..lag + len];
        let hh: f32 = h.iter().map(|x| x * x).sum::<f32>().sqrt();
        if hh < 1e-3 {
            continue;
        }
        let dot: f32 = h.iter().zip(n).map(|(a, b)| a * b).sum();
        best = best.max(dot / (hh * nn));
    }
    best
}

/// How well `hay` carries `needle` through a live bridge: the median of
/// the best correlations of five 0.4 s pieces of it (from 0.8 s on). On a
/// loaded machine a phone's jitter buffer may drop or add one 20 ms frame,
/// which splits one long window in two (0.7); it spoils at most one piece.
fn heard_through(hay: &[f32], needle: &[f32]) -> f32 {
    let mut c: Vec<f32> = (0..5).map(|i| best_correlation(hay, needle, 6400 + i * 4000, 3200)).collect();
    c.sort_by(f32::total_cmp);
    c[2]
}

const SERVER_CONFIG: &str = r#"
listen = [{ transport = "udp", addr = "127.0.0.1:5060" }]
numbers = ["1000"]
nonce_secret = "test"
# SIPp answers only the first challenge, and only MD5.
digest_algorithms = ["MD5", "SHA-256"]
[rtp]
min = 34000
max = 34999
[[trunks]]
name = "loop"
cidrs = ["127.0.0.0/8"]
[[extensions]]
number = "201"
password = "desk-201-secret"
"#;

/// baresip calls the echo app and plays a sweep; what it records is that
/// sweep, back through Clinivox (two G.711 passes and our jitter buffer).
#[test]
fn baresip_hears_its_own_audio_from_the_echo_app() {
    if !have("baresip", "baresip-core") || !have("tshark", "tshark") {
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    let mic = root.path().join("sweep.wav");
    let sent = sweep(&mic, 300.0, 3000.0, 3.0, 1.0);
    let caller = Phone::new(root.path(), "caller", 5070, "<sip:patient@127.0.0.1:5070>;regint=0", &mic);
    let cfg = root.path().join("cfg.toml");
    std::fs::write(&cfg, SERVER_CONFIG).expect("write config");
    let script = format!(
        "{bin} {cfg} echo > {root}/server.log 2>&1 &\nSRV=$!\nsleep 0.5\n{call}\nsleep 0.5\nkill $SRV\ncat {root}/server.log",
        bin = interop_bin(),
        cfg = cfg.display(),
        root = root.path().display(),
        call = caller.cmd(8, "/dial sip:1000@127.0.0.1:5060"),
    );
    let capture = root.path().join("wire.pcap");
    let (_, out) = run_isolated(&with_capture(&capture, &script), 40);
    println!("{out}\n--- caller ---\n{}", caller.log());
    assert!(out.contains("HANGUP Remote"), "the caller ended the call with BYE:\n{out}");
    let heard = caller.heard();
    assert!(heard.len() > 8000 * 2, "recording too short: {} samples", heard.len());
    // One second from the middle of the sweep, searched for in the recording.
    let c = best_correlation(&heard, &sent, 8000, 8000);
    println!("correlation of the echoed sweep: {c:.3}");
    assert!(c > 0.9, "the echo does not contain the played sweep (correlation {c:.3})");
    // The control for the SRTP test below: plain RTP on the wire carries
    // the caller's voice, and the capture analysis finds it.
    let wire = Wire::read(&capture);
    let on_wire = best_correlation(&wire.g711_audio(34000..=34999), &sent, 8000, 8000);
    println!("correlation of the sweep with the G.711 payloads on the wire: {on_wire:.3}");
    assert!(on_wire > 0.9, "plain RTP on the wire should carry the sweep (correlation {on_wire:.3})");
    assert!(wire.stream_text(5060).contains("INVITE sip:1000@"), "plain SIP is readable on the wire");
}

/// `script` with a packet capture of the loopback interface around it.
fn with_capture(pcap: &Path, script: &str) -> String {
    format!(
        "tshark -i lo -q -w {pcap} > {pcap}.log 2>&1 &\nCAP=$!\nfor i in $(seq 50); do [ -s {pcap} ] && break; sleep 0.1; done\n{script}\nsleep 0.3\nkill -INT $CAP; wait $CAP",
        pcap = pcap.display()
    )
}

/// A loopback capture, read back with tshark: UDP datagrams and TCP
/// payloads with their ports.
struct Wire {
    udp: Vec<(u16, u16, Vec<u8>)>,
    tcp: Vec<(u16, u16, Vec<u8>)>,
}

impl Wire {
    fn read(pcap: &Path) -> Wire {
        let fields = |filter: &str, proto: &str| -> Vec<(u16, u16, Vec<u8>)> {
            let out = std::process::Command::new("tshark")
                .args(["-r"])
                .arg(pcap)
                .args([
                    "-Y",
                    filter,
                    "-T",
                    "fields",
                    "-e",
                    &format!("{proto}.srcport"),
                    "-e",
                    &format!("{proto}.dstport"),
                    "-e",
                    &format!("{proto}.payload"),
                ])
                .output()
                .expect("tshark reads the capture");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| {
                    let mut f = l.split('\t');
                    let (a, b, p) = (f.next()?.parse().ok()?, f.next()?.parse().ok()?, f.next()?);
                    Some((a, b, hex::decode(p.replace(':', "")).ok()?))
                })
                .collect()
        };
        let w = Wire { udp: fields("udp", "udp"), tcp: fields("tcp.len > 0", "tcp") };
        assert!(!w.udp.is_empty() || !w.tcp.is_empty(), "the capture {} is empty", pcap.display());
        w
    }

    /// Every UDP payload sent from a port in `ports` (Clinivox's RTP range)
    /// read as RTP with 160 bytes of G.711 µ-law after a 12-byte header:
    /// what a wiretap would hear of the audio Clinivox sends.
    fn g711_audio(&self, ports: std::ops::RangeInclusive<u16>) -> Vec<f32> {
        self.udp
            .iter()
            .filter(|(src, _, p)| ports.contains(src) && p.len() >= 172)
            .flat_map(|(_, _, p)| p[12..172].iter().map(|b| clinivox::media::g711::ulaw_decode(*b) as f32 / 32768.0))
            .collect()
    }

    /// The bytes carried to or from TCP `port`, as text (lossy).
    fn stream_text(&self, port: u16) -> String {
        let udp = self.udp.iter().filter(|(a, b, _)| *a == port || *b == port);
        let tcp = self.tcp.iter().filter(|(a, b, _)| *a == port || *b == port);
        udp.chain(tcp).map(|(_, _, p)| String::from_utf8_lossy(p).into_owned()).collect()
    }

    fn tcp_bytes(&self, port: u16) -> usize {
        self.tcp.iter().filter(|(a, b, _)| *a == port || *b == port).map(|(_, _, p)| p.len()).sum()
    }
}

const TLS_SERVER_CONFIG: &str = r#"
listen = [{ transport = "udp", addr = "127.0.0.1:5060" }, { transport = "tls", addr = "127.0.0.1:5061" }]
numbers = ["1000"]
nonce_secret = "test"
[rtp]
min = 34000
max = 34999
[tls]
cert = "CERT"
key = "KEY"
CA_LINE
[[trunks]]
name = "loop"
cidrs = ["127.0.0.0/8"]
srtp = "required"
"#;

/// A test CA, Clinivox's certificate signed by it, and a baresip caller
/// on 5070 that calls over TLS with mandatory SRTP, trusting that CA.
struct Secure {
    ca: TestCa,
    cert: PathBuf,
    key: PathBuf,
    /// The baresip configuration lines for TLS and SRTP.
    extra: String,
    caller: Phone,
}

impl Secure {
    fn new(root: &Path, mic: &Path) -> Secure {
        let ca = TestCa::new(root, "ca");
        let (cert, key, _) = tls_pair(root, "server", &["127.0.0.1"], Some(&ca), false);
        let extra = format!("module srtp.so\nsip_cafile {}\n", ca.pem.display());
        let account = "<sip:patient@127.0.0.1:5070;transport=tls>;regint=0;mediaenc=srtp-mand";
        let caller = Phone::with_config(root, "caller", 5070, account, mic, &extra);
        Secure { ca, cert, key, extra, caller }
    }
}

fn tls_server_config(cert: &Path, key: &Path, ca: Option<&Path>) -> String {
    let ca_line = ca.map(|c| format!("ca = \"{}\"", c.display())).unwrap_or_default();
    TLS_SERVER_CONFIG.replace("CERT", &cert.display().to_string()).replace("KEY", &key.display().to_string()).replace("CA_LINE", &ca_line)
}

/// Issue 14: baresip calls the echo app over TLS with SRTP (mandatory on
/// its side, required on ours). It hears its sweep back; a capture of the
/// loopback interface during the call holds no SIP in clear on the TLS
/// port and no G.711 payload that correlates with the sweep (the plain
/// test above shows the same analysis finds it when it is there). A second
/// caller offering plain RTP over UDP is refused 488: SRTP is required,
/// and keys never travel in clear.
#[test]
fn baresip_over_tls_with_srtp_hears_its_echo_and_the_wire_carries_neither_sip_nor_voice() {
    if !have("baresip", "baresip-core") || !have("tshark", "tshark") {
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    let mic = root.path().join("sweep.wav");
    let sent = sweep(&mic, 300.0, 3000.0, 3.0, 1.0);
    let Secure { ca: _, cert, key, extra: _, caller } = Secure::new(root.path(), &mic);
    let plain = Phone::new(root.path(), "plain", 5072, "<sip:other@127.0.0.1:5072>;regint=0", &mic);
    let cfg = root.path().join("cfg.toml");
    std::fs::write(&cfg, tls_server_config(&cert, &key, None)).expect("write config");
    let script = format!(
        "{bin} {cfg} echo > {root}/server.log 2>&1 &\nSRV=$!\nsleep 0.5\n{call}\n{plain}\nsleep 0.5\nkill $SRV\ncat {root}/server.log",
        bin = interop_bin(),
        cfg = cfg.display(),
        root = root.path().display(),
        call = caller.cmd(8, "/dial sip:1000@127.0.0.1:5061;transport=tls"),
        plain = plain.cmd(3, "/dial sip:1000@127.0.0.1:5060"),
    );
    let capture = root.path().join("wire.pcap");
    let (_, out) = run_isolated(&with_capture(&capture, &script), 50);
    println!("{out}\n--- caller ---\n{}\n--- plain ---\n{}", caller.log(), plain.log());
    assert!(out.contains("HANGUP Remote"), "the caller ended the call with BYE:\n{out}");
    let c = best_correlation(&caller.heard(), &sent, 8000, 8000);
    println!("correlation of the echoed sweep over SRTP: {c:.3}");
    assert!(c > 0.9, "the echo over SRTP does not contain the played sweep (correlation {c:.3})");
    assert!(plain.log().contains("488"), "plain RTP is refused with 488 when SRTP is required:\n{}", plain.log());

    let wire = Wire::read(&capture);
    assert!(wire.tcp_bytes(5061) > 1000, "the call's signalling went over the TLS port");
    let tls_text = wire.stream_text(5061);
    for clear in ["SIP/2.0", "INVITE", "a=crypto", "sip:1000"] {
        assert!(!tls_text.contains(clear), "{clear:?} readable on the TLS port");
    }
    let on_wire = best_correlation(&wire.g711_audio(34000..=34999), &sent, 8000, 8000);
    println!("correlation of the sweep with the payloads on the wire under SRTP: {on_wire:.3}");
    assert!(on_wire < 0.3, "the SRTP payloads on the wire correlate with the sweep ({on_wire:.3})");
}

/// A desk phone (SIPp: baresip 1.0's registration fails on its own side
/// with ENOSYS before sending anything) registers as extension 201 with
/// digest auth; a wrong password is refused; a patient calling from baresip
/// is bridged by Clinivox to 201, which sends back what it hears: the
/// patient's recording holds their own sweep, so audio went through the
/// bridge both ways.
#[test]
fn desk_phone_registers_and_is_bridged_to_a_caller_both_ways() {
    if !have("baresip", "baresip-core") || !have("sipp", "sip-tester") {
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    let mic = root.path().join("a.wav");
    let sent = sweep(&mic, 300.0, 3000.0, 4.0, 0.5);
    let caller = Phone::new(root.path(), "caller", 5070, "<sip:patient@127.0.0.1:5070>;regint=0", &mic);
    let scn = |name: &str| format!("{}/tests/sip/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    let register = std::fs::read_to_string(scn("uac_register.xml")).expect("scenario");
    for (file, code) in [("reg_ok.xml", "200"), ("reg_refused.xml", "403")] {
        std::fs::write(root.path().join(file), register.replace("EXPECT", code)).expect("write scenario");
    }
    let cfg = root.path().join("cfg.toml");
    std::fs::write(&cfg, SERVER_CONFIG).expect("write config");
    let sipp = "sipp 127.0.0.1:5060 -i 127.0.0.1 -p 5080 -mi 127.0.0.1 -t u1 -nd -m 1 -timeout 20s -timeout_error -s 201";
    let script = format!(
        "cd {root}\n{bin} {cfg} bridge 201 > server.log 2>&1 &\nSRV=$!\nsleep 0.5\n\
         {sipp} -sf reg_refused.xml -au 201 -ap guess > refused.out 2>&1; echo \"REFUSED_RC=$?\"\n\
         {sipp} -sf reg_ok.xml -au 201 -ap desk-201-secret > registered.out 2>&1; echo \"REGISTERED_RC=$?\"\n\
         {sipp} -sf {desk} -rtp_echo > desk.out 2>&1 &\nDESK=$!\nsleep 0.5\n{call}\nwait $DESK; echo \"DESK_RC=$?\"\n\
         sleep 0.3\nkill $SRV\ncat server.log",
        root = root.path().display(),
        bin = interop_bin(),
        cfg = cfg.display(),
        desk = scn("uas_desk.xml"),
        call = caller.cmd(8, "/dial sip:1000@127.0.0.1:5060"),
    );
    let (_, out) = run_isolated(&script, 60);
    println!("{out}\n--- caller ---\n{}", caller.log());
    assert!(out.contains("REFUSED_RC=0"), "a wrong password is refused with 403:\n{out}");
    assert!(out.contains("REGISTERED_RC=0"), "201 registers with the right password:\n{out}");
    assert!(out.contains("BRIDGED"), "Clinivox reached 201 and bridged:\n{out}");
    assert!(out.contains("DESK_RC=0"), "the desk phone's call was clean (answered, BYE):\n{out}");
    let c = heard_through(&caller.heard(), &sent);
    println!("caller → desk → caller correlation {c:.3}");
    assert!(c > 0.9, "the caller's sound did not come back through the bridge (correlation {c:.3})");
}

/// Issue 14: a patient calling over TLS with SRTP is bridged by Clinivox to
/// a desk phone (baresip, answering on its own TLS port) with SRTP on that
/// leg too, each leg with its own keys. Each side hears the other's sweep;
/// on the wire neither sweep is found.
#[test]
fn a_bridged_transfer_keeps_srtp_on_both_legs() {
    if !have("baresip", "baresip-core") || !have("tshark", "tshark") {
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    let (mic_a, mic_b) = (root.path().join("a.wav"), root.path().join("b.wav"));
    let sent_a = sweep(&mic_a, 300.0, 3000.0, 4.0, 0.5);
    let sent_b = sweep(&mic_b, 3000.0, 400.0, 4.0, 0.5);
    let Secure { ca, cert, key, extra, caller } = Secure::new(root.path(), &mic_a);
    let (desk_cert, desk_key, _) = tls_pair(root.path(), "desk", &["127.0.0.1"], Some(&ca), false);
    let desk_pem = root.path().join("desk-both.pem");
    let both = format!("{}{}", std::fs::read_to_string(&desk_cert).unwrap(), std::fs::read_to_string(&desk_key).unwrap());
    std::fs::write(&desk_pem, both).expect("write desk certificate");
    let desk = Phone::with_config(
        root.path(),
        "desk",
        5090,
        "<sip:201@127.0.0.1:5090;transport=tls>;regint=0;answermode=auto;mediaenc=srtp-mand",
        &mic_b,
        &format!("{extra}sip_certificate {}\n", desk_pem.display()),
    );
    let cfg = root.path().join("cfg.toml");
    // The desk phone is called over TLS at a URI: `[tls] ca` is whom we trust.
    std::fs::write(&cfg, tls_server_config(&cert, &key, Some(&ca.pem))).expect("write config");
    let script = format!(
        "cd {root}\n{desk_run} &\nDESK=$!\n{bin} {cfg} bridge 'sip:201@127.0.0.1:5091;transport=tls' > server.log 2>&1 &\nSRV=$!\nsleep 0.7\n{call}\nwait $DESK\nsleep 0.3\nkill $SRV\ncat server.log",
        root = root.path().display(),
        desk_run = desk.cmd(10, ""),
        bin = interop_bin(),
        cfg = cfg.display(),
        call = caller.cmd(8, "/dial sip:1000@127.0.0.1:5061;transport=tls"),
    );
    let capture = root.path().join("wire.pcap");
    let (_, out) = run_isolated(&with_capture(&capture, &script), 60);
    println!("{out}\n--- caller ---\n{}\n--- desk ---\n{}", caller.log(), desk.log());
    assert!(out.contains("BRIDGED"), "Clinivox reached the desk phone and bridged:\n{out}");
    assert!(caller.log().contains("SRTP is Enabled") && desk.log().contains("SRTP is Enabled"), "SRTP on both legs");
    let heard_b = heard_through(&caller.heard(), &sent_b);
    let heard_a = heard_through(&desk.heard(), &sent_a);
    println!("caller hears the desk: {heard_b:.3}; the desk hears the caller: {heard_a:.3}");
    assert!(heard_b > 0.9 && heard_a > 0.9, "audio through the bridge both ways ({heard_b:.3}, {heard_a:.3})");
    let wire = Wire::read(&capture);
    let all_rtp = wire.g711_audio(1024..=65535);
    for (name, sent) in [("caller", &sent_a), ("desk", &sent_b)] {
        let c = best_correlation(&all_rtp, sent, 8000, 8000);
        println!("the {name}'s sweep on the wire: {c:.3}");
        assert!(c < 0.3, "the {name}'s sweep is readable on the wire ({c:.3})");
    }
}
