//! Live operational metrics kept in memory: what the database cannot count
//! (calls in progress, transfers as they happen, the recognition queue,
//! recognition time and turn latency). One [`Metrics`] is shared through an
//! `Arc` by the voice assistant, which records, and the HTTP API, which
//! renders it for `/metrics` in the Prometheus text format. Counts and
//! durations only: never patient data. Lock-free atomics, except the list
//! of calls in progress and what each is doing (the staff console's Today
//! page), a map held locked for a few instructions per change; it holds the
//! store's call id, never a number or a name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Turn latency (end of the caller's speech → first reply audio) buckets, seconds.
pub const TURN_LATENCY_BUCKETS: &[f64] = &[0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0];
/// Recognition time (queued + decoding) buckets, seconds.
pub const RECOGNITION_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 5.0];

/// How a transfer to staff ended, as far as the call layer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferResult {
    /// Staff took the call.
    Answered,
    /// Tried, but nobody answered or the far end refused.
    Failed,
    /// No staff member could be tried at all (none configured or reachable).
    Unreachable,
}

impl TransferResult {
    pub const ALL: [TransferResult; 3] = [TransferResult::Answered, TransferResult::Failed, TransferResult::Unreachable];

    pub fn as_str(self) -> &'static str {
        match self {
            TransferResult::Answered => "answered",
            TransferResult::Failed => "failed",
            TransferResult::Unreachable => "unreachable",
        }
    }
}

/// What a call in progress is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPhase {
    /// Talking with the assistant.
    Assistant,
    /// Staff phones ringing (or a REFER under way); the caller hears ring-back.
    Transferring,
    /// Joined to a staff member's phone.
    Bridged,
}

impl CallPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CallPhase::Assistant => "assistant",
            CallPhase::Transferring => "transferring",
            CallPhase::Bridged => "bridged",
        }
    }
}

/// One call in progress, as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCall {
    /// The store's call id, once the call is recorded.
    pub call_id: Option<String>,
    pub phase: CallPhase,
    /// When it entered `phase`.
    pub since: Instant,
}

/// The registry: cheap to share, safe to update from any task or thread.
#[derive(Debug)]
pub struct Metrics {
    active_calls: AtomicI64,
    live: Mutex<BTreeMap<u64, LiveCall>>,
    next_live: AtomicU64,
    busy_calls: AtomicU64,
    transfers: [AtomicU64; 3],
    recognition_queue: AtomicI64,
    recognition: Histogram,
    turn_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            active_calls: AtomicI64::new(0),
            live: Mutex::default(),
            next_live: AtomicU64::new(0),
            busy_calls: AtomicU64::new(0),
            transfers: Default::default(),
            recognition_queue: AtomicI64::new(0),
            recognition: Histogram::new(RECOGNITION_BUCKETS),
            turn_latency: Histogram::new(TURN_LATENCY_BUCKETS),
        }
    }
}

/// One assistant call in progress; the gauge goes down, and the call leaves
/// the list of calls in progress, when it is dropped, however the call ends.
#[derive(Debug)]
pub struct ActiveCall {
    metrics: Arc<Metrics>,
    slot: u64,
}

impl ActiveCall {
    /// The store's id of this call (for the console to show its row).
    pub fn set_call_id(&self, id: Option<&str>) {
        self.update(|c| c.call_id = id.map(str::to_string));
    }

    /// The call now does something else; `at` is now.
    pub fn set_phase(&self, phase: CallPhase, at: Instant) {
        self.update(|c| {
            if c.phase != phase {
                c.phase = phase;
                c.since = at;
            }
        });
    }

