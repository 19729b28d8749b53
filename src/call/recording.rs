//! `[calls] record_audio`: a call's audio in a stereo 8 kHz 16-bit WAV,
//! the caller on the left channel and what Clinivox played on the right.
//!
//! [`Recorder::tap`] sits between an application and its call task: it forwards
//! every command and event unchanged, and on each 20 ms frame of caller
//! audio takes the frame the call is playing at that moment from a
//! [`Playout`] that follows `Play`/`Enqueue`/`StopPlaying` exactly as the
//! call core does. Both channels are therefore on the caller's 20 ms grid.
//! While the call is bridged to a staff phone, audio bypasses the
//! application and is not recorded (the recording covers the conversation
//! with the assistant).
//!
//! The file is written on a blocking thread; a write error stops the
//! recording (logged), never the call.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{CallCommand, CallEvent, CallHandle, Frame};
use crate::media::g711::FRAME_SAMPLES;

/// Sample rate of recordings (the call's own).
pub const RATE: u32 = 8000;
/// Frames handed to the writer at once (one second).
const BATCH_FRAMES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("recording {path}: {source}")]
    Create { path: String, source: hound::Error },
    #[error("recording task: {0}")]
    Join(String),
}

/// What the call is playing, frame by frame: the call core's playout rules
/// (`Play` replaces, `Enqueue` appends, `StopPlaying` empties), without
/// the sending.
#[derive(Debug, Default)]
pub struct Playout {
    queue: VecDeque<i16>,
}

impl Playout {
    pub fn handle_command(&mut self, c: &CallCommand) {
        match c {
            CallCommand::Play(pcm) => {
                self.queue.clear();
                self.queue.extend(pcm);
            }
            CallCommand::Enqueue(pcm) => self.queue.extend(pcm),
            CallCommand::StopPlaying => self.queue.clear(),
            _ => {}
        }
    }

    /// The next 20 ms played (silence when nothing is).
    pub fn next_frame(&mut self) -> Frame {
        let mut f = [0i16; FRAME_SAMPLES];
        for (s, v) in f.iter_mut().zip(self.queue.drain(..FRAME_SAMPLES.min(self.queue.len()))) {
            *s = v;
        }
        f
    }
}

/// Interleaves one frame of each side: left caller, right played.
fn stereo(caller: &Frame, played: &Frame, out: &mut Vec<i16>) {
    for (l, r) in caller.iter().zip(played) {
        out.push(*l);
        out.push(*r);
    }
}

/// An open recording file, not yet attached to a call.
pub struct Recorder {
    writer: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
    path: String,
}

