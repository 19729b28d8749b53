//! Whether a new call is answered by the assistant or turned away with a
//! short "all our lines are busy": a pure decision on the load right now,
//! so that when the machine is saturated new callers hear a message
//! instead of silence, and callers already talking keep their latency.

/// The load when a call arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Assistant calls in progress, not counting the new one.
    pub active_calls: usize,
    /// Utterances waiting for speech recognition, across calls.
    pub recognition_queue: usize,
}

/// `[calls] max_active` and `[calls] max_recognition_queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_active: usize,
    pub max_recognition_queue: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Answer,
    Busy(BusyReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyReason {
    /// As many calls as configured are in progress.
    TooManyCalls,
    /// Recognition is falling behind: another caller would slow everyone.
    RecognitionBacklog,
}

/// Answer while there is room for one more call and recognition keeps up.
pub fn admit(load: Load, limits: Limits) -> Admission {
    if load.active_calls >= limits.max_active {
        Admission::Busy(BusyReason::TooManyCalls)
    } else if load.recognition_queue > limits.max_recognition_queue {
        Admission::Busy(BusyReason::RecognitionBacklog)
    } else {
        Admission::Answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_follows_calls_and_the_recognition_queue() {
        let limits = Limits { max_active: 3, max_recognition_queue: 4 };
        let load = |active_calls, recognition_queue| Load { active_calls, recognition_queue };
        assert_eq!(admit(load(0, 0), limits), Admission::Answer);
        assert_eq!(admit(load(2, 4), limits), Admission::Answer, "the third call, queue at its limit");
        assert_eq!(admit(load(3, 0), limits), Admission::Busy(BusyReason::TooManyCalls));
        assert_eq!(admit(load(7, 9), limits), Admission::Busy(BusyReason::TooManyCalls));
        assert_eq!(admit(load(1, 5), limits), Admission::Busy(BusyReason::RecognitionBacklog));
    }

    /// Every language the assistant speaks has the busy message (the
    /// prompt loader refuses a language without it, too).
    #[test]
    fn the_busy_message_exists_in_every_spoken_language() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let mut spoken = 0;
        for lang in crate::config::LANGUAGES {
            let text = std::fs::read_to_string(dir.join(format!("{lang}.toml"))).unwrap();
            if !text.contains("\n[prompts]") {
                continue; // understood, not spoken (no wording yet)
            }
            let prompts = crate::conversation::Prompts::load(&dir, lang).unwrap();
            let busy = prompts.say("lines_busy", &[]);
            assert!(busy != "lines_busy" && busy.len() > 20, "{lang}: {busy:?}");
            spoken += 1;
        }
        assert!(spoken >= 3, "es, en and it at least");
    }
}
