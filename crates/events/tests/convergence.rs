//! Property: whether an event counts depends on the set of events, never on
//! the order they arrive in. Random histories — conflicting joins, quorums
//! of any co-signers, revocations naming a last event, backdated events,
//! reused ids, market posts and their expiries — are delivered to several logs in random orders and subsets
//! (a partition), the logs then sync by offering each other what counts,
//! and all must end with the same events and the same view as a log that
//! got everything at once. Whatever the history, the attackers never rise
//! above member and the root stays an anchor.
//!
//! `PROPTEST_CASES` sets how many histories are tried (64 by default).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;

use hearthnet_base::event::{Event, NewEvent};
use hearthnet_base::{CommunityId, DeviceKey, Timestamp, TrustLevel};
use hearthnet_events::{EventLog, Limits, LogPaths, Query};
use hearthnet_identity::{CommunityPolicy, Genesis};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The cast: 0 founder (root), 1–2 honest trusted members, 3 a member
/// turned attacker, 4–5 keys the attacker controls.
const CAST: usize = 6;
const HONEST: [usize; 3] = [0, 1, 2];

fn key(i: usize) -> DeviceKey {
    DeviceKey::from_seed([i as u8 + 1; 32])
}

fn is_honest(i: usize) -> bool {
    HONEST.contains(&i)
}

#[derive(Debug, Clone)]
enum Action {
    Post {
        author: usize,
        lamport: u64,
    },
    Invite {
        author: usize,
        invitee: usize,
        level: u8,
        lamport: u64,
    },
    /// Join through the `nth` invite written so far (any invitee).
    Join {
        who: usize,
        nth: usize,
        lamport: u64,
    },
    Change {
        kind: u8,
        author: usize,
        target: usize,
        level: u8,
        signers: Vec<usize>,
        last: Option<usize>,
        lamport: u64,
    },
    /// An expiry of the `nth` post written so far, as its author would
    /// (`withdrawn`) or as a moderator (`stale`, valid only once lapsed).
    Expire {
        author: usize,
        nth: usize,
        stale: bool,
        lamport: u64,
    },
    /// Another envelope under the id of the `nth` event written so far.
    ReuseId {
        author: usize,
        nth: usize,
        lamport: u64,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let who = 0..CAST;
    let lamport = 1u64..40;
    prop_oneof![
        (who.clone(), lamport.clone())
            .prop_map(|(author, lamport)| Action::Post { author, lamport }),
        (who.clone(), who.clone(), 0u8..3, lamport.clone()).prop_map(
            |(author, invitee, level, lamport)| Action::Invite {
                author,
                invitee,
                level,
                lamport
            }
        ),
        (who.clone(), 0usize..8, lamport.clone()).prop_map(|(who, nth, lamport)| Action::Join {
            who,
            nth,
            lamport
        }),
        (
            0u8..3,
            who.clone(),
            who.clone(),
            0u8..3,
            proptest::collection::vec(0..CAST, 0..4),
            proptest::option::of(0usize..30),
            lamport.clone()
        )
            .prop_map(|(kind, author, target, level, signers, last, lamport)| {
                Action::Change {
                    kind,
                    author,
                    target,
                    level,
                    signers,
                    last,
                    lamport,
                }
            }),
        (who.clone(), 0usize..8, any::<bool>(), lamport.clone()).prop_map(
            |(author, nth, stale, lamport)| Action::Expire {
                author,
                nth,
                stale,
                lamport
            }
        ),
        (who, 0usize..30, lamport).prop_map(|(author, nth, lamport)| Action::ReuseId {
            author,
            nth,
            lamport
        }),
    ]
}

struct Writer {
    community: CommunityId,
    keys: Vec<DeviceKey>,
    /// Every envelope written, in writing order.
    events: Vec<Value>,
    invites: Vec<String>,
    /// The posts written, by id.
    posts: Vec<String>,
    /// Each author's last event, for `author_prev`.
    last_of: BTreeMap<usize, String>,
}

/// A post's data within the log's bounds.
fn post_data(title: &str, ttl: u64) -> Value {
    json!({"client_id": title, "category": "offer", "title": title, "body": "", "ttl_seconds": ttl})
}

fn level_name(level: u8) -> &'static str {
    ["member", "trusted", "anchor"][usize::from(level) % 3]
}

impl Writer {
    fn write(&mut self, author: usize, lamport: u64, event_type: &str, mut data: Value) -> Value {
        data["author_prev"] = self
            .last_of
            .get(&author)
            .map_or(Value::Null, |id| json!(id));
        let event = Event::create(
            NewEvent {
                community_id: self.community,
                lamport,
                event_type,
                data,
            },
            &self.keys[author],
        )
        .expect("sign")
        .to_value();
        self.last_of.insert(
            author,
            event["event_id"].as_str().unwrap_or_default().to_owned(),
        );
        self.events.push(event.clone());
        event
    }

