//! The marketplace's rights, judged by the log itself (not only by the
//! service that wrote the event): who may expire or update a post, and
//! that the verdict depends on the set of events, not on their order.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use hearthnet_base::event::Event;
use hearthnet_base::{Blake3Id, DeviceKey, Timestamp, sign_value, to_canonical_bytes};
use hearthnet_events::{AppendReport, EventLog, Limits, LogPaths, Query, RejectCode};
use hearthnet_identity::{CommunityPolicy, Genesis};
use serde_json::{Value, json};

struct World {
    dir: tempfile::TempDir,
    genesis: Genesis,
    founder: DeviceKey,
    trusted: DeviceKey,
    author: DeviceKey,
    member: DeviceKey,
}

impl World {
    fn new() -> Self {
        let founder = DeviceKey::generate();
        let genesis = Genesis::create(&founder, "market", CommunityPolicy::default()).unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            genesis,
            founder,
            trusted: DeviceKey::generate(),
            author: DeviceKey::generate(),
            member: DeviceKey::generate(),
        }
    }

    /// An event by `key` at `lamport`, stamped `age` seconds ago, linked as
    /// its author's first.
    fn event(&self, key: &DeviceKey, lamport: u64, age: i64, kind: &str, data: Value) -> Value {
        let mut data = data;
        data["author_prev"] = Value::Null;
        let mut unsigned = json!({
            "schema_version": 1,
            "lamport": lamport,
            "wall_clock": Timestamp::now().plus_seconds(-age),
            "community_id": self.genesis.manifest.community_id,
            "author": key.node_id(),
            "event_type": kind,
            "data": data,
        });
        // The id bound to the content, as our writers bind it (the
        // community requires links, and with them bound ids).
        let hash = Blake3Id::of(&to_canonical_bytes(&unsigned).unwrap());
        let mut random = [0u8; 16];
        random[6..].copy_from_slice(&hash.as_bytes()[..10]);
        let id = ulid::Ulid::from_parts(
            ulid::Ulid::new().timestamp_ms(),
            u128::from_be_bytes(random),
        );
        unsigned["event_id"] = json!(id.to_string());
        let signed = sign_value(unsigned, key).unwrap();
        assert!(Event::id_is_bound(&signed));
        signed
    }

    /// A log with the founder, a trusted member, the post's author and
    /// another member (Lamport 1–6).
    fn log(&self, name: &str) -> EventLog {
        let log = EventLog::open(
            LogPaths::in_state_dir(&self.dir.path().join(name)),
            self.genesis.manifest.community_id,
            Limits::default(),
            Some(self.genesis.created_event.to_value()),
            None,
        )
        .unwrap();
        let mut lamport = 1;
        for (who, level) in [
            (&self.trusted, "trusted"),
            (&self.author, "member"),
            (&self.member, "member"),
        ] {
            let invite = self.event(
                &self.founder,
                lamport,
                0,
                "community.member.invited",
                json!({"invitee_node_id": who.node_id(), "display_name": "x",
                       "initial_level": level, "expires_at": Timestamp::now().plus_seconds(3600)}),
            );
            let joined = self.event(
                who,
                lamport + 1,
                0,
                "community.member.joined",
                json!({"invite_event_id": invite["event_id"], "node_manifest": {}}),
            );
            let report = log.append_received_blocking(vec![invite, joined]).unwrap();
            assert_eq!(report.accepted, 2, "{report:?}");
            lamport += 2;
        }
        log
    }

    /// A post by the author, stamped `age` seconds ago, lasting `ttl`.
    fn post(&self, age: i64, ttl: u64) -> Value {
        self.event(
            &self.author,
            10,
            age,
            "market.post.created",
            json!({"client_id": "p", "category": "offer", "title": "Wasserkanister",
                   "body": "20 l", "ttl_seconds": ttl}),
        )
    }

    fn expiry(&self, key: &DeviceKey, post: &Value, reason: &str) -> Value {
        self.event(
            key,
            11,
            0,
            "market.post.expired",
            json!({"client_id": reason, "target_event_id": post["event_id"], "reason": reason}),
        )
    }
}

fn refusal(report: &AppendReport) -> (RejectCode, String) {
    assert_eq!(report.accepted, 0, "{report:?}");
    let (_, reject) = report.rejected.first().expect("refused").clone();
    (reject.code, reject.detail)
}

fn expiries(log: &EventLog) -> usize {
    log.query_blocking(Query {
        event_type: Some("market.post.expired".into()),
        ..Query::default()
    })
    .unwrap()
    .len()
}

#[test]
fn only_the_author_or_a_trusted_member_for_a_lapsed_post_expires_it() {
    let w = World::new();
    let log = w.log("a");
    let fresh = w.post(0, 3600);
    let lapsed = w.post(120, 60);
    let report = log
        .append_received_blocking(vec![fresh.clone(), lapsed.clone()])
        .unwrap();
    assert_eq!(report.accepted, 2, "{report:?}");

    let refused = [
        // A member, not the author: not even a lapsed post.
        (w.expiry(&w.member, &lapsed, "stale"), "trusted"),
        // Trusted, but the post has not lapsed.
        (w.expiry(&w.trusted, &fresh, "stale"), "lapses at"),
        // The founder (an anchor), for a reason only the author gives.
        (
            w.expiry(&w.founder, &lapsed, "withdrawn"),
            "only its author",
        ),
        // No such post.
        (
            w.expiry(&w.author, &json!({"event_id": "01NOPE"}), "fulfilled"),
            "no post",
        ),
    ];
    for (expiry, why) in refused {
        let report = log.append_received_blocking(vec![expiry]).unwrap();
        let (code, detail) = refusal(&report);
        assert_eq!(code, RejectCode::Unauthorized, "{detail}");
        assert!(detail.contains(why), "{why}: {detail}");
    }
    assert_eq!(expiries(&log), 0, "nothing refused counts");

    let allowed = [
        w.expiry(&w.trusted, &lapsed, "stale"),
        w.expiry(&w.author, &fresh, "fulfilled"),
    ];
    let report = log.append_received_blocking(allowed.to_vec()).unwrap();
    assert_eq!(report.accepted, 2, "{report:?}");
    assert_eq!(expiries(&log), 2);
}

