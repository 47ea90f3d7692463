//! Set reconciliation of event ids (negentropy), the protocol two nodes of
//! ours use to find exactly which events each lacks, whatever their
//! Lamport values, in a few round trips and a few hundred bytes when the
//! sets are close.
//!
//! Items are `(lamport, BLAKE3 of the canonical envelope)`: keyed on the
//! envelope rather than its id, two nodes that hold different envelopes
//! under one id see each other's as missing, exchange them, and both keep
//! the one with the lower digest (the log's rule). The hash maps back to
//! the event id through the set both sides built.

use std::collections::HashMap;

use negentropy::{Id, Negentropy, NegentropyStorageVector};

/// Largest reconciliation message, so a frame stays a sane HTTP body.
pub const FRAME_LIMIT: u64 = 60_000;

#[derive(Debug, thiserror::Error)]
#[error("reconciliation failed: {0}")]
pub struct ReconcileError(String);

fn err(e: impl std::fmt::Display) -> ReconcileError {
    ReconcileError(e.to_string())
}

/// One event as reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub lamport: u64,
    /// BLAKE3 of the envelope's canonical JSON.
    pub digest: [u8; 32],
    pub event_id: String,
}

/// One side's set of events, ready for reconciliation.
pub struct IdSet {
    storage: NegentropyStorageVector,
    by_hash: HashMap<[u8; 32], String>,
}

impl IdSet {
    pub fn new(items: &[Item]) -> Result<Self, ReconcileError> {
        let mut storage = NegentropyStorageVector::with_capacity(items.len());
        let mut by_hash = HashMap::with_capacity(items.len());
        for item in items {
            storage
                .insert(item.lamport, Id::from_byte_array(item.digest))
                .map_err(err)?;
            by_hash.insert(item.digest, item.event_id.clone());
        }
        storage.seal().map_err(err)?;
        Ok(Self { storage, by_hash })
    }

    /// The event id behind a hash of this set.
    pub fn event_id(&self, hash: &[u8; 32]) -> Option<&str> {
        self.by_hash.get(hash).map(String::as_str)
    }
}

/// The side that starts: produces the first message, then folds in each
/// answer, collecting what it has that the other lacks and the reverse.
pub struct Initiator<'a> {
    neg: Negentropy<'a, NegentropyStorageVector>,
    pub have: Vec<[u8; 32]>,
    pub need: Vec<[u8; 32]>,
}

impl<'a> Initiator<'a> {
    pub fn new(set: &'a IdSet) -> Result<(Self, Vec<u8>), ReconcileError> {
        let mut neg = Negentropy::borrowed(&set.storage, FRAME_LIMIT).map_err(err)?;
        let first = neg.initiate().map_err(err)?;
        Ok((
            Self {
                neg,
                have: Vec::new(),
                need: Vec::new(),
            },
            first,
        ))
    }

    /// Fold in the other side's answer; `None` when reconciliation is done.
    pub fn step(&mut self, answer: &[u8]) -> Result<Option<Vec<u8>>, ReconcileError> {
        let mut have = Vec::new();
        let mut need = Vec::new();
        let next = self
            .neg
            .reconcile_with_ids(answer, &mut have, &mut need)
            .map_err(err)?;
        self.have.extend(have.iter().map(|id| **id));
        self.need.extend(need.iter().map(|id| **id));
        Ok(next)
    }
}

/// The answering side: stateless between rounds.
pub fn answer(set: &IdSet, message: &[u8]) -> Result<Vec<u8>, ReconcileError> {
    let mut neg = Negentropy::borrowed(&set.storage, FRAME_LIMIT).map_err(err)?;
    neg.reconcile(message).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(lamport: u64, event_id: &str, envelope: &str) -> Item {
        Item {
            lamport,
            digest: *blake3::hash(envelope.as_bytes()).as_bytes(),
            event_id: event_id.to_owned(),
        }
    }

    fn ids(range: std::ops::Range<u64>, tag: &str) -> Vec<Item> {
        range
            .map(|i| {
                let id = format!("{tag}{i:020}");
                item(i, &id, &id)
            })
            .collect()
    }

    /// What each side has that the other lacks, by event id.
    fn difference(a: &[Item], b: &[Item]) -> (Vec<String>, Vec<String>, usize) {
        let (sa, sb) = (IdSet::new(a).unwrap(), IdSet::new(b).unwrap());
        let (mut init, mut msg) = Initiator::new(&sa).unwrap();
        let mut rounds = 0;
        loop {
            rounds += 1;
            let reply = answer(&sb, &msg).unwrap();
            match init.step(&reply).unwrap() {
                Some(next) => msg = next,
                None => break,
            }
        }
        let mut have: Vec<String> = init
            .have
            .iter()
            .map(|h| sa.event_id(h).unwrap().to_owned())
            .collect();
        let mut need: Vec<String> = init
            .need
            .iter()
            .map(|h| sb.event_id(h).unwrap().to_owned())
            .collect();
        have.sort();
        need.sort();
        (have, need, rounds)
    }

    #[test]
    fn two_envelopes_under_one_id_are_a_difference() {
        let common = ids(0..100, "common");
        let mut a = common.clone();
        let mut b = common;
        a.push(item(50, "split", "envelope one"));
        b.push(item(50, "split", "envelope two"));
        let (have, need, _) = difference(&a, &b);
        assert_eq!(
            (have, need),
            (vec!["split".to_owned()], vec!["split".to_owned()])
        );
    }

    #[test]
    fn finds_exactly_the_difference_including_concurrent_lamports() {
        let mut a = ids(0..1000, "common");
        let mut b = a.clone();
        // Both sides wrote at the same Lamport values while apart.
        a.extend(ids(500..510, "only-a"));
        b.extend(ids(500..520, "only-b"));
        let (have, need, rounds) = difference(&a, &b);
        assert_eq!(have.len(), 10);
        assert!(have.iter().all(|h| h.starts_with("only-a")));
        assert_eq!(need.len(), 20);
        assert!(need.iter().all(|h| h.starts_with("only-b")));
        assert!(rounds <= 4, "{rounds} rounds");
    }
}
