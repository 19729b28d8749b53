//! A baresip softphone driven turn by turn, for voice end-to-end tests.
//!
//! baresip 1.0 (Debian 12) reads menu commands from its stdin (the `stdio`
//! module warns that a pipe is no terminal, and works): `/dial`, `/hangup`,
//! `/ausrc aufile,<wav>` switches the microphone mid-call, and a digit typed
//! during a call is sent as an RFC 4733 key (released 250 ms later).
//! Its `aufile` microphone ends the call at the end of the file ("audio
//! error (0,end of file)"), so every file it plays is padded with a long
//! silence ([`utterance`]). Its `sndfile` recording of what it receives
//! (`*-dec.wav`, 8 kHz S16) grows in real time during the call: [`Phone::reply`]
//! reads it to know when the other side has spoken and gone quiet again.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Louder than this (of 32767) is speech, not line noise or silence.
const LOUD: u16 = 2000;
/// The recording's sample rate: G.711 decoded by baresip.
const RATE: usize = 8000;
/// Silence after each utterance, so that the microphone outlasts any turn.
const PAD_SECS: usize = 150;

/// A running baresip in its own configuration directory.
pub struct Phone {
    pub name: String,
    dir: PathBuf,
    child: Child,
    stdin: ChildStdin,
}

impl Phone {
    /// Starts baresip on 127.0.0.1:`port` (it also takes `port`+1) with one
    /// account (`account`: an accounts-file line, e.g.
    /// `<sip:patient@127.0.0.1:5070>;regint=0;answermode=auto`) and a silent
    /// microphone. Recordings, log and configuration live in `root/name`.
    pub fn start(root: &Path, name: &str, port: u16, account: &str) -> Phone {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("phone dir");
        let mic = dir.join("silence.wav");
        write_padded(&mic, &[]);
        configure(&dir, name, port, account, &mic);
        let log = std::fs::File::create(dir.join("log.txt")).expect("phone log");
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(&dir);
        // CLINIVOX_PHONE_TRACE=1: baresip logs every SIP message (-s).
        if std::env::var_os("CLINIVOX_PHONE_TRACE").is_some() {
            cmd.arg("-s");
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(log.try_clone().expect("log handle")).stderr(log).spawn().expect("baresip starts");
        let stdin = child.stdin.take().expect("piped stdin");
        let phone = Phone { name: name.into(), dir, child, stdin };
        let started = Instant::now();
        while !phone.log().contains("baresip is ready") {
            assert!(started.elapsed() < Duration::from_secs(10), "{} did not start:\n{}", phone.name, phone.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        phone
    }

    /// Types a menu command (`/dial sip:…`) and Enter.
    pub fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("baresip reads its stdin");
        self.stdin.flush().expect("baresip reads its stdin");
    }

    pub fn dial(&mut self, uri: &str) {
        self.command(&format!("/dial {uri}"));
    }

    /// Plays `wav` (a file from [`utterance`]) into the call from now on.
    pub fn play(&mut self, wav: &Path) {
        self.command(&format!("/ausrc aufile,{}", wav.display()));
    }

    /// Presses `keys` one by one, 400 ms apart (baresip releases a key
    /// 250 ms after it was typed; a new key before that ends the last early).
    pub async fn keys(&mut self, keys: &str) {
        for k in keys.chars() {
            write!(self.stdin, "{k}").expect("baresip reads its stdin");
            self.stdin.flush().expect("baresip reads its stdin");
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
    }

    pub fn hangup(&mut self) {
        self.command("/hangup");
    }

    /// The call was set up (answered by either side).
    pub fn established(&self) -> bool {
        self.log().contains("Call established")
    }

    /// The call ended (either side hung up, or it failed).
    pub fn call_ended(&self) -> bool {
        self.log().contains("terminated")
    }

    /// Waits until the call is established.
    pub async fn wait_established(&self, limit: Duration) {
        let started = Instant::now();
        while !self.established() {
            assert!(!self.call_ended(), "{}: the call failed:\n{}", self.name, self.log());
            assert!(started.elapsed() < limit, "{}: no call within {limit:?}:\n{}", self.name, self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything received so far (8 kHz), from the growing `*-dec.wav`
    /// (its header's sizes are only written at the end: read what is there).
    pub fn heard(&self) -> Vec<i16> {
        let Some(file) = self.recording() else { return Vec::new() };
        let bytes = std::fs::read(file).unwrap_or_default();
        // sndfile writes the canonical 44-byte header: RIFF, fmt, data.
        if bytes.len() < 44 || &bytes[36..40] != b"data" {
            return Vec::new();
        }
        bytes[44..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
    }

    fn recording(&self) -> Option<PathBuf> {
        std::fs::read_dir(&self.dir).ok()?.flatten().map(|e| e.path()).find(|p| p.to_string_lossy().ends_with("-dec.wav"))
    }

    /// Waits until the other side has spoken after sample `from` and then
    /// been quiet for `quiet` (or the call ended); returns what it said.
    /// `None` if it said nothing within `limit`.
    pub async fn reply(&self, from: usize, quiet: Duration, limit: Duration) -> Option<Vec<i16>> {
        let started = Instant::now();
        let (mut seen, mut last_loud): (usize, Option<Instant>) = (from, None);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let pcm = self.heard();
            if pcm.len() > seen {
                if pcm[seen..].iter().any(|s| s.unsigned_abs() > LOUD) {
                    // Date the last loud sample by how far it is from the end.
                    let end = pcm.iter().rposition(|s| s.unsigned_abs() > LOUD).unwrap_or(0);
                    let ago = Duration::from_millis(((pcm.len() - end) * 1000 / RATE) as u64);
                    last_loud = Some(Instant::now().checked_sub(ago).unwrap_or_else(Instant::now));
                }
                seen = pcm.len();
            }
            let from = from.min(pcm.len());
            match last_loud {
                Some(t) if t.elapsed() >= quiet || self.call_ended() => return Some(pcm[from..].to_vec()),
                None if started.elapsed() > limit || self.call_ended() => return None,
                _ if started.elapsed() > limit => return Some(pcm[from..].to_vec()),
                _ => {}
            }
        }
    }

    /// Number of samples received so far: a mark for [`Phone::reply`].
    pub fn mark(&self) -> usize {
        self.heard().len()
    }

    pub fn log(&self) -> String {
        without_status_lines(&std::fs::read_to_string(self.dir.join("log.txt")).unwrap_or_default())
    }

    /// Ends baresip (`/quit`, then a kill if it lingers).
    pub fn quit(mut self) -> String {
        self.command("/quit");
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log()
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// baresip's log without its call status line, which it repaints between
/// carriage returns (`\r[0:00:03] audio=64000/64000 (bit/s)    \r`) and
/// which may follow any line directly: "Call established" is printed just
/// before it when no RTP has arrived yet (an outbound call that listens
/// first), so the filter must not drop more than the status line itself.
pub fn without_status_lines(text: &str) -> String {
    text.split('\r').filter(|piece| !is_status_line(piece)).collect()
}

fn is_status_line(piece: &str) -> bool {
    piece.starts_with('[') && piece.contains("] audio=") && !piece.contains('\n')
}

/// Writes a baresip configuration directory `dir`: SIP on 127.0.0.1:`port`
/// (it also takes `port`+1), one account (`account`: an accounts-file line),
/// G.711 only, `mic` (8 kHz mono S16 WAV) as the microphone, and what it
/// receives recorded by `sndfile` into `dir` (`*-dec.wav`).
pub fn configure(dir: &Path, name: &str, port: u16, account: &str, mic: &Path) {
    let config = format!(
        "sip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\naudio_player aubridge,{name}\naudio_alert aubridge,{name}\n\
         audio_source aufile,{mic}\nmodule_path /usr/lib/baresip/modules\nmodule stdio.so\nmodule g711.so\n\
         module aufile.so\nmodule aubridge.so\nmodule sndfile.so\nmodule_app account.so\nmodule_app menu.so\n\
         snd_path {dir}\n",
        mic = mic.display(),
        dir = dir.display(),
    );
    std::fs::write(dir.join("config"), config).expect("baresip config");
    std::fs::write(dir.join("accounts"), format!("{account}\n")).expect("baresip accounts");
}

/// Caller speech rate: espeak Spanish at 175 words a minute is recognised
/// better by Whisper than at the product's default 145.
const CALLER_WPM: &str = "175";

/// `text` spoken by the product's own `clinivox say` in `lang` (at
/// [`CALLER_WPM`]), as an 8 kHz
/// WAV padded with silence (0.3 s before, [`PAD_SECS`] after) for baresip's
/// microphone. Returns its path and the speech alone.
pub fn utterance(dir: &Path, name: &str, lang: &str, text: &str) -> (PathBuf, Vec<i16>) {
    let raw = dir.join(format!("{name}.raw.wav"));
    let out = Command::new(env!("CARGO_BIN_EXE_clinivox"))
        .args(["say", "--lang", lang, "--wpm", CALLER_WPM, text, "-o"])
        .arg(&raw)
        .output()
        .expect("clinivox say runs");
    assert!(out.status.success(), "clinivox say failed: {}", String::from_utf8_lossy(&out.stderr));
    let audio = clinivox::speech::wav::read(&raw).expect("say writes a WAV");
    assert_eq!(audio.rate, RATE as u32, "say speaks at the phone's 8 kHz");
    let speech: Vec<i16> = audio.samples.iter().map(|s| (s * 32767.0) as i16).collect();
    let path = dir.join(format!("{name}.wav"));
    let mut pcm = vec![0i16; RATE * 3 / 10];
    pcm.extend(&speech);
    write_padded(&path, &pcm);
    (path, speech)
}

fn write_padded(path: &Path, pcm: &[i16]) {
    let mut v = pcm.to_vec();
    v.extend(std::iter::repeat_n(0i16, RATE * PAD_SECS));
    clinivox::speech::wav::write_i16(path, RATE as u32, &v).expect("write WAV");
}

#[test]
fn the_status_line_is_dropped_and_the_call_established_line_kept() {
    // As baresip wrote it to a file when no RTP had arrived yet.
    let log = "call: answering call on line 1 from sip:a@127.0.0.1:5070 with 200\n\
               b@127.0.0.1: Call established: sip:a@127.0.0.1:5070\n\
               \r[0:00:00] audio=0/0 (bit/s)    \r\r[0:00:01] audio=64000/64000 (bit/s)    \r\
               sip:b@127.0.0.1:5090: Call with sip:a@127.0.0.1:5070 terminated (duration: 5 secs)\n";
    let clean = without_status_lines(log);
    assert!(clean.contains("Call established: sip:a@127.0.0.1:5070\n"), "{clean:?}");
    assert!(clean.contains("\nsip:b@127.0.0.1:5090: Call with"), "{clean:?}");
    assert!(!clean.contains("audio="), "{clean:?}");
}
