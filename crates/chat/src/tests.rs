//! The service against real event logs, one per node, with a courier that
//! hands events to the logs of the nodes marked online.

use std::collections::HashMap;

use hearthnet_base::event::NewEvent;
use hearthnet_bus::{Bus, BusSettings, InboundCall, Version};
use hearthnet_events::{Limits, LogPaths, StoredEvent};
use hearthnet_identity::community::Genesis;

use super::*;

/// Logs of the nodes that are reachable now, by node.
#[derive(Default)]
struct Network(Mutex<HashMap<NodeId, EventLog>>);

impl Network {
    fn online(&self, node: NodeId, log: &EventLog) {
        self.0.lock().insert(node, log.clone());
    }
    fn offline(&self, node: NodeId) {
        self.0.lock().remove(&node);
    }
}

struct LogCourier(Arc<Network>);

impl Courier for LogCourier {
    fn hand_to(&self, node: NodeId, event: Value) -> BoxFuture<'static, bool> {
        let log = self.0.0.lock().get(&node).cloned();
        Box::pin(async move {
            let Some(log) = log else { return false };
            log.append_received(vec![event])
                .await
                .is_ok_and(|r| r.accepted + r.duplicates > 0)
        })
    }

    fn reachable(&self) -> Vec<NodeId> {
        self.0.0.lock().keys().copied().collect()
    }
}

/// A community founded by an anchor, with its own log as the reference
/// copy of membership.
struct World {
    dir: tempfile::TempDir,
    founder: DeviceKey,
    genesis: Value,
    founder_log: EventLog,
    network: Arc<Network>,
    stop: CancellationToken,
}

struct Node {
    key: DeviceKey,
    log: EventLog,
    bus: Arc<Bus>,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let founder = DeviceKey::generate();
        let genesis = Genesis::create(&founder, "t", Default::default()).unwrap();
        let genesis_event = genesis.created_event.to_value();
        let founder_log = open_log(&dir, &founder, &genesis_event, Limits::default());
        Self {
            dir,
            founder,
            genesis: genesis_event,
            founder_log,
            network: Arc::default(),
            stop: CancellationToken::new(),
        }
    }

    /// Admit `who` as a member (invite by the founder, `who`'s join).
    async fn admit(&self, who: &DeviceKey) {
        self.admit_as(who, "member").await;
    }

    /// Admit `who` at `level`.
    async fn admit_as(&self, who: &DeviceKey, level: &str) {
        let invite = self
            .founder_log
            .append_local(
                "community.member.invited",
                json!({"invitee_node_id": who.node_id(), "display_name": "x",
                    "initial_level": level, "expires_at": Timestamp::now().plus_seconds(3600)}),
                &self.founder,
            )
            .await
            .unwrap();
        let joined = Event::create(
            NewEvent {
                community_id: self.founder_log.view().community_id,
                lamport: invite.lamport + 1,
                event_type: "community.member.joined",
                data: json!({"invite_event_id": invite.event_id, "node_manifest": {},
                    "author_prev": null}),
            },
            who,
        )
        .unwrap();
        let report = self
            .founder_log
            .append_received(vec![joined.to_value()])
            .await
            .unwrap();
        assert_eq!(report.accepted, 1, "{report:?}");
    }

    /// Everything the founder's log holds, copied into `log` (a sync).
    async fn sync_from(&self, from: &EventLog, to: &EventLog) {
        let all = from.query(Query::default()).await.unwrap();
        to.append_received(all.into_iter().map(|e| e.json).collect())
            .await
            .unwrap();
    }

    /// A node of `key` with the community's history, its chat service
    /// following its log, reachable.
    async fn node(&self, key: DeviceKey) -> Node {
        self.node_with(key, Limits::default()).await
    }

    /// As [`World::node`], its log taking `limits`.
    async fn node_with(&self, key: DeviceKey, limits: Limits) -> Node {
        let log = open_log(&self.dir, &key, &self.genesis, limits);
        self.sync_from(&self.founder_log, &log).await;
        let courier = Arc::new(LogCourier(self.network.clone()));
        let chat = Arc::new(ChatService::new(log.clone(), key.clone(), courier, true));
        tokio::spawn(chat.follow(self.stop.clone()));
        let bus = Arc::new(Bus::new(
            key.node_id(),
            BusSettings::default(),
            Arc::default(),
        ));
        bus.register(chat.clone()).unwrap();
        self.network.online(key.node_id(), &log);
        Node { key, log, bus }
    }
}

