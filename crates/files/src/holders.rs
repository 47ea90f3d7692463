//! Who holds which blob: folded from `file.cid.advertised` and
//! `file.cid.unpinned` events, plus direct `file.advertise` calls.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use hearthnet_base::event::Event;
use hearthnet_base::{Blake3Id, NodeId};
use hearthnet_events::{EventLog, Fold, Query};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Direct `file.advertise` records kept at most (they are hints from any
/// member, in memory only; signed events are always folded in).
const MAX_DIRECT: usize = 100_000;

#[derive(Default)]
pub struct Holders {
    map: Mutex<HashMap<Blake3Id, BTreeSet<NodeId>>>,
    direct: std::sync::atomic::AtomicUsize,
    /// True once the stored log has been folded in.
    replayed: tokio::sync::watch::Sender<bool>,
}

impl Holders {
    /// Record `node` as holding `cid` (from an event, or this node itself).
    pub fn add(&self, cid: Blake3Id, node: NodeId) {
        self.map.lock().entry(cid).or_default().insert(node);
    }

    /// A member's direct `file.advertise`: recorded while there is room;
    /// false when the record was refused.
    pub fn add_direct(&self, cid: Blake3Id, node: NodeId) -> bool {
        use std::sync::atomic::Ordering;
        if self.direct.fetch_add(1, Ordering::Relaxed) >= MAX_DIRECT {
            self.direct.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        self.add(cid, node);
        true
    }

    fn remove(&self, cid: &Blake3Id, node: &NodeId) {
        let mut map = self.map.lock();
        if let Some(set) = map.get_mut(cid) {
            set.remove(node);
            if set.is_empty() {
                map.remove(cid);
            }
        }
    }

    pub fn of(&self, cid: &Blake3Id) -> Vec<NodeId> {
        self.map
            .lock()
            .get(cid)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The blobs `node` is recorded as holding.
    pub fn held_by(&self, node: &NodeId) -> Vec<Blake3Id> {
        self.map
            .lock()
            .iter()
            .filter(|(_, set)| set.contains(node))
            .map(|(cid, _)| *cid)
            .collect()
    }

    /// Wait until the stored log has been folded in (never, if replaying
    /// it failed).
    pub async fn replayed(&self) {
        let mut replayed = self.replayed.subscribe();
        // Err only if the sender is gone, and it lives in `self`.
        let _ = replayed.wait_for(|done| *done).await;
    }

    fn apply(&self, event: &Event) {
        let Some(cid) = event.data["cid"]
            .as_str()
            .and_then(|c| Blake3Id::parse(c).ok())
        else {
            return;
        };
        match event.event_type.as_str() {
            "file.cid.advertised" => self.add(cid, event.author),
            "file.cid.unpinned" => self.remove(&cid, &event.author),
            _ => {}
        }
    }

    /// Fold the whole log in, then follow it until `stop`: a task for the
    /// caller to run in the background (replaying a long log takes a
    /// while).
    pub fn follow(
        self: &Arc<Self>,
        log: EventLog,
        stop: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        struct Replay(Arc<Holders>);
        impl Fold for Replay {
            fn wants(&self, event_type: &str) -> bool {
                event_type.starts_with("file.cid.")
            }
            fn apply(&mut self, event: &Event) {
                self.0.apply(event);
            }
        }
        let holders = self.clone();
        async move {
            let mut changes = log.changes();
            let replay = {
                let (log, holders) = (log.clone(), holders.clone());
                tokio::task::spawn_blocking(move || log.replay_into(Replay(holders))).await
            };
            let mut seq = match replay {
                Ok(Ok((_, seq))) => {
                    holders.replayed.send_replace(true);
                    seq
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot replay file events; holders unknown");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot replay file events; holders unknown");
                    return;
                }
            };
            loop {
                let Ok(new) = log
                    .query(Query {
                        after_seq: Some(seq),
                        ..Query::default()
                    })
                    .await
                else {
                    return;
                };
                for stored in new {
                    seq = seq.max(stored.seq);
                    holders.apply(&stored.event);
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}