    fn update(&self, f: impl FnOnce(&mut LiveCall)) {
        if let Some(c) = self.metrics.live_map().get_mut(&self.slot) {
            f(c);
        }
    }
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.metrics.active_calls.fetch_sub(1, Ordering::Relaxed);
        self.metrics.live_map().remove(&self.slot);
    }
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// Counts a call as active, with the assistant since `at`, until the
    /// returned guard is dropped.
    pub fn call_started(self: &Arc<Self>, at: Instant) -> ActiveCall {
        self.active_calls.fetch_add(1, Ordering::Relaxed);
        let slot = self.next_live.fetch_add(1, Ordering::Relaxed);
        self.live_map().insert(slot, LiveCall { call_id: None, phase: CallPhase::Assistant, since: at });
        ActiveCall { metrics: self.clone(), slot }
    }

    /// The calls in progress, oldest first.
    pub fn live_calls(&self) -> Vec<LiveCall> {
        self.live_map().values().cloned().collect()
    }

    fn live_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, LiveCall>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn active_calls(&self) -> usize {
        self.active_calls.load(Ordering::Relaxed).max(0) as usize
    }

    /// A caller turned away with "all our lines are busy".
    pub fn call_refused_busy(&self) {
        self.busy_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub fn transfer(&self, result: TransferResult) {
        self.transfers[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Recognition requests waiting, across calls, as last seen.
    pub fn set_recognition_queue(&self, depth: usize) {
        self.recognition_queue.store(depth as i64, Ordering::Relaxed);
    }

    pub fn recognition_queue(&self) -> usize {
        self.recognition_queue.load(Ordering::Relaxed).max(0) as usize
    }

    /// Time from submitting an utterance to its transcript (queue + decoding).
    pub fn observe_recognition(&self, d: Duration) {
        self.recognition.observe(d);
    }

    /// End of the caller's speech → first audio of the reply sent.
    pub fn observe_turn_latency(&self, d: Duration) {
        self.turn_latency.observe(d);
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    /// The live series, each labelled with this node's id (`[node] id`,
    /// checked to need no escaping): several nodes behind one address
    /// each report their own calls.
    pub fn render(&self, node: &str) -> String {
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(&mut out, "clinivox_active_calls", "gauge", "Assistant calls in progress.");
        let _ = writeln!(out, "clinivox_active_calls{{node=\"{node}\"}} {}", self.active_calls.load(Ordering::Relaxed));
        head(&mut out, "clinivox_calls_busy_total", "counter", "Callers turned away because the lines were saturated.");
        let _ = writeln!(out, "clinivox_calls_busy_total{{node=\"{node}\"}} {}", self.busy_calls.load(Ordering::Relaxed));
        head(&mut out, "clinivox_transfers_total", "counter", "Transfers to staff by result.");
        for r in TransferResult::ALL {
            let _ = writeln!(
                out,
                "clinivox_transfers_total{{node=\"{node}\",result=\"{}\"}} {}",
                r.as_str(),
                self.transfers[r as usize].load(Ordering::Relaxed)
            );
        }
        head(&mut out, "clinivox_recognition_queue_depth", "gauge", "Utterances waiting for speech recognition.");
        let _ = writeln!(out, "clinivox_recognition_queue_depth{{node=\"{node}\"}} {}", self.recognition_queue.load(Ordering::Relaxed));
        head(&mut out, "clinivox_recognition_seconds", "histogram", "Speech recognition time per utterance, queue included.");
        self.recognition.render(&mut out, "clinivox_recognition_seconds", node);
        head(&mut out, "clinivox_turn_latency_seconds", "histogram", "End of the caller's speech to the first audio of the reply.");
        self.turn_latency.render(&mut out, "clinivox_turn_latency_seconds", node);
        out
    }
}

/// A fixed-bucket histogram; the sum is kept in microseconds.
#[derive(Debug)]
struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), the last one being +Inf.
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_micros: AtomicU64::new(0) }
    }

    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.iter().position(|b| secs <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, node: &str) {
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self.bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{node=\"{node}\",le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{node=\"{node}\"}} {sum}\n{name}_count{{node=\"{node}\"}} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_counters_and_histograms_render_as_prometheus_text() {
        let m = Metrics::new();
        let a = m.call_started(Instant::now());
        let b = m.call_started(Instant::now());
        drop(a);
        assert_eq!(m.active_calls(), 1);
        m.transfer(TransferResult::Failed);
        m.transfer(TransferResult::Failed);
        m.set_recognition_queue(3);
        m.observe_turn_latency(Duration::from_millis(800));
        m.observe_turn_latency(Duration::from_millis(6000));
        let text = m.render("node-a");
        for line in [
            "# TYPE clinivox_active_calls gauge",
            "clinivox_active_calls{node=\"node-a\"} 1",
            "clinivox_transfers_total{node=\"node-a\",result=\"failed\"} 2",
            "clinivox_transfers_total{node=\"node-a\",result=\"answered\"} 0",
            "clinivox_recognition_queue_depth{node=\"node-a\"} 3",
            "# TYPE clinivox_turn_latency_seconds histogram",
            "clinivox_turn_latency_seconds_bucket{node=\"node-a\",le=\"0.75\"} 0",
            "clinivox_turn_latency_seconds_bucket{node=\"node-a\",le=\"1\"} 1",
            "clinivox_turn_latency_seconds_bucket{node=\"node-a\",le=\"5\"} 1",
            "clinivox_turn_latency_seconds_bucket{node=\"node-a\",le=\"+Inf\"} 2",
            "clinivox_turn_latency_seconds_sum{node=\"node-a\"} 6.8",
            "clinivox_turn_latency_seconds_count{node=\"node-a\"} 2",
            "clinivox_recognition_seconds_count{node=\"node-a\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
        drop(b);
        assert_eq!(m.active_calls(), 0);
    }

    #[test]
    fn calls_in_progress_are_listed_with_what_they_do_until_they_end() {
        let m = Metrics::new();
        let t0 = Instant::now();
        let first = m.call_started(t0);
        let second = m.call_started(t0 + Duration::from_secs(1));
        first.set_call_id(Some("c1"));
        second.set_call_id(Some("c2"));
        second.set_phase(CallPhase::Transferring, t0 + Duration::from_secs(5));
        // The same phase again keeps its start.
        second.set_phase(CallPhase::Transferring, t0 + Duration::from_secs(7));
        let live = m.live_calls();
        assert_eq!(live.len(), 2);
        assert_eq!((live[0].call_id.as_deref(), live[0].phase, live[0].since), (Some("c1"), CallPhase::Assistant, t0));
        assert_eq!((live[1].call_id.as_deref(), live[1].phase), (Some("c2"), CallPhase::Transferring));
        assert_eq!(live[1].since, t0 + Duration::from_secs(5));
        second.set_phase(CallPhase::Bridged, t0 + Duration::from_secs(9));
        drop(first);
        let live = m.live_calls();
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].call_id.as_deref(), live[0].phase), (Some("c2"), CallPhase::Bridged));
        drop(second);
        assert!(m.live_calls().is_empty());
        assert_eq!(m.active_calls(), 0);
    }
}