fn open_log(dir: &tempfile::TempDir, key: &DeviceKey, genesis: &Value, limits: Limits) -> EventLog {
    let community =
        hearthnet_base::CommunityId::parse(genesis["community_id"].as_str().unwrap()).unwrap();
    EventLog::open(
        LogPaths::in_state_dir(&dir.path().join(key.node_id().short())),
        community,
        limits,
        Some(genesis.clone()),
        None,
    )
    .unwrap()
}

impl Node {
    async fn call(&self, capability: &str, input: Value) -> Result<Value, CallError> {
        let body = json!({"input": input});
        let call = InboundCall::new(
            capability,
            Version::new(1, 0),
            body,
            self.key.node_id(),
            TrustLevel::Member,
        );
        self.bus.call(call)?.outcome().await
    }

    async fn send(&self, to: &Node, text: &str) -> Result<Value, CallError> {
        self.call(
            "chat.send",
            json!({"recipient": to.key.node_id().full(), "body": text}),
        )
        .await
    }

    async fn history(&self, peer: Option<&Node>) -> Vec<Value> {
        let input = match peer {
            Some(p) => json!({"peer": p.key.node_id().full()}),
            None => json!({}),
        };
        let answer = self.call("chat.history", input).await.unwrap();
        answer["output"]["messages"].as_array().unwrap().clone()
    }

    async fn chat_events(&self, event_type: &str) -> Vec<StoredEvent> {
        self.log
            .query(Query {
                event_type: Some(event_type.into()),
                ..Query::default()
            })
            .await
            .unwrap()
    }
}

