//! What an outbound call (escalation or waiting-list offer) adds to the
//! assistant's [`Line`]: screening the first seconds for an answering
//! machine, the short message left on one, and the goodbye when an
//! outbound call cannot be transferred.

use super::*;

/// What an outbound call adds to the [`Line`].
pub(super) struct Outbound {
    /// Answering-machine detection, while it runs.
    pub(super) detector: Option<Screening>,
    pub(super) left_message: bool,
}

/// The first seconds of an outbound call: a person or a machine?
pub(super) struct Screening {
    detector: VoicemailDetector,
    frames: u64,
    /// A machine: the conversation is stopped, waiting for the message start.
    machine: bool,
    message: String,
}

impl Screening {
    pub(super) fn new(message: String) -> Screening {
        Screening { detector: VoicemailDetector::new(voicemail::Config::default()), frames: 0, machine: false, message }
    }
}

impl Line {
    /// The patient asked for a person on a call the clinic placed: no
    /// transfer, the clinic will call again; then hang up.
    pub(super) fn outbound_goodbye(&mut self) {
        let text = self.assistant.spoken(&self.lang).language.prompts.say("outreach_call_again", &[]);
        self.then = Then::Hangup;
        self.speak(vec![text], false);
    }

    pub(super) fn on_machine(&self) -> bool {
        self.outbound.as_ref().is_some_and(|o| o.left_message || o.detector.as_ref().is_some_and(|d| d.machine))
    }

    /// Feeds one frame to the answering-machine detector; on a machine,
    /// stops the conversation, and leaves the message when it may start.
    pub(super) async fn screen(&mut self, frame: &crate::call::Frame) {
        let Some(s) = self.outbound.as_mut().and_then(|o| o.detector.as_mut()) else { return };
        s.detector.handle_frame(s.frames, frame);
        s.frames += 1;
        let mut start_message = None;
        let mut stop = false;
        while let Some(ev) = s.detector.poll_event() {
            match ev {
                voicemail::Event::Decided { verdict: Verdict::Machine, at } => {
                    tracing::debug!(frame = at, "answering machine");
                    s.machine = true;
                    stop = true;
                }
                voicemail::Event::Decided { verdict, .. } => tracing::debug!(?verdict, "outbound call answered"),
                voicemail::Event::StartMessage { after_beep, .. } => start_message = Some((s.message.clone(), after_beep)),
            }
        }
        let machine = s.machine;
        let done = s.detector.is_done();
        if stop {
            self.report(format!("VOICEMAIL call={} detected", self.handle.id.0));
            // Whatever the conversation was saying or about to say: stop.
            let _ = self.handle.commands.send(CallCommand::StopPlaying).await;
            self.generation += 1;
            self.synthesizing = false;
            self.play_until = None;
            self.silence_at = None;
            self.then = Then::Done;
        }
        if let Some((message, after_beep)) = start_message {
            self.report(format!("VOICEMAIL call={} message after_beep={after_beep}", self.handle.id.0));
            if let Some(o) = self.outbound.as_mut() {
                o.left_message = true;
                o.detector = None;
            }
            self.then = Then::Hangup;
            self.speak(vec![message], false);
            return;
        }
        if done && !machine {
            if let Some(o) = self.outbound.as_mut() {
                o.detector = None;
            }
        }
    }
}