#[test]
fn an_expiry_arriving_before_its_post_counts_once_the_post_is_there() {
    let w = World::new();
    let log = w.log("a");
    let post = w.post(0, 3600);
    let expiry = w.expiry(&w.author, &post, "withdrawn");
    let early = log.append_received_blocking(vec![expiry]).unwrap();
    assert_eq!(refusal(&early).0, RejectCode::Unauthorized);
    assert_eq!(expiries(&log), 0);
    let report = log.append_received_blocking(vec![post]).unwrap();
    assert_eq!(report.accepted, 1, "{report:?}");
    assert_eq!(expiries(&log), 1, "the held expiry was judged again");
}

#[test]
fn only_the_author_updates_a_post() {
    let w = World::new();
    let log = w.log("a");
    let post = w.post(0, 3600);
    log.append_received_blocking(vec![post.clone()]).unwrap();
    let update = |key: &DeviceKey| {
        w.event(
            key,
            11,
            0,
            "market.post.updated",
            json!({"client_id": "u", "target_event_id": post["event_id"], "fields": {"body": "weg"}}),
        )
    };
    let report = log
        .append_received_blocking(vec![update(&w.founder)])
        .unwrap();
    assert!(refusal(&report).1.contains("only its author"));
    let report = log
        .append_received_blocking(vec![update(&w.author)])
        .unwrap();
    assert_eq!(report.accepted, 1, "{report:?}");
}

#[test]
fn a_post_out_of_bounds_is_refused_before_it_is_stored() {
    let w = World::new();
    let log = w.log("a");
    let post = w.event(
        &w.author,
        10,
        0,
        "market.post.created",
        json!({"client_id": "p", "category": "offer", "title": "x".repeat(201),
               "body": "", "ttl_seconds": 60}),
    );
    let report = log.append_received_blocking(vec![post]).unwrap();
    let (code, detail) = refusal(&report);
    assert_eq!(code, RejectCode::BadData);
    assert!(
        detail.starts_with("data.title is 201 characters"),
        "{detail}"
    );
}

fn posts(log: &EventLog) -> Vec<String> {
    let mut ids: Vec<String> = log
        .query_blocking(Query {
            event_type: Some("market.post.created".into()),
            ..Query::default()
        })
        .unwrap()
        .into_iter()
        .map(|s| s.event.event_id)
        .collect();
    ids.sort();
    ids
}

/// One author has at most `MAX_LIVE_POSTS_PER_AUTHOR` live posts, judged
/// at each post's position: whichever order the posts arrive in, every
/// log keeps the same ones, and an expiry makes room again.
#[test]
fn an_author_has_a_bounded_number_of_live_posts_whatever_the_order() {
    use hearthnet_events::market::MAX_LIVE_POSTS_PER_AUTHOR as MAX;
    let w = World::new();
    let post = |lamport: u64, age: i64, ttl: u64| {
        w.event(
            &w.author,
            lamport,
            age,
            "market.post.created",
            json!({"client_id": format!("p{lamport}"), "category": "offer",
                   "title": "Wasserkanister", "body": "", "ttl_seconds": ttl}),
        )
    };
    // A post that lapsed before the others were written weighs nothing.
    let lapsed = post(10, 600, 60);
    let live: Vec<Value> = (0..MAX as u64).map(|i| post(11 + i, 0, 3600)).collect();
    let one_more = post(500, 0, 3600);

    let in_order = w.log("in-order");
    let mut first = vec![lapsed.clone()];
    first.extend(live.iter().cloned());
    let report = in_order.append_received_blocking(first).unwrap();
    assert_eq!(report.accepted, MAX as u64 + 1, "{report:?}");
    let report = in_order
        .append_received_blocking(vec![one_more.clone()])
        .unwrap();
    let (code, detail) = refusal(&report);
    assert_eq!(code, RejectCode::Unauthorized);
    assert!(detail.contains("live posts"), "{detail}");

    // The last post first: it counts until the earlier ones arrive.
    let reversed = w.log("reversed");
    let report = reversed
        .append_received_blocking(vec![one_more.clone()])
        .unwrap();
    assert_eq!(report.accepted, 1, "{report:?}");
    let mut rest = live.clone();
    rest.push(lapsed);
    reversed.append_received_blocking(rest).unwrap();
    assert_eq!(posts(&in_order), posts(&reversed));
    assert!(!posts(&reversed).contains(&one_more["event_id"].as_str().unwrap().to_owned()));

    // An expiry frees a place for a later post.
    let expiry = w.event(
        &w.author,
        600,
        0,
        "market.post.expired",
        json!({"client_id": "e", "target_event_id": live[0]["event_id"], "reason": "fulfilled"}),
    );
    let report = in_order
        .append_received_blocking(vec![expiry, post(601, 0, 3600)])
        .unwrap();
    assert_eq!(report.accepted, 2, "{report:?}");
}