/// Three members and the founder (an anchor), all online.
async fn community() -> (World, Node, Node, Node, Node) {
    let w = World::new();
    let (a, b, d) = (
        DeviceKey::generate(),
        DeviceKey::generate(),
        DeviceKey::generate(),
    );
    for k in [&a, &b, &d] {
        w.admit(k).await;
    }
    let founder = w.node(w.founder.clone()).await;
    let (a, b, d) = (w.node(a).await, w.node(b).await, w.node(d).await);
    (w, founder, a, b, d)
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn file_holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|f| {
        std::fs::read(f.path()).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

#[tokio::test]
async fn a_message_to_an_online_member_is_delivered_directly_and_acknowledged() {
    let (w, _founder, a, b, _d) = community().await;
    let sent = a.send(&b, "Hast du heute Strom?").await.unwrap();
    assert_eq!(sent["output"]["delivered"], "direct");
    let event_id = sent["output"]["event_id"].as_str().unwrap().to_owned();

    // B holds it and acknowledges it on its own.
    eventually("B writes its delivered receipt", async || {
        !b.chat_events("chat.message.delivered").await.is_empty()
    })
    .await;
    let seen = b.history(Some(&a)).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["body"], "Hast du heute Strom?");
    assert_eq!(seen[0]["from"], a.key.node_id().full());
    assert_eq!(seen[0]["event_id"], event_id);
    assert!(seen[0]["read_at"].is_string(), "reading marks it read");

    // The receipts reach A by sync; A's history shows them.
    w.sync_from(&b.log, &a.log).await;
    eventually("A sees both receipts", async || {
        let mine = a.history(None).await;
        mine.len() == 1 && mine[0]["delivered_at"].is_string() && mine[0]["read_at"].is_string()
    })
    .await;
    assert_eq!(a.history(Some(&b)).await[0]["body"], "Hast du heute Strom?");
}

#[tokio::test]
async fn a_message_for_an_absent_member_is_held_by_an_anchor_that_cannot_read_it() {
    let (w, founder, a, b, d) = community().await;
    w.network.offline(b.key.node_id());
    let sent = a.send(&b, "Treffen um 18 Uhr").await.unwrap();
    assert_eq!(sent["output"]["delivered"], "forwarded");
    assert_eq!(founder.chat_events("chat.message.sent").await.len(), 1);
    assert!(b.chat_events("chat.message.sent").await.is_empty());
    // The anchor and a third member know nothing of it as a conversation
    // and the anchor's files hold no plaintext.
    assert!(founder.history(None).await.is_empty());
    w.sync_from(&founder.log, &d.log).await;
    assert!(d.history(None).await.is_empty());
    let founder_dir = w.dir.path().join(founder.key.node_id().short());
    assert!(!file_holds(&founder_dir, b"Treffen"));
    assert!(
        file_holds(&founder_dir, b"e2e1:"),
        "the sealed body is stored"
    );

    // B returns and syncs with the anchor.
    w.sync_from(&founder.log, &b.log).await;
    eventually("B reads it", async || {
        b.history(Some(&a)).await.first().map(|m| m["body"].clone())
            == Some(json!("Treffen um 18 Uhr"))
    })
    .await;
}

#[tokio::test]
async fn with_nobody_reachable_a_message_is_queued() {
    let (w, founder, a, b, _d) = community().await;
    w.network.offline(b.key.node_id());
    w.network.offline(founder.key.node_id());
    let sent = a.send(&b, "later").await.unwrap();
    assert_eq!(sent["output"]["delivered"], "queued");
    assert_eq!(a.history(Some(&b)).await.len(), 1);
}

#[tokio::test]
async fn sending_again_under_a_client_id_is_the_same_message() {
    let (_w, _founder, a, b, d) = community().await;
    let input = |to: &Node| json!({"client_id": "c-1", "recipient": to.key.node_id().full(), "body": "once"});
    let first = a.call("chat.send", input(&b)).await.unwrap();
    let again = a.call("chat.send", input(&b)).await.unwrap();
    assert_eq!(first["output"]["event_id"], again["output"]["event_id"]);
    assert_eq!(a.chat_events("chat.message.sent").await.len(), 1);
    assert_eq!(b.chat_events("chat.message.sent").await.len(), 1);
    let other = a.call("chat.send", input(&d)).await.unwrap_err();
    assert_eq!(other.code, ErrorCode::BadRequest);
    assert!(other.message.contains("client_id c-1"), "{}", other.message);
    // Two calls at once under a new client_id: still one message.
    let at_once = |to: &Node| json!({"client_id": "c-2", "recipient": to.key.node_id().full(), "body": "twice at once"});
    let (x, y) = tokio::join!(
        a.call("chat.send", at_once(&b)),
        a.call("chat.send", at_once(&b))
    );
    assert_eq!(
        x.unwrap()["output"]["event_id"],
        y.unwrap()["output"]["event_id"]
    );
    assert_eq!(a.chat_events("chat.message.sent").await.len(), 2);
}

#[tokio::test]
async fn a_replayed_envelope_is_one_message() {
    let (_w, _founder, a, b, _d) = community().await;
    a.send(&b, "only once").await.unwrap();
    let stored = a.chat_events("chat.message.sent").await;
    let report = b
        .log
        .append_received(vec![stored[0].json.clone()])
        .await
        .unwrap();
    assert_eq!((report.accepted, report.duplicates), (0, 1));
    eventually("B has it", async || !b.history(None).await.is_empty()).await;
    assert_eq!(b.history(Some(&a)).await.len(), 1);
}

/// `input` for a message from A to B, with `extra` fields replaced.
fn to(b: &Node, extra: Value) -> Value {
    let mut input = json!({"recipient": b.key.node_id().full(), "body": "hi"});
    for (k, v) in extra.as_object().unwrap() {
        input[k] = v.clone();
    }
    input
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_anything_is_written() {
    let (_w, _founder, a, b, _d) = community().await;
    // More bytes than allowed in fewer characters: the handler's check.
    let big = "ü".repeat(MAX_TEXT_BYTES / 2 + 1);
    let e = a
        .call("chat.send", to(&b, json!({"body": big})))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("input.body"), "{}", e.message);
    // More characters than allowed: the schema's.
    let long = "x".repeat(MAX_TEXT_BYTES + 1);
    let e = a
        .call("chat.send", to(&b, json!({"body": long})))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::SchemaMismatch);
    assert!(a.chat_events("chat.message.sent").await.is_empty());
}

