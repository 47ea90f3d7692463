//! Set reconciliation of event ids (negentropy), the protocol two nodes of
//! ours use to find exactly which events each lacks, whatever their
//! Lamport values, in a few round trips and a few hundred bytes when the
//! sets are close.
//!
//! Items are `(lamport, BLAKE3(event_id))`; the 32-byte hash maps back to
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

/// One side's set of event ids, ready for reconciliation.
pub struct IdSet {
    storage: NegentropyStorageVector,
    by_hash: HashMap<[u8; 32], String>,
}

impl IdSet {
    pub fn new(ids: &[(u64, String)]) -> Result<Self, ReconcileError> {
        let mut storage = NegentropyStorageVector::with_capacity(ids.len());
        let mut by_hash = HashMap::with_capacity(ids.len());
        for (lamport, id) in ids {
            let hash = *blake3::hash(id.as_bytes()).as_bytes();
            storage
                .insert(*lamport, Id::from_byte_array(hash))
                .map_err(err)?;
            by_hash.insert(hash, id.clone());
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

    fn ids(range: std::ops::Range<u64>, tag: &str) -> Vec<(u64, String)> {
        range.map(|i| (i, format!("{tag}{i:020}"))).collect()
    }

    #[test]
    fn finds_exactly_the_difference_including_concurrent_lamports() {
        let mut a = ids(0..1000, "common");
        let mut b = a.clone();
        // Both sides wrote at the same Lamport values while apart.
        a.extend(ids(500..510, "only-a"));
        b.extend(ids(500..520, "only-b"));
        a.sort();
        b.sort();
        let (sa, sb) = (IdSet::new(&a).unwrap(), IdSet::new(&b).unwrap());
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
        let mut have: Vec<&str> = init.have.iter().map(|h| sa.event_id(h).unwrap()).collect();
        let mut need: Vec<String> = init
            .need
            .iter()
            .map(|h| sb.event_id(h).unwrap().to_owned())
            .collect();
        have.sort();
        need.sort();
        assert_eq!(have.len(), 10);
        assert!(have.iter().all(|h| h.starts_with("only-a")));
        assert_eq!(need.len(), 20);
        assert!(need.iter().all(|h| h.starts_with("only-b")));
        assert!(rounds <= 4, "{rounds} rounds");
    }
}
