//! Whether a new call is answered by the assistant or turned away with a
//! short "all our lines are busy": a pure decision on the load right now,
//! so that when the machine is saturated new callers hear a message
//! instead of silence, and callers already talking keep their latency.
//! And per caller ID ([`CallerLedger`]): one number, real or spoofed,
//! cannot take every line or call all day.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

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
    /// This caller ID already has `max_per_caller` calls in progress.
    CallerBusy,
    /// This caller ID called `max_per_caller_per_hour` times in the last hour.
    CallerRate,
}

/// Calls per caller ID: in progress, and started within the last hour.
/// Memory is bounded: a number is forgotten an hour after its last call
/// ended, and at most [`MAX_TRACKED`] numbers are kept (the one heard from
/// longest ago goes first), so a flood of spoofed numbers costs a fixed
/// amount and never refuses a real patient for someone else's calls.
#[derive(Debug)]
pub struct CallerLedger {
    max_simultaneous: usize,
    max_per_hour: usize,
    callers: HashMap<String, CallerUse>,
}

#[derive(Debug, Default)]
struct CallerUse {
    active: usize,
    /// When its calls started, oldest first, within the last hour.
    starts: VecDeque<Instant>,
}

/// Numbers tracked at once.
pub const MAX_TRACKED: usize = 10_000;
const HOUR: Duration = Duration::from_secs(3600);

impl CallerLedger {
    pub fn new(max_simultaneous: usize, max_per_hour: usize) -> Self {
        CallerLedger { max_simultaneous: max_simultaneous.max(1), max_per_hour: max_per_hour.max(1), callers: HashMap::new() }
    }

    /// A call from `caller` at `now`: counted (until [`finish`](Self::finish))
    /// when within both limits.
    pub fn start(&mut self, now: Instant, caller: &str) -> Result<(), BusyReason> {
        if !self.callers.contains_key(caller) && self.callers.len() >= MAX_TRACKED {
            self.make_room(now);
        }
        let u = self.callers.entry(caller.to_string()).or_default();
        while u.starts.front().is_some_and(|t| now.saturating_duration_since(*t) >= HOUR) {
            u.starts.pop_front();
        }
        if u.active >= self.max_simultaneous {
            return Err(BusyReason::CallerBusy);
        }
        if u.starts.len() >= self.max_per_hour {
            return Err(BusyReason::CallerRate);
        }
        u.active += 1;
        u.starts.push_back(now);
        Ok(())
    }

    /// The call from `caller` ended.
    pub fn finish(&mut self, caller: &str) {
        if let Some(u) = self.callers.get_mut(caller) {
            u.active = u.active.saturating_sub(1);
        }
    }

    pub fn tracked(&self) -> usize {
        self.callers.len()
    }

    /// Forget numbers with nothing in progress and no call within the
    /// hour; if that frees nothing, the idle one heard from longest ago.
    fn make_room(&mut self, now: Instant) {
        self.callers.retain(|_, u| u.active > 0 || u.starts.back().is_some_and(|t| now.saturating_duration_since(*t) < HOUR));
        if self.callers.len() >= MAX_TRACKED {
            let oldest =
                self.callers.iter().filter(|(_, u)| u.active == 0).min_by_key(|(_, u)| u.starts.back().copied()).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.callers.remove(&k);
            }
        }
    }
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
    fn one_caller_id_gets_so_many_lines_and_so_many_calls_an_hour() {
        let mut l = CallerLedger::new(2, 3);
        let t0 = Instant::now();
        assert_eq!(l.start(t0, "+34600111222"), Ok(()));
        assert_eq!(l.start(t0, "+34600111222"), Ok(()));
        assert_eq!(l.start(t0, "+34600111222"), Err(BusyReason::CallerBusy), "a third at once");
        assert_eq!(l.start(t0, "+34600999888"), Ok(()), "another number is not affected");
        l.finish("+34600111222");
        assert_eq!(l.start(t0, "+34600111222"), Ok(()), "a line freed");
        l.finish("+34600111222");
        l.finish("+34600111222");
        assert_eq!(l.start(t0 + Duration::from_secs(60), "+34600111222"), Err(BusyReason::CallerRate), "the fourth in an hour");
        assert_eq!(l.start(t0 + HOUR + Duration::from_secs(1), "+34600111222"), Ok(()), "an hour later");
    }

    #[test]
    fn a_flood_of_numbers_is_tracked_in_bounded_memory_and_active_calls_are_kept() {
        let mut l = CallerLedger::new(1, 10);
        let t0 = Instant::now();
        assert_eq!(l.start(t0, "+34600000000"), Ok(()));
        for i in 1..3 * MAX_TRACKED {
            let _ = l.start(t0 + Duration::from_millis(i as u64), &format!("+3460{i:07}"));
            l.finish(&format!("+3460{i:07}"));
        }
        assert!(l.tracked() <= MAX_TRACKED, "{}", l.tracked());
        // The call in progress was never forgotten: still one at a time.
        assert_eq!(l.start(t0 + Duration::from_secs(60), "+34600000000"), Err(BusyReason::CallerBusy));
    }

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
            let long = prompts.say("call_too_long", &[]);
            assert!(long != "call_too_long" && long.len() > 20, "{lang}: {long:?}");
            spoken += 1;
        }
        assert!(spoken >= 3, "es, en and it at least");
    }
}
