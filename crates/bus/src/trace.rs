//! The trace ring buffer (X03 §5): the last `TRACE_RING_BUFFER` calls,
//! newest last, for `/trace/recent`.

use parking_lot::Mutex;
use std::collections::VecDeque;

use hearthnet_base::constants::TRACE_RING_BUFFER;
use hearthnet_wire::local::TraceRecord;

pub struct TraceRing {
    records: Mutex<VecDeque<TraceRecord>>,
    capacity: usize,
    /// How many records were ever pushed: what a live view of the calls
    /// waits on.
    pushed: tokio::sync::watch::Sender<u64>,
}

impl Default for TraceRing {
    fn default() -> Self {
        Self::with_capacity(TRACE_RING_BUFFER)
    }
}

impl TraceRing {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            records: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
            pushed: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn push(&self, record: TraceRecord) {
        let mut r = self.records.lock();
        if r.len() == self.capacity {
            r.pop_front();
        }
        r.push_back(record);
        drop(r);
        self.pushed.send_modify(|n| *n += 1);
    }

    /// Changes whenever a call is recorded.
    pub fn pushed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.pushed.subscribe()
    }

    /// The newest `n` records matching `capability` (if given), oldest first.
    pub fn recent(&self, n: usize, capability: Option<&str>) -> Vec<TraceRecord> {
        let mut out: Vec<TraceRecord> = self
            .records
            .lock()
            .iter()
            .rev()
            .filter(|t| capability.is_none_or(|c| t.capability == c))
            .take(n)
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize, cap: &str) -> TraceRecord {
        TraceRecord {
            ts: String::new(),
            trace_id: i.to_string(),
            capability: cap.into(),
            version: "1.0".into(),
            from_node: String::new(),
            to_node: String::new(),
            is_local: true,
            result: "ok".into(),
            ms: 1.0,
            stream: false,
            frames: 0,
        }
    }

    #[test]
    fn keeps_the_newest_and_filters() {
        let ring = TraceRing::with_capacity(3);
        for i in 0..5 {
            ring.push(record(i, if i % 2 == 0 { "a.x" } else { "b.y" }));
        }
        let ids: Vec<String> = ring
            .recent(10, None)
            .into_iter()
            .map(|t| t.trace_id)
            .collect();
        assert_eq!(ids, ["2", "3", "4"]);
        let ids: Vec<String> = ring
            .recent(1, Some("a.x"))
            .into_iter()
            .map(|t| t.trace_id)
            .collect();
        assert_eq!(ids, ["4"]);
    }
}