impl Recorder {
    /// Creates (or truncates) the WAV at `path`.
    pub async fn create(path: PathBuf) -> Result<Recorder, RecordingError> {
        let spec = hound::WavSpec { channels: 2, sample_rate: RATE, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
        let shown = path.display().to_string();
        // A patient's voice: owner-only, whatever the umask.
        let created = tokio::task::spawn_blocking(move || {
            let file = crate::private_files::create(&path).map_err(hound::Error::IoError)?;
            hound::WavWriter::new(std::io::BufWriter::new(file), spec)
        })
        .await
        .map_err(|e| RecordingError::Join(e.to_string()))?;
        let writer = created.map_err(|source| RecordingError::Create { path: shown.clone(), source })?;
        Ok(Recorder { writer, path: shown })
    }

    /// Records `handle`'s call from now on. Returns the handle the
    /// application uses instead, and the recording task: it ends, with the
    /// file complete, once the application has dropped that handle or the
    /// call task is gone, whichever comes first.
    pub fn tap(self, handle: CallHandle) -> (CallHandle, JoinHandle<()>) {
        let Recorder { writer, path } = self;
        let (batches, batch_rx) = std::sync::mpsc::channel::<Vec<i16>>();
        let written = tokio::task::spawn_blocking(move || write_all(writer, batch_rx, &path));

        let CallHandle { id, commands, mut events, bridge_port } = handle;
        let (cmd_tx, mut cmd_rx) = mpsc::channel::<CallCommand>(64);
        let (ev_tx, ev_rx) = mpsc::channel::<CallEvent>(512);
        let task = tokio::spawn(async move {
            let mut playout = Playout::default();
            let mut batch = Vec::with_capacity(BATCH_FRAMES * FRAME_SAMPLES * 2);
            loop {
                tokio::select! {
                    c = cmd_rx.recv() => match c {
                        Some(c) => {
                            playout.handle_command(&c);
                            if commands.send(c).await.is_err() {
                                break; // the call task is gone
                            }
                        }
                        // The application is done: dropping `commands` hangs up.
                        None => break,
                    },
                    ev = events.recv() => match ev {
                        Some(ev) => {
                            if let CallEvent::Audio(f) = &ev {
                                stereo(f, &playout.next_frame(), &mut batch);
                                if batch.len() >= BATCH_FRAMES * FRAME_SAMPLES * 2 {
                                    let _ = batches.send(std::mem::take(&mut batch));
                                }
                            }
                            // As the call task does: never block the call on a slow application.
                            let _ = ev_tx.try_send(ev);
                        }
                        None => break,
                    },
                }
            }
            if !batch.is_empty() {
                let _ = batches.send(batch);
            }
            drop(batches);
            let _ = written.await;
        });
        (CallHandle { id, commands: cmd_tx, events: ev_rx, bridge_port }, task)
    }
}

/// The writer thread: appends batches until the sender is dropped, then
/// finalizes the header.
fn write_all(mut w: hound::WavWriter<std::io::BufWriter<std::fs::File>>, batches: std::sync::mpsc::Receiver<Vec<i16>>, path: &str) {
    for batch in batches {
        for s in batch {
            if let Err(e) = w.write_sample(s) {
                tracing::warn!(error = %e, path, "recording stopped: write failed");
                return;
            }
        }
    }
    if let Err(e) = w.finalize() {
        tracing::warn!(error = %e, path, "recording could not be finalized");
    }
}

/// With `[calls] record_audio` on, records the call whose record is
/// `call_id` to `recordings_dir` and stores the file's path on the record.
/// Returns the handle the application uses (the same one when recording is
/// off or the file cannot be created: the call goes on unrecorded) and the
/// recording task to await once the call is over.
pub async fn record_if_on(
    config: &crate::config::CallsConfig,
    store: &crate::store::Store,
    call_id: Option<&str>,
    handle: CallHandle,
) -> (CallHandle, Option<JoinHandle<()>>) {
    if !config.record_audio {
        return (handle, None);
    }
    // Without a record (the store failed) the file is still named uniquely.
    let name = call_id.map(str::to_string).unwrap_or_else(|| format!("call-{}-{}", chrono::Utc::now().timestamp(), handle.id.0));
    let path = path_for(&config.recordings_dir, &name);
    match Recorder::create(path.clone()).await {
        Ok(r) => {
            if let Some(id) = call_id {
                if let Err(e) = store.set_call_recording(id, &path.display().to_string()).await {
                    tracing::warn!(error = %e, "could not store the recording's path");
                }
            }
            let (handle, task) = r.tap(handle);
            (handle, Some(task))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the call is not recorded");
            (handle, None)
        }
    }
}

/// Where the recording of call record `call_id` goes.
pub fn path_for(dir: &Path, call_id: &str) -> PathBuf {
    // Record ids are generated by the store (hex); keep the name safe anyway.
    let name: String = call_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    dir.join(format!("{name}.wav"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::endpoint::CallId;

    #[test]
    fn playout_follows_play_enqueue_and_stop() {
        let mut p = Playout::default();
        assert_eq!(p.next_frame(), [0; FRAME_SAMPLES]);
        p.handle_command(&CallCommand::Play(vec![1; 200]));
        p.handle_command(&CallCommand::Enqueue(vec![2; 200]));
        let f = p.next_frame();
        assert!(f.iter().all(|&s| s == 1));
        let f = p.next_frame();
        assert_eq!((f[39], f[40], f[159]), (1, 2, 2));
        // Play replaces what is left; a short tail is padded with silence.
        p.handle_command(&CallCommand::Play(vec![3; 10]));
        let f = p.next_frame();
        assert_eq!((f[9], f[10]), (3, 0));
        p.handle_command(&CallCommand::Enqueue(vec![4; 500]));
        p.handle_command(&CallCommand::StopPlaying);
        assert_eq!(p.next_frame(), [0; FRAME_SAMPLES]);
        p.handle_command(&CallCommand::SendDtmf('5'));
        assert_eq!(p.next_frame(), [0; FRAME_SAMPLES]);
    }

    #[test]
    fn recording_file_names_are_safe() {
        assert_eq!(path_for(Path::new("/rec"), "a1b2-c3"), PathBuf::from("/rec/a1b2-c3.wav"));
        assert_eq!(path_for(Path::new("/rec"), "../x"), PathBuf::from("/rec/___x.wav"));
    }

    /// Both directions go through untouched; the WAV holds the caller on
    /// the left and what was played, on the same frames, on the right.
    #[tokio::test]
    async fn the_tap_forwards_and_records_both_sides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("call.wav");
        let (cmd_tx, mut cmd_rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(512);
        let (bridge_port, _bridge_rx) = mpsc::channel(4);
        let call = CallHandle { id: CallId(7), commands: cmd_tx, events: ev_rx, bridge_port };
        let (mut app, task) = Recorder::create(path.clone()).await.unwrap().tap(call);
        assert_eq!(app.id, CallId(7));

        app.commands.send(CallCommand::Play(vec![1000; FRAME_SAMPLES * 2])).await.unwrap();
        assert!(matches!(cmd_rx.recv().await, Some(CallCommand::Play(p)) if p.len() == FRAME_SAMPLES * 2));
        for n in 0..3i16 {
            ev_tx.send(CallEvent::Audio(Box::new([n - 5; FRAME_SAMPLES]))).await.unwrap();
            assert!(matches!(app.events.recv().await, Some(CallEvent::Audio(f)) if f[0] == n - 5));
        }
        ev_tx.send(CallEvent::Dtmf('4')).await.unwrap();
        assert_eq!(app.events.recv().await, Some(CallEvent::Dtmf('4')));
        // The application hangs up and lets go: the call task sees the
        // command, then its handle closing; the file is complete.
        app.commands.send(CallCommand::Hangup).await.unwrap();
        assert!(matches!(cmd_rx.recv().await, Some(CallCommand::Hangup)));
        drop(app);
        task.await.unwrap();
        assert!(cmd_rx.recv().await.is_none());

        let mut r = hound::WavReader::open(&path).unwrap();
        assert_eq!((r.spec().channels, r.spec().sample_rate), (2, RATE));
        let s: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(s.len(), 3 * FRAME_SAMPLES * 2);
        let (left, right): (Vec<i16>, Vec<i16>) = (s.iter().step_by(2).copied().collect(), s.iter().skip(1).step_by(2).copied().collect());
        assert_eq!((left[0], left[FRAME_SAMPLES], left[2 * FRAME_SAMPLES]), (-5, -4, -3));
        assert_eq!((right[0], right[2 * FRAME_SAMPLES - 1], right[2 * FRAME_SAMPLES]), (1000, 1000, 0));
    }

    #[tokio::test]
    async fn an_unwritable_path_is_an_error() {
        let err = Recorder::create(PathBuf::from("/nonexistent-dir/x/call.wav")).await.err().expect("cannot create");
        assert!(err.to_string().contains("/nonexistent-dir/x/call.wav"), "{err}");
    }
}