#[tokio::test]
async fn a_message_for_a_non_member_is_not_found() {
    let (_w, _founder, a, b, _d) = community().await;
    let stranger = DeviceKey::generate().node_id().full();
    let e = a
        .call("chat.send", to(&b, json!({"recipient": stranger})))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("not a member"), "{}", e.message);
    assert!(a.chat_events("chat.message.sent").await.is_empty());
}

#[tokio::test]
async fn empty_self_addressed_and_malformed_messages_are_bad_requests() {
    let (_w, _founder, a, b, _d) = community().await;
    let me = a.key.node_id().full();
    for (input, says) in [
        (json!({"recipient": me}), "another member"),
        (json!({"recipient": "bob"}), "full node id"),
        (json!({"body": ""}), "nothing to send"),
        (
            json!({"attachments": [{"cid": "sha1:x", "name": "a"}]}),
            "input.attachments",
        ),
    ] {
        let e = a.call("chat.send", to(&b, input)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{}", e.message);
        assert!(e.message.contains(says), "{}", e.message);
    }
    let e = a
        .call("chat.history", json!({"peer": "bob"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(a.chat_events("chat.message.sent").await.is_empty());
}

#[tokio::test]
async fn a_forged_author_is_refused_by_the_log() {
    let (_w, _founder, a, b, d) = community().await;
    // D signs a message and names A as its author.
    let mut forged = Event::create(
        NewEvent {
            community_id: a.log.view().community_id,
            lamport: 100,
            event_type: "chat.message.sent",
            data: json!({"client_id": "f", "recipient": b.key.node_id().full(),
                "body": "e2e1:AAAA", "author_prev": null}),
        },
        &d.key,
    )
    .unwrap()
    .to_value();
    forged["author"] = json!(a.key.node_id());
    let report = b.log.append_received(vec![forged]).await.unwrap();
    assert_eq!(report.accepted, 0);
    assert_eq!(
        report.rejected[0].1.code,
        hearthnet_events::RejectCode::InvalidSignature
    );
    assert!(b.history(None).await.is_empty());
}

#[tokio::test]
async fn an_oversized_sealed_body_from_a_member_is_dropped_unread() {
    let (_w, _founder, _a, b, d) = community().await;
    let huge = format!(
        "{}{}",
        seal::SEALED_PREFIX,
        "A".repeat(seal::MAX_SEALED_CHARS)
    );
    let event = d
        .log
        .append_local(
            "chat.message.sent",
            json!({"client_id": "big", "recipient": b.key.node_id().full(), "body": huge}),
            &d.key,
        )
        .await
        .unwrap();
    b.log.append_received(vec![event.to_value()]).await.unwrap();
    assert!(b.history(None).await.is_empty());
    // Neither shown nor acknowledged, and the follower moves on.
    d.send(&b, "normal").await.unwrap();
    eventually("B acknowledges the normal one only", async || {
        b.chat_events("chat.message.delivered").await.len() == 1
    })
    .await;
    assert_eq!(bodies(&b.history(None).await), ["normal"]);
}

#[tokio::test]
async fn control_characters_are_refused_when_sent_and_not_shown_when_received() {
    let (_w, _founder, a, b, d) = community().await;
    // An escape sequence would rewrite the terminal `chat history` prints to.
    let e = a
        .call("chat.send", to(&b, json!({"body": "hi\u{1b}[2J"})))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("U+001B at byte 2"), "{}", e.message);
    let e = a
        .call(
            "chat.send",
            to(
                &b,
                json!({"attachments": [{"cid": Blake3Id::of(b"x").to_string(), "name": "a\rb"}]}),
            ),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("control character"), "{}", e.message);
    // A name that reads backwards: `invoiceexe.pdf` on screen.
    let e = a
        .call(
            "chat.send",
            to(&b, json!({"attachments": [{"cid": Blake3Id::of(b"x").to_string(), "name": "invoice\u{202e}fdp.exe"}]})),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("control character"), "{}", e.message);
    assert!(a.chat_events("chat.message.sent").await.is_empty());
    // A text area's CRLF is one line break; tabs stay.
    a.send(&b, "two\r\nlines\tand a tab").await.unwrap();
    assert_eq!(bodies(&a.history(None).await), ["two\nlines\tand a tab"]);

    // D's client is hostile: it seals a lone CR, which this node refuses
    // to send, and its message is not shown.
    let placement = seal::Placement {
        community: d.log.view().community_id,
        author: d.key.node_id(),
        recipient: b.key.node_id(),
        client_id: "cr",
    };
    let plaintext = serde_json::to_vec(&json!({"text": "ok\rforged line"})).unwrap();
    let body = seal::PairKeys::new(d.key.clone(), d.log.view().community_id)
        .seal(&placement, &plaintext)
        .unwrap();
    let event = d
        .log
        .append_local(
            "chat.message.sent",
            json!({"client_id": "cr", "recipient": b.key.node_id().full(), "body": body}),
            &d.key,
        )
        .await
        .unwrap();
    b.log.append_received(vec![event.to_value()]).await.unwrap();
    d.send(&b, "normal").await.unwrap();
    eventually("B acknowledges the normal one only", async || {
        b.chat_events("chat.message.delivered").await.len() == 1
    })
    .await;
    assert_eq!(bodies(&b.history(Some(&d)).await), ["normal"]);
}

fn bodies(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn attachments_travel_sealed_with_the_text() {
    let (_w, founder, a, b, _d) = community().await;
    let cid = Blake3Id::of(b"plan").to_string();
    let input = json!({"recipient": b.key.node_id().full(), "body": "Plan anbei",
        "attachments": [{"cid": cid, "name": "schaltplan.pdf"}]});
    a.call("chat.send", input).await.unwrap();
    eventually("B has it", async || !b.history(None).await.is_empty()).await;
    let got = b.history(Some(&a)).await;
    assert_eq!(
        got[0]["attachments"],
        json!([{"cid": cid, "name": "schaltplan.pdf"}])
    );
    let stored = a.chat_events("chat.message.sent").await;
    let clear = stored[0].json.to_string();
    assert!(!clear.contains("schaltplan") && !clear.contains(&cid));
    drop(founder);
}

#[tokio::test]
async fn a_copied_body_under_a_forgers_envelope_is_ignored_and_not_acknowledged() {
    let (_w, _founder, a, b, d) = community().await;
    a.send(&b, "for B only").await.unwrap();
    let original = a.chat_events("chat.message.sent").await.remove(0).event;
    // D, a member, signs its own event carrying A's sealed body to B.
    let forged = d
        .log
        .append_local(
            "chat.message.sent",
            json!({"client_id": original.data["client_id"], "recipient": b.key.node_id().full(),
                "body": original.data["body"]}),
            &d.key,
        )
        .await
        .unwrap();
    let report = b
        .log
        .append_received(vec![forged.to_value()])
        .await
        .unwrap();
    assert_eq!(report.accepted, 1);
    eventually("B acknowledges A's message", async || {
        !b.chat_events("chat.message.delivered").await.is_empty()
    })
    .await;
    let seen = b.history(None).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["from"], a.key.node_id().full());
    let receipts = b.chat_events("chat.message.delivered").await;
    assert_eq!(receipts.len(), 1);
    assert_eq!(
        receipts[0].event.data["target_event_id"],
        json!(original.event_id)
    );
    assert!(
        d.history(None)
            .await
            .iter()
            .all(|m| m["body"] != "for B only")
    );
}

#[tokio::test]
async fn only_the_nodes_own_key_sends_as_it_or_reads_its_history() {
    let (_w, _founder, a, b, d) = community().await;
    let as_b = |capability: &str, input: Value| {
        InboundCall::new(
            capability,
            Version::new(1, 0),
            json!({"input": input}),
            b.key.node_id(),
            TrustLevel::Member,
        )
    };
    let Err(e) = a.bus.call(as_b("chat.history", json!({}))) else {
        panic!("another member read A's history");
    };
    assert_eq!(e.code, ErrorCode::Unauthorized);
    let to_d = json!({"recipient": d.key.node_id().full(), "body": "signed by A?"});
    let Err(e) = a.bus.call(as_b("chat.send", to_d)) else {
        panic!("another member had A sign a message");
    };
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(a.chat_events("chat.message.sent").await.is_empty());
}

#[tokio::test]
async fn the_delivered_receipt_reaches_an_online_author_without_a_sync() {
    let (_w, _founder, a, b, _d) = community().await;
    a.send(&b, "ping").await.unwrap();
    eventually("A holds B's delivered receipt", async || {
        !a.chat_events("chat.message.delivered").await.is_empty()
    })
    .await;
    eventually("A's history shows it delivered", async || {
        a.history(None).await[0]["delivered_at"].is_string()
    })
    .await;
    assert!(a.chat_events("chat.message.read").await.is_empty());
}

#[tokio::test]
async fn one_history_call_writes_a_bounded_number_of_read_receipts() {
    let (w, _founder, a, b, _d) = community().await;
    w.network.offline(b.key.node_id());
    let n = MAX_READ_RECEIPTS_PER_CALL + 6;
    for i in 0..n {
        a.send(&b, &format!("m{i}")).await.unwrap();
    }
    w.sync_from(&a.log, &b.log).await;
    eventually("B has them all", async || b.history(None).await.len() == n).await;
    let unread = |messages: &[Value]| messages.iter().filter(|m| m["read_at"].is_null()).count();
    assert_eq!(unread(&b.history(Some(&a)).await), 6);
    assert_eq!(
        b.chat_events("chat.message.read").await.len(),
        MAX_READ_RECEIPTS_PER_CALL
    );
    assert_eq!(unread(&b.history(Some(&a)).await), 0);
    assert_eq!(b.chat_events("chat.message.read").await.len(), n);
}

/// What a subscriber was just told of is in the history at once, not only
/// once the follower got to it.
#[tokio::test]
async fn history_answers_with_everything_the_log_holds() {
    let (w, founder, a, b, _d) = community().await;
    w.network.offline(b.key.node_id());
    w.network.offline(founder.key.node_id());
    for i in 0..5 {
        a.send(&b, &format!("m{i}")).await.unwrap();
    }
    w.sync_from(&a.log, &b.log).await;
    assert_eq!(b.history(Some(&a)).await.len(), 5);
}

#[test]
fn receipts_per_peer_are_bounded_by_day() {
    let (flooder, friend) = (
        DeviceKey::generate().node_id(),
        DeviceKey::generate().node_id(),
    );
    let mut budget = ReceiptBudget::default();
    let now = Timestamp::now();
    for _ in 0..MAX_RECEIPTS_PER_PEER_PER_DAY {
        assert!(budget.take(flooder, now));
    }
    assert!(!budget.take(flooder, now));
    assert!(budget.take(friend, now));
    assert!(budget.take(flooder, now.plus_seconds(86_400)));
}

/// A member's flood of messages cannot spend the quota the recipient
/// needs for its own writes: receipts stop at three quarters of it.
#[tokio::test]
async fn receipts_leave_a_quarter_of_the_daily_quota() {
    let w = World::new();
    let (b_key, d_key) = (DeviceKey::generate(), DeviceKey::generate());
    w.admit(&b_key).await;
    w.admit(&d_key).await;
    let max = 40;
    let limits = Limits {
        max_author_events_per_day: max,
        ..Limits::default()
    };
    let b = w.node_with(b_key, limits).await;
    let d = w.node(d_key).await;
    // D may store its join and max - 1 messages in B's log.
    for i in 0..max - 1 {
        d.send(&b, &format!("flood {i}")).await.unwrap();
    }
    let allowed = max * RECEIPT_QUOTA_PERCENT / 100;
    // B's join is its one event of today before the receipts.
    eventually("B writes receipts up to its share", async || {
        b.chat_events("chat.message.delivered").await.len() as u64 == allowed - 1
    })
    .await;
    assert_eq!(b.history(None).await.len() as u64, max - 1);
    // What B must still write, it can.
    b.log
        .append_local(
            "chat.message.sent",
            json!({"client_id": "own", "recipient": d.key.node_id().full(), "body": "e2e1:x"}),
            &b.key,
        )
        .await
        .unwrap();
    assert_eq!(
        b.chat_events("chat.message.delivered").await.len() as u64,
        allowed - 1
    );
}

#[tokio::test]
async fn a_message_the_log_judges_out_leaves_the_conversation() {
    let w = World::new();
    let (t1, t2, bad, b) = (
        DeviceKey::generate(),
        DeviceKey::generate(),
        DeviceKey::generate(),
        DeviceKey::generate(),
    );
    w.admit_as(&t1, "trusted").await;
    w.admit_as(&t2, "trusted").await;
    w.admit(&bad).await;
    w.admit(&b).await;
    let (bad, b) = (w.node(bad).await, w.node(b).await);

    let known = bad.send(&b, "before the theft").await.unwrap();
    let known = known["output"]["event_id"].as_str().unwrap().to_owned();
    bad.send(&b, "after the theft").await.unwrap();
    eventually("both messages reach B", async || {
        b.history(Some(&bad)).await.len() == 2
    })
    .await;

    // Three trusted members revoke the stolen key, naming the last event
    // they know was really its owner's: what it signed later counts nowhere.
    let intent = json!({
        "target_node_id": bad.key.node_id(), "reason": "key stolen",
        "target_last_event_id": known, "client_id": "revocation-1",
    });
    let payload = hearthnet_events::cosigned_payload("community.member.revoked", &intent);
    let mut data = intent;
    data["co_signers"] = json!([&w.founder, &t1, &t2]
        .iter()
        .map(|k| json!({"node_id": k.node_id(), "signature": k.sign_canonical(&payload).unwrap()}))
        .collect::<Vec<_>>());
    w.founder_log
        .append_local("community.member.revoked", data, &w.founder)
        .await
        .unwrap();
    w.sync_from(&w.founder_log, &b.log).await;

    eventually("the later message leaves B's conversation", async || {
        bodies(&b.history(Some(&bad)).await) == ["before the theft"]
    })
    .await;
    assert!(b.log.view().is_revoked(&bad.key.node_id()));
}

#[tokio::test]
async fn a_conversation_is_read_without_receipts_or_marked_read_up_to_one_message() {
    let (_w, _founder, a, b, d) = community().await;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let sent = a.send(&b, text).await.unwrap();
        ids.push(sent["output"]["event_id"].as_str().unwrap().to_owned());
    }
    eventually("B has them", async || b.history(None).await.len() == 3).await;
    let peer = a.key.node_id().full();
    // Shown, as a page in a background tab would: nothing marked read.
    let shown = b
        .call("chat.history", json!({"peer": peer, "mark_read": false}))
        .await
        .unwrap();
    assert_eq!(shown["output"]["messages"].as_array().unwrap().len(), 3);
    assert_eq!(shown["meta"]["marked_read"], 0);
    assert!(b.chat_events("chat.message.read").await.is_empty());
    // Read up to the second: the third stays unread, whatever is shown.
    let marked = b
        .call(
            "chat.history",
            json!({"peer": peer, "read_up_to": ids[1], "limit": 1}),
        )
        .await
        .unwrap();
    assert_eq!(marked["meta"]["marked_read"], 2);
    let read: Vec<bool> = b
        .call("chat.history", json!({"peer": peer, "mark_read": false}))
        .await
        .unwrap()["output"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["read_at"].is_string())
        .collect();
    assert_eq!(read, [true, true, false]);
    // A message of another conversation, an unknown id, or a contradiction.
    let to_d = d.send(&b, "from d").await.unwrap();
    let other = to_d["output"]["event_id"].as_str().unwrap();
    for (input, code) in [
        (
            json!({"peer": peer, "read_up_to": other}),
            ErrorCode::NotFound,
        ),
        (
            json!({"peer": peer, "read_up_to": "f".repeat(64)}),
            ErrorCode::NotFound,
        ),
        (json!({"read_up_to": ids[2]}), ErrorCode::BadRequest),
        (
            json!({"peer": peer, "read_up_to": ids[2], "mark_read": false}),
            ErrorCode::BadRequest,
        ),
        (
            json!({"peer": peer, "read_up_to": "f".repeat(65)}),
            ErrorCode::SchemaMismatch,
        ),
    ] {
        let e = b.call("chat.history", input.clone()).await.unwrap_err();
        assert_eq!(e.code, code, "{input}: {}", e.message);
    }
    assert_eq!(b.chat_events("chat.message.read").await.len(), 2);
}