    fn invite(&mut self, author: usize, invitee: usize, level: &str, lamport: u64) {
        let e = self.write(
            author,
            lamport,
            "community.member.invited",
            json!({
                "invitee_node_id": self.keys[invitee].node_id(), "display_name": "x",
                "initial_level": level, "expires_at": Timestamp::now().plus_seconds(3600)
            }),
        );
        self.invites
            .push(e["event_id"].as_str().unwrap_or_default().to_owned());
    }

    fn join(&mut self, who: usize, invite: String, lamport: u64) {
        self.write(
            who,
            lamport,
            "community.member.joined",
            json!({"invite_event_id": invite, "node_manifest": {}}),
        );
    }

    fn act(&mut self, action: &Action) {
        match action.clone() {
            Action::Post { author, lamport } => {
                let post = self.write(author, lamport, "market.post.created", post_data("t", 60));
                self.posts
                    .push(post["event_id"].as_str().unwrap_or_default().to_owned());
            }
            Action::Expire {
                author,
                nth,
                stale,
                lamport,
            } => {
                let Some(post) = self.posts.get(nth % self.posts.len().max(1)).cloned() else {
                    return;
                };
                let reason = if stale { "stale" } else { "withdrawn" };
                self.write(
                    author,
                    lamport,
                    "market.post.expired",
                    json!({"client_id": format!("x{}", self.events.len()), "target_event_id": post, "reason": reason}),
                );
            }
            Action::Invite {
                author,
                invitee,
                level,
                lamport,
            } => {
                // The honest never raise the attackers: they invite them
                // at member at most.
                if is_honest(author) && !is_honest(invitee) && level > 0 {
                    return;
                }
                self.invite(author, invitee, level_name(level), lamport);
            }
            Action::Join { who, nth, lamport } => {
                if let Some(invite) = self.invites.get(nth % self.invites.len().max(1)).cloned() {
                    self.join(who, invite, lamport);
                }
            }
            Action::Change {
                kind,
                author,
                target,
                level,
                signers,
                last,
                lamport,
            } => {
                let event_type = [
                    "community.member.promoted",
                    "community.member.demoted",
                    "community.member.revoked",
                ][usize::from(kind)];
                let mut data = json!({"client_id": format!("c{}", self.events.len()), "target_node_id": self.keys[target].node_id()});
                if kind == 2 {
                    data["reason"] = json!("other");
                    if let Some(nth) = last
                        && let Some(e) = self.events.get(nth % self.events.len())
                    {
                        data["target_last_event_id"] = e["event_id"].clone();
                    }
                } else {
                    data["new_level"] = json!(level_name(level));
                }
                // The honest co-sign only what raises the honest or
                // lowers the attackers.
                let raises = kind == 0;
                let fair = |signer: usize| !is_honest(signer) || (is_honest(target) == raises);
                let payload = hearthnet_events::cosigned_payload(event_type, &data);
                let co_signers: Vec<Value> = signers
                    .into_iter()
                    .filter(|s| fair(*s))
                    .map(|s| json!({"node_id": self.keys[s].node_id(), "signature": self.keys[s].sign_canonical(&payload).expect("co-sign")}))
                    .collect();
                if is_honest(author) && !fair(author) {
                    return;
                }
                data["co_signers"] = json!(co_signers);
                self.write(author, lamport, event_type, data);
            }
            Action::ReuseId {
                author,
                nth,
                lamport,
            } => {
                let Some(victim) = self.events.get(nth % self.events.len()).cloned() else {
                    return;
                };
                let mut copy = self.write(
                    author,
                    lamport,
                    "market.post.created",
                    // A valid post, so the copy is weighed for its id,
                    // not refused for its data.
                    post_data("squat", 60),
                );
                self.events.pop();
                copy["event_id"] = victim["event_id"].clone();
                let unsigned = {
                    let mut u = copy.clone();
                    u.as_object_mut().map(|m| m.remove("signature"));
                    u
                };
                let signed =
                    hearthnet_base::sign_value(unsigned, &self.keys[author]).expect("sign");
                self.events.push(signed);
            }
        }
    }
}

/// A history: the founding (honest trusted members, an attacker at member)
/// and then the random actions.
fn history(actions: &[Action]) -> (Genesis, Vec<Value>) {
    let keys: Vec<DeviceKey> = (0..CAST).map(key).collect();
    let genesis = Genesis::create(&keys[0], "Prop", CommunityPolicy::default()).expect("genesis");
    let mut w = Writer {
        community: genesis.manifest.community_id,
        keys,
        events: Vec::new(),
        invites: Vec::new(),
        posts: Vec::new(),
        last_of: BTreeMap::new(),
    };
    w.invite(0, 1, "trusted", 1);
    w.invite(0, 2, "trusted", 1);
    w.invite(0, 3, "member", 1);
    for (who, nth) in [(1, 0), (2, 1), (3, 2)] {
        let invite = w.invites[nth].clone();
        w.join(who, invite, 2);
    }
    for a in actions {
        w.act(a);
    }
    (genesis, w.events)
}

fn open(dir: &std::path::Path, name: &str, genesis: &Genesis) -> EventLog {
    EventLog::open(
        LogPaths {
            database: dir.join(name).join("events.sqlite"),
            snapshots: None,
        },
        genesis.manifest.community_id,
        Limits::default(),
        Some(genesis.created_event.to_value()),
        None,
    )
    .expect("open")
}

