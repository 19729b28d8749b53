//! The assistant's call loop: one `Line` per call, waiting on its call
//! events, recognition results, rendered speech and deadlines
//! ([`Line::run`]), acting on what the conversation decides
//! ([`Line::act`]), speaking, and ending. Hearing, transfers and outbound
//! screening are in the sibling modules.

use super::*;

impl Line {
    pub(super) fn report(&self, line: String) {
        (self.report)(line)
    }

    /// What was said on the call (a transcript, a reply, a summary): health
    /// data, so it reaches the log only when the clinic turned
    /// `[logging] transcripts` on. The event line beside it (`report`)
    /// carries ids, counts and timings only.
    pub(super) fn transcript(&self, what: &str, text: &str) {
        if self.assistant.config.logging.transcripts {
            tracing::info!(target: "clinivox::transcript", call = self.handle.id.0, "{what} {text:?}");
        }
    }

    pub(super) async fn run(&mut self, mut rx: mpsc::Receiver<Back>) {
        loop {
            let silence = self.silence_at;
            let input = tokio::select! {
                ev = self.handle.events.recv() => Input::Call(ev),
                ev = staff_event(&mut self.staff) => Input::Staff(ev),
                Some(b) = rx.recv() => Input::Back(b),
                _ = sleep_until(silence) => Input::Silence,
                _ = sleep_until(self.too_long_at) => Input::TooLong,
            };
            match input {
                Input::TooLong => self.too_long(),
                Input::Call(Some(CallEvent::Audio(frame))) => {
                    if self.outbound.as_ref().is_some_and(|o| o.detector.is_some()) {
                        self.screen(&frame).await;
                    }
                    if self.on_machine() {
                        continue; // an answering machine: the conversation is over
                    }
                    self.endpointer.handle_audio(Instant::now(), &frame[..]);
                    self.endpointing().await;
                }
                Input::Call(Some(CallEvent::Dtmf(_))) if self.on_machine() => {}
                Input::Call(Some(CallEvent::Dtmf(d))) => {
                    self.silence_at = None;
                    let out = self.session.dtmf(wall_now(), &d.to_string()).await;
                    self.act(out).await;
                }
                Input::Call(Some(CallEvent::PlaybackDone)) => self.playback_done().await,
                Input::Call(Some(CallEvent::TransferStatus(code))) => self.transfer_status(code).await,
                Input::Call(Some(CallEvent::HangUp(cause))) => return self.ended(format!("{cause:?}")).await,
                Input::Call(None) => return self.ended("call task gone".into()).await,
                Input::Call(Some(_)) => {}
                Input::Staff(Some(CallEvent::HangUp(_)) | None) => {
                    self.report(format!("STAFF-HANGUP call={}", self.handle.id.0));
                    self.staff = None;
                    self.hang_up().await;
                }
                Input::Staff(Some(_)) => {}
                Input::Back(Back::Staff(rung)) => self.rung(rung).await,
                Input::Back(Back::Heard { result, speech_end, early: false }) => self.heard(result, speech_end).await,
                Input::Back(Back::Heard { result, speech_end, early: true }) => self.heard_early(result, speech_end).await,
                Input::Back(Back::Spoken { generation, pcm, interruptible }) => self.spoken(generation, pcm, interruptible).await,
                Input::Back(Back::SpeechDone { generation, error }) => {
                    if let Some(e) = error {
                        tracing::warn!(error = %e, "speech synthesis failed; the rest of the reply is skipped");
                    }
                    if generation == self.generation {
                        self.synthesizing = false;
                        // Nothing was playable (all failed or empty).
                        if self.play_until.is_none() {
                            self.reply_finished().await;
                        }
                    }
                }
                Input::Silence => {
                    self.silence_at = None;
                    let out = self.session.silence(wall_now()).await;
                    self.act(out).await;
                }
            }
        }
    }

    /// Whenever the caller leaves, the record is completed (a no-op when
    /// the conversation already finished it).
    pub(super) async fn ended(&mut self, cause: String) {
        // The caller left: release the staff side too.
        if let Some(c) = self.ring_cancel.take() {
            let _ = c.send(());
        }
        if let Some(staff) = self.staff.take() {
            let _ = staff.commands.send(CallCommand::Hangup).await;
        }
        self.session.hangup(wall_now()).await;
        let median = median(&mut self.latencies);
        self.report(format!(
            "ASSISTANT-END call={} cause={cause} turns_with_latency={} median_latency_ms={}",
            self.handle.id.0,
            self.latencies.len(),
            median.map(|d| d.as_millis().to_string()).unwrap_or_else(|| "-".into())
        ));
    }

