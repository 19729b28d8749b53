//! The assistant's own record of the newest call, read from the store while
//! the call goes on: what a voice test waits on instead of guessing from
//! audio how long recognition takes on a loaded machine.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use clinivox::store::Store;

/// The newest call's turns, as (speaker, text).
pub async fn turns(store: &Store) -> Vec<(String, String)> {
    let Some(c) = store.calls(1).await.ok().and_then(|c| c.into_iter().next()) else { return Vec::new() };
    let Ok(d) = store.call(&c.id).await else { return Vec::new() };
    d.turns.into_iter().map(|t| (t.speaker, t.text)).collect()
}

/// What the assistant said after the last caller turn.
pub fn said_last(turns: &[(String, String)]) -> String {
    let after = turns.iter().rposition(|(s, _)| s == "caller").map_or(0, |i| i + 1);
    turns[after..].iter().filter(|(s, _)| s == "assistant").map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" ")
}

/// Waits until a caller turn recorded after the first `since` turns has
/// been answered by the assistant, and returns the answer: as soon as it
/// contains one of `expect`, or 3 s after it began (a reply of several
/// sentences is recorded sentence by sentence). Empty if nothing was
/// answered within `limit`.
pub async fn answer_after(store: &Store, since: usize, expect: &[&str], limit: Duration) -> String {
    let started = Instant::now();
    let mut first_seen: Option<Instant> = None;
    loop {
        let t = turns(store).await;
        let answered =
            t.iter().rposition(|(s, _)| s == "caller").is_some_and(|i| i >= since && t[i + 1..].iter().any(|(s, _)| s == "assistant"));
        if answered {
            let said = said_last(&t);
            let seen = *first_seen.get_or_insert_with(Instant::now);
            if expect.iter().any(|e| said.contains(e)) || seen.elapsed() > Duration::from_secs(3) {
                return said;
            }
        }
        if started.elapsed() > limit {
            return String::new();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
