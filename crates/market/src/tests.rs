#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use super::*;
use hearthnet_base::sign_value;
use hearthnet_bus::{BusSettings, InboundCall, Version};
use hearthnet_events::{Limits, LogPaths};
use hearthnet_identity::{CommunityPolicy, Genesis};

struct Node {
    bus: Arc<Bus>,
    log: EventLog,
    key: DeviceKey,
    market: Arc<MarketService>,
    dir: tempfile::TempDir,
    community: hearthnet_base::CommunityId,
}

const TTL: Ttl = Ttl {
    default_seconds: 7 * 86_400,
    max_seconds: 30 * 86_400,
};

async fn node() -> Node {
    node_with(TTL).await
}

async fn node_with(ttl: Ttl) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let key = DeviceKey::generate();
    let genesis = Genesis::create(&key, "t", CommunityPolicy::default()).unwrap();
    let community = genesis.manifest.community_id;
    let log = EventLog::open(
        LogPaths::in_state_dir(&dir.path().join("state")),
        community,
        Limits::default(),
        Some(genesis.created_event.to_value()),
        None,
    )
    .unwrap();
    let bus = Arc::new(Bus::new(
        key.node_id(),
        BusSettings::default(),
        Arc::default(),
    ));
    let market = Arc::new(
        MarketService::new(
            &dir.path().join("state"),
            log.clone(),
            key.clone(),
            Arc::downgrade(&bus),
            ttl,
        )
        .unwrap(),
    );
    bus.register(market.clone()).unwrap();
    market.catch_up().await.unwrap();
    Node {
        bus,
        log,
        key,
        market,
        dir,
        community,
    }
}

impl Node {
    async fn call(&self, capability: &str, input: Value) -> Result<Value, CallError> {
        let body = json!({"params": {}, "input": input});
        let call = InboundCall::new(
            capability,
            Version::new(1, 0),
            body,
            self.key.node_id(),
            TrustLevel::Anchor,
        );
        self.bus.call(call)?.outcome().await
    }

    async fn post(&self, client_id: &str, title: &str, extra: Value) -> Value {
        let mut input = json!({"client_id": client_id, "category": "offer", "title": title,
                               "body": "abzugeben"});
        for (k, v) in extra.as_object().into_iter().flatten() {
            input[k] = v.clone();
        }
        self.call(POST, input).await.unwrap()["output"].clone()
    }