    pub(super) async fn endpointing(&mut self) {
        while let Some(ev) = self.endpointer.poll_event() {
            match ev {
                EndpointEvent::SpeechStarted { .. } => self.silence_at = None,
                EndpointEvent::BargeIn { latency, .. } => {
                    tracing::debug!(?latency, "caller barged in");
                    let _ = self.handle.commands.send(CallCommand::StopPlaying).await;
                    self.generation += 1;
                    self.synthesizing = false;
                    self.play_until = None;
                    self.endpointer.set_prompt(Prompt::Silent);
                    // The caller talks over a goodbye: end the call anyway.
                    if matches!(self.then, Then::Hangup | Then::Transfer(_)) {
                        self.reply_finished().await;
                    }
                }
                EndpointEvent::Paused { samples, speech_end } => {
                    self.early = Some(Early { speech_end, result: None, ended: false });
                    self.recognize(samples, speech_end, true).await;
                }
                EndpointEvent::UtteranceEnded { samples, speech_end, .. } => match self.early.take() {
                    // The caller said nothing more since the early pause:
                    // the recognition already under way is this utterance's.
                    Some(e) if e.speech_end == speech_end => match e.result {
                        Some(result) => self.heard(result, speech_end).await,
                        None => self.early = Some(Early { ended: true, ..e }),
                    },
                    _ => self.recognize(samples, speech_end, false).await,
                },
                EndpointEvent::Discarded { .. } => self.arm_silence(),
            }
        }
    }

    /// Carries out what the conversation asked for: all `Say`s of one batch
    /// become one reply, the rest is done once it has been played.
    pub(super) async fn act(&mut self, actions: Vec<Action>) {
        let mut texts = Vec::new();
        let mut interruptible = true;
        let mut patience = None;
        for a in actions {
            match a {
                Action::Say { text, interruptible: i } => {
                    texts.push(text);
                    // A notice that must be heard whole protects the reply it is in.
                    interruptible &= i;
                }
                Action::ExpectLonger { reason } => {
                    patience = Some(match reason {
                        Patience::DateOfBirth => DOB_PATIENCE,
                        Patience::Name => NAME_PATIENCE,
                    })
                }
                Action::Transfer { group, summary } => {
                    tracing::info!(group = group.as_str(), "transfer to staff");
                    self.report(format!("TRANSFER call={} group={}", self.handle.id.0, group.as_str()));
                    self.transcript("TRANSFER summary", &summary);
                    self.then = Then::Transfer(group);
                }
                Action::Hangup => self.then = Then::Hangup,
                // The session executes store requests itself.
                Action::Store(_) => {}
            }
        }
        match patience {
            Some(p) => self.endpointer.set_patience(p),
            None if !texts.is_empty() => self.endpointer.reset_patience(),
            None => {}
        }
        if texts.is_empty() {
            if self.then != Then::Listen && self.play_until.is_none() && !self.synthesizing {
                self.reply_finished().await;
            } else {
                // E.g. one key of a date of birth: the caller may still go
                // quiet half-way, which the conversation must hear about.
                self.arm_silence();
            }
            return;
        }
        self.speak(texts, interruptible);
    }

    /// The conversation reached its longest: say so and hang up, unless
    /// staff are being rung or talking (then it is their call now).
    pub(super) fn too_long(&mut self) {
        self.too_long_at = None;
        if self.staff.is_some() || matches!(self.then, Then::Ringing | Then::Done | Then::Hangup) {
            return;
        }
        self.report(format!("TOO_LONG call={}", self.handle.id.0));
        let text = self.assistant.spoken(&self.lang).language.prompts.say("call_too_long", &[]);
        self.then = Then::Hangup;
        self.speak(vec![text], false);
    }

