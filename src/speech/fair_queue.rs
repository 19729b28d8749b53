//! Queue for the recognition pool: FIFO within a call, round-robin across
//! calls, so a caller who talks in many long turns cannot starve the others
//! (the escalation campaign of issue 6 places many calls at once).

use std::collections::{HashMap, VecDeque};

/// Identifies the call a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

#[derive(Debug)]
pub struct FairQueue<T> {
    per_call: HashMap<CallKey, VecDeque<T>>,
    /// Calls with work, in serving order; each appears at most once.
    turn: VecDeque<CallKey>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self { per_call: HashMap::new(), turn: VecDeque::new(), len: 0 }
    }
}

impl<T> FairQueue<T> {
    pub fn push(&mut self, call: CallKey, item: T) {
        let q = self.per_call.entry(call).or_default();
        if q.is_empty() {
            self.turn.push_back(call);
        }
        q.push_back(item);
        self.len += 1;
    }

    /// The oldest item of the call whose turn it is; that call then goes
    /// to the back of the line if it has more.
    pub fn pop(&mut self) -> Option<(CallKey, T)> {
        let call = self.turn.pop_front()?;
        let q = self.per_call.get_mut(&call)?;
        let item = q.pop_front()?;
        if q.is_empty() {
            self.per_call.remove(&call);
        } else {
            self.turn.push_back(call);
        }
        self.len -= 1;
        Some((call, item))
    }

    /// Takes the oldest waiting item of one call out of the line.
    pub fn pop_oldest_of(&mut self, call: CallKey) -> Option<T> {
        let q = self.per_call.get_mut(&call)?;
        let item = q.pop_front()?;
        if q.is_empty() {
            self.per_call.remove(&call);
            self.turn.retain(|c| *c != call);
        }
        self.len -= 1;
        Some(item)
    }

    /// Drops a call's pending items (it hung up); returns how many.
    pub fn remove_call(&mut self, call: CallKey) -> usize {
        let n = self.per_call.remove(&call).map_or(0, |q| q.len());
        self.turn.retain(|c| *c != call);
        self.len -= n;
        n
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn pending_for(&self, call: CallKey) -> usize {
        self.per_call.get(&call).map_or(0, VecDeque::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_across_calls_fifo_within() {
        let mut q = FairQueue::default();
        // Call 1 queues five turns before calls 2 and 3 queue one each.
        for i in 0..5 {
            q.push(CallKey(1), format!("a{i}"));
        }
        q.push(CallKey(2), "b0".to_string());
        q.push(CallKey(3), "c0".to_string());
        q.push(CallKey(2), "b1".to_string());
        let order: Vec<String> = std::iter::from_fn(|| q.pop().map(|(_, s)| s)).collect();
        assert_eq!(order, ["a0", "b0", "c0", "a1", "b1", "a2", "a3", "a4"]);
        assert!(q.is_empty());
    }

    #[test]
    fn removing_a_call_keeps_the_rest() {
        let mut q = FairQueue::default();
        q.push(CallKey(1), 1);
        q.push(CallKey(2), 2);
        q.push(CallKey(1), 3);
        assert_eq!(q.pending_for(CallKey(1)), 2);
        assert_eq!(q.remove_call(CallKey(1)), 2);
        assert_eq!(q.remove_call(CallKey(9)), 0);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), Some((CallKey(2), 2)));
        assert_eq!(q.pop(), None);
    }
}
