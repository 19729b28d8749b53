//! What the assistant's [`Line`] does with the caller's speech: sending
//! utterances (or an early pause's audio) to the recognition pool, using a
//! result when it comes back, and settling the call's language on the
//! caller's first words.

use super::*;

impl Line {
    /// A recognition started at an early pause has finished: hold it until
    /// the utterance ends, use it if it already has, drop it if the caller
    /// went on speaking (another pause or utterance took its place).
    pub(super) async fn heard_early(&mut self, result: Result<Recognition, PoolError>, speech_end: Instant) {
        match &mut self.early {
            Some(e) if e.speech_end == speech_end && e.ended => {
                self.early = None;
                self.heard(result, speech_end).await;
            }
            Some(e) if e.speech_end == speech_end => e.result = Some(result),
            _ => {}
        }
    }

    pub(super) async fn recognize(&mut self, pcm: Vec<i16>, speech_end: Instant, early: bool) {
        let initial_prompt = Some(self.assistant.spoken(&self.lang).initial_prompt.clone());
        // Until the caller's language is settled, the pool also checks
        // whether they speak another of the clinic's languages.
        let req = Request { call: self.key, pcm, language: Some(self.lang.clone()), initial_prompt, detect: self.detect_language };
        let submitted = self.assistant.pool.submit(req);
        self.assistant.metrics.set_recognition_queue(self.assistant.pool.queued());
        match submitted {
            Ok(rx) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = rx.await.unwrap_or(Err(PoolError::Closed));
                    let _ = tx.send(Back::Heard { result, speech_end, early }).await;
                });
            }
            // Early work is optional: the utterance's end will ask again.
            Err(_) if early => self.early = None,
            Err(e) => {
                // Overloaded: ask the caller to repeat rather than wait.
                tracing::warn!(error = %e, "recognition refused");
                let out = self.session.utterance(wall_now(), "", 0.0).await;
                self.act(out).await;
            }
        }
    }

    pub(super) async fn heard(&mut self, result: Result<Recognition, PoolError>, speech_end: Instant) {
        if self.on_machine() {
            return;
        }
        let metrics = &self.assistant.metrics;
        metrics.set_recognition_queue(self.assistant.pool.queued());
        let r = match result {
            Ok(r) => {
                metrics.observe_recognition(r.waited + r.decoding);
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, "recognition failed");
                return self.arm_silence();
            }
        };
        let text = r.text.trim();
        if r.dropped.is_some() || text.is_empty() {
            // Noise or a phantom phrase: as if nothing was said.
            tracing::debug!(dropped = ?r.dropped, "utterance dropped");
            return self.arm_silence();
        }
        let heard_at = Instant::now();
        self.transcript("HEARD", text);
        self.report(format!(
            "HEARD call={} words={} asr_ms={} queued_ms={} decoding_ms={}",
            self.handle.id.0,
            text.split_whitespace().count(),
            heard_at.saturating_duration_since(speech_end).as_millis(),
            r.waited.as_millis(),
            r.decoding.as_millis()
        ));
        self.latency = Some((speech_end, heard_at));
        if self.detect_language {
            self.settle_language(&r, text).await;
        }
        let confidence = f64::from(1.0 - r.no_speech_prob).clamp(0.0, 1.0);
        let out = self.session.utterance(wall_now(), text, confidence).await;
        self.act(out).await;
    }

    /// The first words decide the call's language: another of the clinic's
    /// languages, detected with confidence, moves the conversation to it
    /// (this utterance included). A word or two ("sí", "ok") is too little
    /// to judge: detection goes on until the caller says more.
    pub(super) async fn settle_language(&mut self, r: &Recognition, text: &str) {
        if text.split_whitespace().count() < 2 {
            return;
        }
        self.detect_language = false;
        // The pool decoded in another language only if it was sure of it.
        let Some(detected) = r.language.as_deref() else { return };
        if detected == self.lang || !self.assistant.languages.contains_key(detected) {
            return;
        }
        self.report(format!(
            "LANGUAGE call={} from={} to={detected} prob={:.2}",
            self.handle.id.0,
            self.lang,
            r.language_prob.unwrap_or(0.0)
        ));
        self.lang = detected.to_string();
        self.session.switch_language(self.assistant.spoken(detected).language.clone()).await;
    }
}