    /// Renders a reply on a blocking thread, sentence by sentence.
    pub(super) fn speak(&mut self, texts: Vec<String>, interruptible: bool) {
        self.silence_at = None;
        self.generation += 1;
        self.synthesizing = true;
        self.first_chunk_sent = false;
        let generation = self.generation;
        let (tts, tx) = (self.assistant.tts.clone(), self.tx.clone());
        let lang = self.lang.clone();
        for t in &texts {
            self.report(format!("SAY call={} chars={}", self.handle.id.0, t.chars().count()));
            self.transcript("SAY", t);
        }
        tokio::task::spawn_blocking(move || {
            let mut error = None;
            'reply: for text in &texts {
                for pcm in tts::sentences(tts.as_ref(), text, &lang) {
                    match pcm {
                        Ok(pcm) if pcm.is_empty() => {}
                        Ok(pcm) => {
                            // The call is gone: stop rendering.
                            if tx.blocking_send(Back::Spoken { generation, pcm, interruptible }).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            error = Some(e);
                            break 'reply;
                        }
                    }
                }
            }
            let _ = tx.blocking_send(Back::SpeechDone { generation, error });
        });
    }

    pub(super) async fn spoken(&mut self, generation: u64, pcm: Vec<i16>, interruptible: bool) {
        if generation != self.generation {
            return; // superseded by a newer reply or a barge-in
        }
        let now = Instant::now();
        let len = Duration::from_micros(pcm.len() as u64 * 1_000_000 / u64::from(tts::RATE));
        let cmd = if self.first_chunk_sent {
            CallCommand::Enqueue(pcm)
        } else {
            self.first_chunk_sent = true;
            self.endpointer.set_prompt(Prompt::Playing { interruptible });
            if let Some((speech_end, heard_at)) = self.latency.take() {
                let total = now.saturating_duration_since(speech_end);
                self.latencies.push(total);
                self.session.record_timings(heard_at.saturating_duration_since(speech_end), total);
                self.assistant.metrics.observe_turn_latency(total);
                self.report(format!(
                    "LATENCY call={} total_ms={} asr_ms={} reply_ms={}",
                    self.handle.id.0,
                    total.as_millis(),
                    heard_at.saturating_duration_since(speech_end).as_millis(),
                    now.saturating_duration_since(heard_at).as_millis()
                ));
            }
            let protected = self.play_until.is_some_and(|t| t > now) && !self.playing_interruptible;
            self.playing_interruptible = interruptible;
            if protected {
                // A notice that must be heard whole (privacy, emergency)
                // is still playing: the reply follows it instead.
                CallCommand::Enqueue(pcm)
            } else {
                // A fresh reply replaces whatever was playing.
                self.play_until = Some(now);
                CallCommand::Play(pcm)
            }
        };
        let start = self.play_until.map_or(now, |t| t.max(now));
        self.play_until = Some(start + len);
        let _ = self.handle.commands.send(cmd).await;
    }

    pub(super) async fn playback_done(&mut self) {
        let Some(until) = self.play_until else { return };
        // A stale `PlaybackDone` from a reply we have since replaced, or
        // the gap before the next sentence is enqueued: keep playing.
        if self.synthesizing || Instant::now() + DONE_SLACK < until {
            return;
        }
        self.play_until = None;
        self.endpointer.set_prompt(Prompt::Silent);
        self.reply_finished().await;
    }

    /// The reply has been heard (or cut off): do what comes after it.
    pub(super) async fn reply_finished(&mut self) {
        match std::mem::replace(&mut self.then, Then::Listen) {
            Then::Listen => self.arm_silence(),
            Then::Hangup => self.hang_up().await,
            Then::Transfer(group) => self.transfer(group).await,
            Then::Ringing => self.then = Then::Ringing,
            Then::Done => self.then = Then::Done,
        }
    }

    pub(super) async fn transfer_status(&mut self, code: u16) {
        tracing::debug!(code, "transfer progress");
        match code {
            // The REFER was accepted and the new leg answered: our part is over.
            200..=299 if code != 202 => {
                self.assistant.metrics.transfer(TransferResult::Answered);
                self.hang_up().await
            }
            300.. => {
                self.assistant.metrics.transfer(TransferResult::Failed);
                tracing::warn!(code, "transfer to reception failed");
                self.transfer_failed().await;
            }
            _ => {}
        }
    }

    pub(super) async fn hang_up(&mut self) {
        self.then = Then::Done;
        self.silence_at = None;
        let _ = self.handle.commands.send(CallCommand::Hangup).await;
    }

    pub(super) fn arm_silence(&mut self) {
        let quiet = self.play_until.is_none() && !self.synthesizing && !self.endpointer.is_speaking();
        if quiet && self.then == Then::Listen && !self.session.conversation().is_ended() {
            self.silence_at = Some(Instant::now() + SILENCE_TIMEOUT);
        }
    }
}
