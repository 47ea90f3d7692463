//! Event validation and storage (X02): envelopes from peers pushed through
//! `EventLog::append_received_blocking`, one log per process (in a
//! temporary directory, on `/dev/shm` where there is one), seeded with a
//! community's genesis.
//!
//! The input is one envelope or an array of them (up to 16). Each object
//! goes in twice: as it is (its signature is almost always wrong), and
//! signed by a real key, the founder's (an anchor) or, when the envelope
//! names it as author, a stranger's, with the community forced to ours so
//! the checks past the signature are reached. Asserts after every batch:
//! - the report accounts for every envelope exactly once;
//! - every envelope newly stored has an id never stored before (the log
//!   never holds two envelopes under one id), is one of the batch, and
//!   verifies as stored;
//! - the count of events in the view is the number stored, and its head
//!   the highest stored Lamport;
//! - every 64 batches, the view equals a replay of the stored events from
//!   scratch, and SQLite's integrity check passes.
//!
//! The log starts afresh after 2,000 stored events, so a long run keeps
//! its speed.
#![no_main]

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use hearthnet_base::event::Event;
use hearthnet_base::{CommunityId, DeviceKey, sign_value};
use hearthnet_events::{CommunityView, EventLog, Fold, Limits, LogPaths, Query};
use hearthnet_identity::{CommunityPolicy, Genesis};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

struct World {
    _dir: tempfile::TempDir,
    log: EventLog,
    founder: DeviceKey,
    stranger: DeviceKey,
    community: CommunityId,
    /// Ids of the events that count.
    stored: HashSet<String>,
    head: u64,
    /// Every envelope offered, as JSON text.
    sent: HashSet<String>,
    batches: u64,
}

impl World {
    fn new() -> Self {
        let founder = hearthnet_fuzz::key(1);
        let genesis =
            // Links not required, so that envelopes the fuzzer makes up
            // reach the membership rules rather than stop at that check.
            Genesis::create(&founder, "Fuzz", CommunityPolicy { require_event_links: false, ..CommunityPolicy::default() }).expect("genesis");
        let community = genesis.manifest.community_id;
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        remove_stale(&base);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{PREFIX}{}-", std::process::id()))
            .tempdir_in(&base)
            .expect("temp dir");
        let log = EventLog::open(
            LogPaths::in_state_dir(dir.path()),
            community,
            Limits::default(),
            Some(genesis.created_event.to_value()),
            Some(founder.clone()),
        )
        .expect("open the log");
        let mut world = Self {
            _dir: dir,
            log,
            founder,
            stranger: hearthnet_fuzz::key(8),
            community,
            stored: HashSet::new(),
            head: 0,
            sent: HashSet::new(),
            batches: 0,
        };
        world.check_counted();
        world
    }

    /// Check what counts in the log now: one envelope per id, each one
    /// that was sent and verifies; the view's count and head match it.
    /// (Whether an event counts may change when an earlier one arrives,
    /// so the whole set is looked at, not only what is new.)
    fn check_counted(&mut self) {
        let counted = self.log.query_blocking(Query::default()).expect("query");
        let mut ids = HashSet::new();
        let mut head = 0;
        for stored in &counted {
            let id = &stored.event.event_id;
            assert!(ids.insert(id.clone()), "two envelopes under id {id}");
            assert_eq!(stored.json["event_id"].as_str(), Some(id.as_str()));
            assert!(
                self.sent.contains(&stored.json.to_string()) || stored.event.lamport == 0,
                "stored what was not sent"
            );
            let verified = Event::verify(&stored.json).expect("a stored envelope verifies");
            assert_eq!(verified, stored.event);
            head = head.max(stored.event.lamport);
        }
        let view = self.log.view();
        assert_eq!(view.count, counted.len() as u64);
        assert_eq!(view.head, head);
        self.stored = ids;
        self.head = head;
    }

    fn signed(&self, value: &Value) -> Option<Value> {
        let Value::Object(document) = value else {
            return None;
        };
        let mut document = document.clone();
        let key = if document.get("author") == Some(&json!(self.stranger.node_id())) {
            &self.stranger
        } else {
            &self.founder
        };
        document.insert("author".into(), json!(key.node_id()));
        document.insert("community_id".into(), json!(self.community));
        sign_value(Value::Object(document), key).ok()
    }
}

/// `HEARTHNET_FUZZ_DEBUG=1`: print each batch's report (to see which
/// checks the inputs reach).
static DEBUG: LazyLock<bool> = LazyLock::new(|| std::env::var_os("HEARTHNET_FUZZ_DEBUG").is_some());

/// The community view folding every event, as the log's own view does
/// (its `Fold` impl asks only for `community.*` events, so its head and
/// count would cover only those).
struct All(CommunityView);

impl Fold for All {
    fn wants(&self, _: &str) -> bool {
        true
    }

    fn apply(&mut self, event: &Event) {
        self.0.apply(event);
    }
}

/// The log's directories are named `<PREFIX><pid>-…`: libFuzzer exits
/// without dropping statics, so each process removes those of processes
/// that are gone.
const PREFIX: &str = "hearthnet-fuzz-event-log-";

fn remove_stale(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

static WORLD: LazyLock<Mutex<World>> = LazyLock::new(|| Mutex::new(World::new()));

fuzz_target!(|data: &[u8]| {
    let Some(value) = hearthnet_fuzz::json(data) else {
        return;
    };
    let mut world = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    if world.stored.len() > 2000 {
        *world = World::new();
    }
    let offered: Vec<Value> = match value {
        Value::Array(items) => items.into_iter().take(16).collect(),
        one => vec![one],
    };
    let mut batch = offered.clone();
    batch.extend(offered.iter().filter_map(|v| world.signed(v)));

    for v in &batch {
        world.sent.insert(v.to_string());
    }
    let report = world
        .log
        .append_received_blocking(batch.clone())
        .expect("the log is open");
    // Every envelope is accounted for once, except one that displaced
    // another under its id: reported as the conflict and as accepted.
    let accounted = report.accepted + report.duplicates + report.rejected.len() as u64;
    assert!(
        accounted >= batch.len() as u64 && accounted <= batch.len() as u64 + report.conflicts,
        "{report:?}"
    );
    if *DEBUG {
        eprintln!("{report:?}");
    }
    world.check_counted();
    let view = world.log.view();
    assert_eq!(report.head, world.head);

    world.batches += 1;
    if world.batches % 64 == 0 {
        let (All(replayed), _) = world
            .log
            .replay_into(All(CommunityView::new(world.community)))
            .expect("replay");
        assert_eq!(*view, replayed, "the view differs from a replay");
        assert_eq!(world.log.integrity_check_blocking().expect("check"), Ok(()));
    }
});
