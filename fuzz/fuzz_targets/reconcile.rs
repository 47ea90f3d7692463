//! Set reconciliation messages (negentropy, `POST /sync/v2/reconcile`),
//! as `hearthnet_events::sync` reads them from a peer.
//!
//! Two parts. Any bytes as a peer's message to our answering side and to
//! our initiating side: never a panic, and every message we produce stays
//! within `FRAME_LIMIT`. Then a whole reconciliation against a peer whose
//! set the input describes: it ends within a bounded number of rounds and
//! finds exactly the ids each side lacks.
#![no_main]

use std::collections::BTreeSet;
use std::sync::LazyLock;

use hearthnet_events::sync::{FRAME_LIMIT, IdSet, Initiator, Item, answer};
use libfuzzer_sys::fuzz_target;

fn ids(lamports: impl Iterator<Item = u64>, tag: &str) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = lamports.map(|i| (i, format!("{tag}{i:020}"))).collect();
    out.sort();
    out.dedup();
    out
}

/// Reconciliation items of `(lamport, id)` pairs; the id stands in for the
/// envelope whose digest the log would give.
fn items(ids: &[(u64, String)]) -> Vec<Item> {
    ids.iter()
        .map(|(lamport, id)| Item {
            lamport: *lamport,
            digest: *hearthnet_base::Blake3Id::of(id.as_bytes()).as_bytes(),
            event_id: id.clone(),
        })
        .collect()
}

/// Our side: 300 events at Lamports 0..300.
static OURS: LazyLock<Vec<(u64, String)>> = LazyLock::new(|| ids(0..300, "e"));
static OUR_SET: LazyLock<IdSet> = LazyLock::new(|| IdSet::new(&items(&OURS)).expect("our set"));

fuzz_target!(|data: &[u8]| {
    let set = &*OUR_SET;
    if let Ok(reply) = answer(set, data) {
        assert!(
            reply.len() as u64 <= FRAME_LIMIT,
            "answer of {} bytes",
            reply.len()
        );
    }
    let (mut init, first) = Initiator::new(set).expect("initiate");
    assert!(first.len() as u64 <= FRAME_LIMIT);
    if let Ok(Some(next)) = init.step(data) {
        assert!(
            next.len() as u64 <= FRAME_LIMIT,
            "message of {} bytes",
            next.len()
        );
    }

    // The peer's set: ours with the Lamports named by the input's bytes
    // toggled (missing if we have them), plus some of its own.
    let mut theirs: BTreeSet<(u64, String)> = OURS.iter().cloned().collect();
    for (i, &b) in data.iter().enumerate().take(400) {
        let lamport = u64::from(b) + 256 * (i as u64 % 2);
        let ours = (lamport, format!("e{lamport:020}"));
        if !theirs.remove(&ours) {
            theirs.insert((lamport, format!("p{lamport:020}")));
        }
    }
    let theirs: Vec<(u64, String)> = theirs.into_iter().collect();
    let their_set = IdSet::new(&items(&theirs)).expect("their set");
    let (mut init, mut message) = Initiator::new(set).expect("initiate");
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 20, "reconciliation did not end");
        let reply = answer(&their_set, &message).expect("answer");
        assert!(reply.len() as u64 <= FRAME_LIMIT);
        match init.step(&reply).expect("step") {
            Some(next) => message = next,
            None => break,
        }
    }
    let mine: BTreeSet<&(u64, String)> = OURS.iter().collect();
    let other: BTreeSet<&(u64, String)> = theirs.iter().collect();
    let mut have: Vec<String> = init
        .have
        .iter()
        .map(|h| set.event_id(h).expect("an id of ours").to_owned())
        .collect();
    let mut need: Vec<String> = init
        .need
        .iter()
        .map(|h| their_set.event_id(h).expect("an id of theirs").to_owned())
        .collect();
    have.sort();
    need.sort();
    let mut want_have: Vec<String> = mine.difference(&other).map(|(_, id)| id.clone()).collect();
    let mut want_need: Vec<String> = other.difference(&mine).map(|(_, id)| id.clone()).collect();
    want_have.sort();
    want_need.sort();
    assert_eq!(have, want_have);
    assert_eq!(need, want_need);
});