    async fn titles(&self, input: Value) -> Vec<String> {
        let listed = self.call(LIST, input).await.unwrap();
        listed["output"]["posts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["title"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn events(&self, event_type: &str) -> usize {
        self.log
            .query(Query {
                event_type: Some(event_type.into()),
                ..Query::default()
            })
            .await
            .unwrap()
            .len()
    }

    /// A signed event by `key`, stamped `age` seconds ago.
    fn event(&self, key: &DeviceKey, lamport: u64, age: i64, kind: &str, mut data: Value) -> Value {
        data["author_prev"] = Value::Null;
        let mut unsigned = json!({
            "schema_version": 1, "lamport": lamport,
            "wall_clock": Timestamp::now().plus_seconds(-age), "community_id": self.community,
            "author": key.node_id(), "event_type": kind, "data": data,
        });
        // The id bound to the content, as our writers bind it: where links
        // are required an unbound id counts nowhere.
        let hash =
            hearthnet_base::Blake3Id::of(&hearthnet_base::to_canonical_bytes(&unsigned).unwrap());
        let mut random = [0u8; 16];
        random[6..].copy_from_slice(&hash.as_bytes()[..10]);
        let id = ulid::Ulid::from_parts(
            ulid::Ulid::new().timestamp_ms(),
            u128::from_be_bytes(random),
        );
        unsigned["event_id"] = json!(id.to_string());
        sign_value(unsigned, key).unwrap()
    }

    /// Admit a new member; its key.
    async fn member(&self) -> DeviceKey {
        let who = DeviceKey::generate();
        let head = self.log.view().head;
        let invite = self.event(
            &self.key,
            head + 1,
            0,
            "community.member.invited",
            json!({"invitee_node_id": who.node_id(), "display_name": "m",
                   "initial_level": "member", "expires_at": Timestamp::now().plus_seconds(600)}),
        );
        let joined = self.event(
            &who,
            head + 2,
            0,
            "community.member.joined",
            json!({"invite_event_id": invite["event_id"], "node_manifest": {}}),
        );
        let report = self.log.append_received(vec![invite, joined]).await;
        assert_eq!(report.unwrap().accepted, 2);
        who
    }

    /// A post by `key` stamped `age` seconds ago lasting `ttl`, taken in.
    async fn received_post(&self, key: &DeviceKey, title: &str, age: i64, ttl: u64) -> String {
        let post = self.event(
            key,
            self.log.view().head + 1,
            age,
            POST_CREATED,
            json!({"client_id": title, "category": "request", "title": title,
                   "body": "", "ttl_seconds": ttl}),
        );
        let report = self.log.append_received(vec![post.clone()]).await;
        assert_eq!(report.unwrap().accepted, 1);
        self.market.catch_up().await.unwrap();
        post["event_id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn a_post_is_listed_and_idempotent_by_client_id() {
    let n = node().await;
    let first = n
        .post(
            "c1",
            "Wasserkanister",
            json!({"tags": ["Wasser", "notfall", "wasser"],
                   "location": {"lat": 51.5, "lng": 6.2, "label": "Issum"}}),
        )
        .await;
    let again = n.post("c1", "Wasserkanister", json!({})).await;
    assert_eq!(first, again, "the same client_id answers the same event");
    assert_eq!(n.events(POST_CREATED).await, 1);
    let listed = n.call(LIST, json!({})).await.unwrap();
    let post = &listed["output"]["posts"][0];
    assert_eq!(post["event_id"], first["event_id"]);
    assert_eq!(post["author"], json!(n.key.node_id()));
    assert_eq!(post["tags"], json!(["wasser", "notfall"]));
    assert_eq!(post["location"]["label"], "Issum");
    let created = Timestamp::parse(post["created_at"].as_str().unwrap()).unwrap();
    let expires = Timestamp::parse(post["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires.unix() - created.unix(),
        7 * 86_400,
        "the default TTL"
    );
    assert_eq!(listed["output"]["max_lamport"], first["lamport"]);
}

#[tokio::test]
async fn bad_posts_are_refused_naming_the_field_and_nothing_is_written() {
    let n = node().await;
    let many_tags: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
    for (extra, named) in [
        (json!({"title": "x".repeat(201)}), "input.title"),
        (json!({"title": ""}), "input.title"),
        (json!({"body": "x".repeat(4_001)}), "input.body"),
        (json!({"tags": many_tags}), "input.tags has 17 tags"),
        (json!({"tags": ["zwei worte"]}), "input.tags[0]"),
        (json!({"ttl_seconds": 30 * 86_400 + 1}), "input.ttl_seconds"),
        (json!({"ttl_seconds": 0}), "input.ttl_seconds"),
        (
            json!({"location": {"lat": 100, "lng": 0}}),
            "input.location.lat",
        ),
        (json!({"location": "Issum"}), "input.location"),
        (json!({"category": "sale"}), "input.category"),
        (json!({"client_id": ""}), "input.client_id"),
    ] {
        let mut input = json!({"client_id": "c", "category": "offer", "title": "t"});
        for (k, v) in extra.as_object().unwrap() {
            input[k] = v.clone();
        }
        let refused = n.call(POST, input).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadRequest, "{extra}: {refused:?}");
        assert!(
            refused.message.starts_with(named),
            "{extra}: {}",
            refused.message
        );
    }
    assert_eq!(n.events(POST_CREATED).await, 0);
}

#[tokio::test]
async fn a_ttl_over_the_nodes_own_maximum_is_refused() {
    let n = node_with(Ttl {
        default_seconds: 3_600,
        max_seconds: 86_400,
    })
    .await;
    let input = json!({"client_id": "c", "category": "info", "title": "t", "ttl_seconds": 86_401});
    let refused = n.call(POST, input).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::BadRequest);
    assert!(refused.message.contains("at most 86400"), "{refused:?}");
    let listed = n.post("d", "t", json!({})).await;
    let post = n.call(LIST, json!({})).await.unwrap()["output"]["posts"][0].clone();
    assert_eq!(post["event_id"], listed["event_id"]);
    let created = Timestamp::parse(post["created_at"].as_str().unwrap()).unwrap();
    let expires = Timestamp::parse(post["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires.unix() - created.unix(),
        3_600,
        "the node's default TTL"
    );
}

#[tokio::test]
async fn list_filters_by_category_tags_and_lamport_newest_first() {
    let n = node().await;
    let a = n.post("a", "Kanister", json!({"tags": ["wasser"]})).await;
    n.post(
        "b",
        "Brot",
        json!({"category": "request", "tags": ["essen"]}),
    )
    .await;
    n.post("c", "Pumpe", json!({"tags": ["wasser", "strom"]}))
        .await;
    assert_eq!(n.titles(json!({})).await, ["Pumpe", "Brot", "Kanister"]);
    assert_eq!(n.titles(json!({"category": "request"})).await, ["Brot"]);
    assert_eq!(
        n.titles(json!({"tags": ["WASSER"]})).await,
        ["Pumpe", "Kanister"]
    );
    assert_eq!(
        n.titles(json!({"tags": ["wasser", "strom"]})).await,
        ["Pumpe"]
    );
    assert_eq!(
        n.titles(json!({"since_lamport": a["lamport"]})).await,
        ["Pumpe", "Brot"]
    );
    assert_eq!(n.titles(json!({"limit": 1})).await, ["Pumpe"]);
    for bad in [
        json!({"limit": 501}),
        json!({"limit": 0}),
        json!({"category": "x"}),
    ] {
        let refused = n.call(LIST, bad.clone()).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadRequest, "{bad}");
    }
}

#[tokio::test]
async fn the_author_expires_a_post_once_and_it_is_gone() {
    let n = node().await;
    let post = n.post("p", "Kanister", json!({})).await;
    let expire = |client_id: &str| json!({"client_id": client_id, "event_id": post["event_id"], "reason": "fulfilled"});
    let expired = n.call(EXPIRE, expire("e1")).await.unwrap();
    let again = n.call(EXPIRE, expire("e1")).await.unwrap();
    assert_eq!(
        expired["output"], again["output"],
        "idempotent by client_id"
    );
    assert!(n.titles(json!({})).await.is_empty());
    let twice = n.call(EXPIRE, expire("e2")).await.unwrap_err();
    assert_eq!(twice.code, ErrorCode::NotFound);
    assert!(twice.message.contains("already expired"), "{twice:?}");
    let unknown = json!({"client_id": "e3", "event_id": "01NOSUCHPOST", "reason": "withdrawn"});
    assert_eq!(
        n.call(EXPIRE, unknown).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let reason = json!({"client_id": "e4", "event_id": post["event_id"], "reason": "spite"});
    assert_eq!(
        n.call(EXPIRE, reason).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    // The first expiry's client_id for another post: refused, not answered
    // with the first expiry while the second post stays up.
    let other = n.post("q", "Leiter", json!({})).await;
    let reused = json!({"client_id": "e1", "event_id": other["event_id"], "reason": "fulfilled"});
    let refused = n.call(EXPIRE, reused).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::BadRequest);
    assert!(refused.message.contains("already used"), "{refused:?}");
    assert_eq!(n.titles(json!({})).await, ["Leiter"]);
    assert_eq!(n.events(POST_EXPIRED).await, 1);
}

#[tokio::test]
async fn anothers_post_is_expired_only_as_stale_once_lapsed() {
    let n = node().await;
    let member = n.member().await;
    let fresh = n.received_post(&member, "frisch", 0, 3_600).await;
    let lapsed = n.received_post(&member, "abgelaufen", 120, 60).await;
    let expire = |id: &str, reason: &str| json!({"client_id": format!("{id}{reason}"), "event_id": id, "reason": reason});
    // This node's key is the founder's, an anchor: still not the author.
    for (id, reason) in [
        (&fresh, "stale"),
        (&fresh, "withdrawn"),
        (&lapsed, "fulfilled"),
    ] {
        let refused = n.call(EXPIRE, expire(id, reason)).await.unwrap_err();
        assert_eq!(
            refused.code,
            ErrorCode::Unauthorized,
            "{reason}: {refused:?}"
        );
    }
    assert_eq!(
        n.events(POST_EXPIRED).await,
        0,
        "nothing refused was written"
    );
    n.call(EXPIRE, expire(&lapsed, "stale")).await.unwrap();
    assert_eq!(n.events(POST_EXPIRED).await, 1);
}

/// The sweeper expires this node's lapsed posts only, a batch a round:
/// others' lapsed posts are hidden already, and a member's lapsed posts
/// must not make every trusted node write an expiry for each (this node
/// is the founder's, an anchor). By hand, an anchor still may.
#[tokio::test]
async fn the_sweeper_expires_only_this_nodes_lapsed_posts() {
    let n = node().await;
    let member = n.member().await;
    let mine = n.received_post(&n.key, "meins", 120, 60).await;
    let theirs_recent = n.received_post(&member, "kürzlich", 120, 60).await;
    let theirs_old = n.received_post(&member, "längst", 7_200, 60).await;
    n.market.sweep().await;
    n.market.catch_up().await.unwrap();
    let expired = |n: &Node| {
        let log = n.log.clone();
        async move {
            log.query(Query {
                event_type: Some(POST_EXPIRED.into()),
                ..Query::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.event.data["target_event_id"].as_str().unwrap().to_owned())
            .collect::<Vec<String>>()
        }
    };
    assert_eq!(expired(&n).await, [mine]);
    assert!(
        n.titles(json!({})).await.is_empty(),
        "lapsed posts are hidden"
    );
    n.market.sweep().await;
    assert_eq!(
        n.events(POST_EXPIRED).await,
        1,
        "a second sweep writes nothing"
    );
    for theirs in [&theirs_recent, &theirs_old] {
        let input = json!({"client_id": format!("by-hand-{theirs}"), "event_id": theirs, "reason": "stale"});
        n.call(EXPIRE, input).await.unwrap();
    }
    assert_eq!(n.events(POST_EXPIRED).await, 3);
}

#[tokio::test]
async fn the_sweeper_expires_a_bounded_batch_a_round() {
    let n = node().await;
    let extra = 3;
    for i in 0..SWEEP_BATCH + extra {
        n.received_post(&n.key, &format!("p{i}"), 120, 60).await;
    }
    n.market.sweep().await;
    assert_eq!(n.events(POST_EXPIRED).await, SWEEP_BATCH);
    n.market.catch_up().await.unwrap();
    n.market.sweep().await;
    assert_eq!(n.events(POST_EXPIRED).await, SWEEP_BATCH + extra);
}

#[tokio::test]
async fn search_without_an_embedding_provider_ranks_by_full_text_and_says_so() {
    let n = node().await;
    n.post(
        "a",
        "Wasserkanister 20 l",
        json!({"body": "für den Notfall"}),
    )
    .await;
    n.post(
        "b",
        "Fahrrad",
        json!({"body": "mit Korb", "tags": ["wasserdicht"]}),
    )
    .await;
    n.post("c", "Brot", json!({"body": "frisch gebacken"}))
        .await;
    let found = n
        .call(SEARCH, json!({"query": "Notfall Wasserkanister", "k": 5}))
        .await
        .unwrap();
    assert_eq!(found["meta"]["retrieval"], "full_text", "{found}");
    assert!(found["meta"]["embedding_error"].is_string());
    let posts = found["output"]["posts"].as_array().unwrap();
    assert_eq!(posts.len(), 1, "{found}");
    assert_eq!(posts[0]["title"], "Wasserkanister 20 l");
    assert!(posts[0]["score"].as_f64().unwrap() > 0.0);
    let too_long = json!({"query": "x".repeat(MAX_QUERY_CHARS + 1)});
    assert_eq!(
        n.call(SEARCH, too_long).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
    let k = json!({"query": "x", "k": MAX_K + 1});
    assert_eq!(
        n.call(SEARCH, k).await.unwrap_err().code,
        ErrorCode::BadRequest
    );
}

#[tokio::test]
async fn a_lost_index_is_rebuilt_from_the_log() {
    let n = node().await;
    n.post("a", "Kanister", json!({})).await;
    let post = n.post("b", "Brot", json!({})).await;
    n.call(
        EXPIRE,
        json!({"client_id": "e", "event_id": post["event_id"], "reason": "withdrawn"}),
    )
    .await
    .unwrap();
    let state = n.dir.path().join("state");
    drop(n.market);
    // Lost, then overwritten with bytes that are no database at all.
    for damage in ["lost", "garbage"] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(state.join(format!("{INDEX_FILE}{suffix}")));
        }
        if damage == "garbage" {
            std::fs::write(state.join(INDEX_FILE), vec![0x5a; 8192]).unwrap();
        }
        let rebuilt = MarketService::new(
            &state,
            n.log.clone(),
            n.key.clone(),
            Arc::downgrade(&n.bus),
            TTL,
        )
        .unwrap();
        rebuilt.catch_up().await.unwrap();
        let filter = Filter::default();
        let posts = rebuilt
            .index
            .list(&filter, Timestamp::now().unix(), 10)
            .unwrap();
        let titles: Vec<&str> = posts.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(
            titles,
            ["Kanister"],
            "{damage}: the expired one stays expired"
        );
    }
}

#[test]
fn cosine_is_scale_free_and_zero_for_a_zero_vector() {
    assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-9);
    assert!(cosine(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-9);
    assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
}

#[tokio::test]
async fn calls_wait_for_the_index_to_catch_up_and_say_so_when_it_does_not_in_time() {
    let n = node().await;
    let fresh = Arc::new(
        MarketService::new(
            &n.dir.path().join("fresh"),
            n.log.clone(),
            n.key.clone(),
            Arc::downgrade(&n.bus),
            TTL,
        )
        .unwrap(),
    );
    let bus = Bus::new(n.key.node_id(), BusSettings::default(), Arc::default());
    bus.register(fresh.clone()).unwrap();
    let call = InboundCall {
        timeout: Some(Duration::from_millis(200)),
        ..InboundCall::new(
            LIST,
            Version::new(1, 0),
            json!({"input": {}}),
            n.key.node_id(),
            TrustLevel::Anchor,
        )
    };
    let refused = bus.call(call).unwrap().outcome().await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Partition, "{refused:?}");
    assert!(refused.message.contains("still being built"), "{refused:?}");
}

#[tokio::test]
async fn long_lapsed_posts_leave_the_index_and_its_text_search() {
    let n = node().await;
    n.post("a", "Kanister", json!({})).await;
    let far = Timestamp::now().unix() + 365 * 86_400;
    assert_eq!(n.market.index.forget_lapsed(far).unwrap(), 1);
    n.post("b", "Kanister zwei", json!({})).await;
    let now = Timestamp::now().unix();
    let found = n
        .market
        .index
        .full_text("\"Kanister\"", &[], now, 10)
        .unwrap();
    let titles: Vec<&str> = found.iter().map(|(p, _)| p.title.as_str()).collect();
    assert_eq!(titles, ["Kanister zwei"]);
    assert_eq!(n.market.index.forget_lapsed(now).unwrap(), 0);
}

/// A node with as many live posts as one author may have is refused
/// another, before anything is written (the log would hold it aside);
/// the same post again still answers.
#[tokio::test]
async fn a_post_beyond_the_live_cap_is_refused_before_it_is_written() {
    let n = node().await;
    let head = n.log.view().head;
    let posts: Vec<Value> = (0..rules::MAX_LIVE_POSTS_PER_AUTHOR as u64)
        .map(|i| {
            n.event(
                &n.key,
                head + 1 + i,
                0,
                POST_CREATED,
                json!({"client_id": format!("p{i}"), "category": "offer", "title": "x",
                       "body": "", "ttl_seconds": 3_600}),
            )
        })
        .collect();
    let report = n.log.append_received(posts).await.unwrap();
    assert_eq!(report.accepted, rules::MAX_LIVE_POSTS_PER_AUTHOR as u64);
    n.market.catch_up().await.unwrap();
    let input = json!({"client_id": "one-more", "category": "offer", "title": "zu viel"});
    let refused = n.call(POST, input).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::CapacityExceeded, "{refused:?}");
    assert!(
        refused.message.contains("live posts"),
        "{}",
        refused.message
    );
    assert_eq!(
        n.events(POST_CREATED).await,
        rules::MAX_LIVE_POSTS_PER_AUTHOR
    );
    let again = json!({"client_id": "p0", "category": "offer", "title": "x"});
    n.call(POST, again).await.unwrap();
}

/// An update the log accepts is shown, in text and search alike.
#[tokio::test]
async fn an_update_of_a_post_is_shown() {
    let n = node().await;
    let post = n.post("c1", "Wasserkanister", json!({})).await;
    n.log
        .append_local(
            POST_UPDATED,
            json!({"client_id": "u1", "target_event_id": post["event_id"],
                   "fields": {"title": "Regentonne", "tags": ["garten"]}}),
            &n.key,
        )
        .await
        .unwrap();
    n.market.catch_up().await.unwrap();
    assert_eq!(n.titles(json!({})).await, ["Regentonne"]);
    assert_eq!(n.titles(json!({"tags": ["garten"]})).await, ["Regentonne"]);
    let found = n
        .call(SEARCH, json!({"query": "Regentonne"}))
        .await
        .unwrap();
    assert_eq!(found["output"]["posts"][0]["event_id"], post["event_id"]);
    let stale = n
        .call(SEARCH, json!({"query": "Wasserkanister"}))
        .await
        .unwrap();
    assert_eq!(stale["output"]["posts"], json!([]));
}

/// A post that counted and is judged out when earlier ones arrive (here
/// over the live-post cap) leaves the index.
#[tokio::test]
async fn a_post_judged_out_later_leaves_the_index() {
    let n = node().await;
    let head = n.log.view().head;
    let cap = rules::MAX_LIVE_POSTS_PER_AUTHOR as u64;
    let post = |lamport: u64, title: &str| {
        n.event(
            &n.key,
            lamport,
            0,
            POST_CREATED,
            json!({"client_id": title, "category": "offer", "title": title,
                   "body": "", "ttl_seconds": 3_600}),
        )
    };
    let last = post(head + 1_000, "zuletzt");
    assert_eq!(n.log.append_received(vec![last]).await.unwrap().accepted, 1);
    n.market.catch_up().await.unwrap();
    assert_eq!(n.titles(json!({})).await, ["zuletzt"]);
    let earlier: Vec<Value> = (1..=cap)
        .map(|i| post(head + i, &format!("p{i}")))
        .collect();
    n.log.append_received(earlier).await.unwrap();
    n.market.catch_up().await.unwrap();
    let shown = n.titles(json!({"limit": MAX_LIMIT})).await;
    assert_eq!(shown.len() as u64, cap);
    assert!(!shown.contains(&"zuletzt".to_owned()));
}

/// Another envelope under a known id (the log kept it instead of the
/// first) replaces the row; the same envelope again changes nothing.
#[test]
fn another_envelope_under_a_known_id_replaces_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(&dir.path().join(INDEX_FILE)).unwrap();
    let key = DeviceKey::generate();
    let first = Event::create(
        hearthnet_base::event::NewEvent {
            community_id: hearthnet_base::CommunityId::of_root(key.node_id()),
            lamport: 5,
            event_type: POST_CREATED,
            data: json!({"client_id": "c", "category": "offer", "title": "erste",
                         "body": "", "ttl_seconds": 3_600}),
        },
        &key,
    )
    .unwrap();
    let mut second = first.clone();
    second.data["title"] = json!("zweite");
    second.signature = "another signature".into();
    let now = Timestamp::now().unix();
    let titles = |index: &Index| -> Vec<String> {
        let posts = index.list(&Filter::default(), now, 10).unwrap();
        posts.into_iter().map(|p| p.title).collect()
    };
    index.apply(std::slice::from_ref(&first), None).unwrap();
    index.apply(&[first], None).unwrap();
    assert_eq!(titles(&index), ["erste"]);
    index.apply(&[second], None).unwrap();
    assert_eq!(titles(&index), ["zweite"]);
    let fts = hearthnet_rag::store::fts_query("erste", 4);
    assert!(index.full_text(&fts, &[], now, 10).unwrap().is_empty());
}