/// What counts in a log: id → envelope.
fn counted(log: &EventLog) -> BTreeMap<String, Value> {
    log.query_blocking(Query::default())
        .expect("query")
        .into_iter()
        .map(|s| (s.event.event_id, s.json))
        .collect()
}

const LOGS: usize = 3;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_arrival_order_and_partition_ends_in_the_same_log(
        actions in proptest::collection::vec(action(), 1..16),
        delivery in proptest::collection::vec((1u8..8, any::<u64>()), 64),
        batch in 1usize..5,
    ) {
        let (genesis, events) = history(&actions);
        let dir = tempfile::tempdir().expect("tempdir");
        let reference = open(dir.path(), "reference", &genesis);
        reference.append_received_blocking(events.clone()).expect("append");
        // Each event reaches a random non-empty subset of the logs, each
        // log in its own random order, in small batches.
        let logs: Vec<EventLog> = (0..LOGS).map(|i| open(dir.path(), &format!("log{i}"), &genesis)).collect();
        for (i, log) in logs.iter().enumerate() {
            let mut mine: Vec<(u64, &Value)> = events
                .iter()
                .enumerate()
                .filter(|(n, _)| delivery[n % delivery.len()].0 & (1 << i) != 0)
                .map(|(n, e)| (delivery[n % delivery.len()].1.rotate_left(i as u32 * 7) ^ n as u64, e))
                .collect();
            mine.sort_by_key(|(order, _)| *order);
            for chunk in mine.chunks(batch) {
                log.append_received_blocking(chunk.iter().map(|(_, e)| (*e).clone()).collect()).expect("append");
            }
        }
        // Sync: offer each other what counts, until nothing changes.
        for _round in 0..10 {
            let before: Vec<_> = logs.iter().map(counted).collect();
            for (i, log) in logs.iter().enumerate() {
                for (j, theirs) in before.iter().enumerate() {
                    if i != j {
                        log.append_received_blocking(theirs.values().cloned().collect()).expect("append");
                    }
                }
            }
            if logs.iter().map(counted).collect::<Vec<_>>() == before {
                break;
            }
        }
        let expected = counted(&reference);
        let view = reference.view();
        for log in &logs {
            prop_assert_eq!(&counted(log), &expected);
            prop_assert_eq!(&*log.view(), &*view);
        }
        // No history lifts the attackers or topples the root.
        for attacker in 3..CAST {
            prop_assert!(view.level_of(&key(attacker).node_id()) <= TrustLevel::Member);
        }
        prop_assert_eq!(view.level_of(&key(0).node_id()), TrustLevel::Anchor);
    }
}

/// The smallest history the property test found once `ReuseId` wrote valid
/// copies. A stranger's post `held` (bound id, counts nowhere: its author
/// is no member) and a member's valid post `squat` re-signed under the
/// same id. A log holding both kept `held` (a bound id beats a copied
/// one) and counted neither; a log that got only `squat` counted it, and
/// never heard of `held`, as held events are not synced: the logs did not
/// converge. A copied (unbound) id now counts nowhere in a community that
/// requires links, whatever else the log holds.
#[test]
fn a_copied_id_counts_nowhere_whether_or_not_its_original_is_held() {
    let genesis = Genesis::create(&key(0), "Prop", CommunityPolicy::default()).expect("genesis");
    let community = genesis.manifest.community_id;
    let post = |author: usize, title: &str| {
        let mut data = post_data(title, 60);
        data["author_prev"] = Value::Null;
        Event::create(
            NewEvent {
                community_id: community,
                lamport: 1,
                event_type: "market.post.created",
                data,
            },
            &key(author),
        )
        .expect("sign")
        .to_value()
    };
    let held = post(5, "stranger");
    let squat = {
        let mut v = post(0, "squat");
        v["event_id"] = held["event_id"].clone();
        v.as_object_mut().map(|m| m.remove("signature"));
        hearthnet_base::sign_value(v, &key(0)).expect("sign")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let both = open(dir.path(), "both", &genesis);
    both.append_received_blocking(vec![held.clone(), squat.clone()])
        .expect("append");
    let squat_first = open(dir.path(), "squat-first", &genesis);
    squat_first
        .append_received_blocking(vec![squat.clone()])
        .expect("append");
    squat_first
        .append_received_blocking(vec![held])
        .expect("append");
    let squat_only = open(dir.path(), "squat-only", &genesis);
    squat_only
        .append_received_blocking(vec![squat])
        .expect("append");
    // Sync offers only what counts.
    for (from, to) in [(&both, &squat_only), (&squat_only, &both)] {
        to.append_received_blocking(counted(from).into_values().collect())
            .expect("append");
    }
    let expected = counted(&both);
    assert_eq!(expected.len(), 1, "only the genesis counts: {expected:?}");
    assert_eq!(counted(&squat_first), expected);
    assert_eq!(counted(&squat_only), expected);
}
