//! The attacks of issue 13 on the membership rules, over the real wire: a
//! `hearthnet` node process, validly signed events pushed by a member over
//! mutual TLS (`POST /sync/v1/events`), and for each the refusal reason in
//! the reply, nothing counted or served (the node's count, `/sync/v2/fetch`
//! by envelope digest, `/community/manifest`, the log read after the node
//! stopped), and the victim's access intact.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::collections::BTreeSet;

use common::community::{open_log, rejected_reasons, state_dir};
use common::{Sandbox, peer_client};
use hearthnet_base::event::{Event, NewEvent};
use hearthnet_base::{Blake3Id, CommunityId, DeviceKey, NodeId, Timestamp};
use hearthnet_wire::peer::Hex;
use serde_json::{Value, json};

struct Member {
    sb: Sandbox,
    key: DeviceKey,
    /// Its `community.member.joined` event (`None` for the founder).
    joined: Option<Value>,
}

/// The ids of the events that count in the log of `sb` (node stopped).
fn counted_ids(sb: &Sandbox, community: CommunityId) -> BTreeSet<String> {
    open_log(sb, community)
        .query_blocking(hearthnet_events::Query::default())
        .unwrap()
        .into_iter()
        .map(|e| e.event.event_id)
        .collect()
}

/// A founder and one more member per entry of `levels`, invited by the
/// founder at that level, set up offline: the founder's community files are
/// copied to each, and every log holds all the invites and joins (as after
/// onboarding). Returns the community and the members, founder first.
fn found(levels: &[&str]) -> (CommunityId, Vec<Member>) {
    let founder = Sandbox::new();
    founder.init_non_interactive("founder");
    let founder_key = founder.key();
    let community = CommunityId::of_root(founder_key.node_id());
    let mut members = vec![Member {
        sb: founder,
        key: founder_key.clone(),
        joined: None,
    }];
    let mut admissions = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        let sb = Sandbox::new();
        let (key, _) = hearthnet_identity::KeyStore::new(sb.data_dir().join("keys"))
            .load_or_create()
            .unwrap();
        std::fs::create_dir_all(sb.config_file().parent().unwrap()).unwrap();
        std::fs::write(
            sb.config_file(),
            format!(
                "[identity]\ndisplay_name = \"member{i}\"\n\n[community]\ncommunity_id = \"{}\"\n",
                community.full()
            ),
        )
        .unwrap();
        let from = state_dir(&members[0].sb, community);
        let to = state_dir(&sb, community);
        std::fs::create_dir_all(&to).unwrap();
        for f in ["manifest.json", "genesis.json"] {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
        let at = 2 * i as u64 + 1;
        let invite = invite(community, &founder_key, at, &key.node_id(), level);
        let joined = join(community, &key, at + 1, &invite);
        admissions.push(invite);
        admissions.push(joined.clone());
        members.push(Member {
            sb,
            key,
            joined: Some(joined),
        });
    }
    for m in &members {
        let report = open_log(&m.sb, community)
            .append_received_blocking(admissions.clone())
            .unwrap();
        assert_eq!(report.accepted, admissions.len() as u64, "{report:?}");
    }
    (community, members)
}

/// A signed event of `event_type` by `key` at `lamport`.
fn event(
    community: CommunityId,
    key: &DeviceKey,
    lamport: u64,
    event_type: &str,
    mut data: Value,
) -> Value {
    // Linked as our writers link, as the author's first event unless the
    // caller linked it.
    if let Some(fields) = data.as_object_mut() {
        fields.entry("author_prev").or_insert(Value::Null);
    }
    Event::create(
        NewEvent {
            community_id: community,
            lamport,
            event_type,
            data,
        },
        key,
    )
    .unwrap()
    .to_value()
}

fn invite(
    community: CommunityId,
    inviter: &DeviceKey,
    lamport: u64,
    invitee: &NodeId,
    level: &str,
) -> Value {
    event(
        community,
        inviter,
        lamport,
        "community.member.invited",
        invite_data(invitee, level),
    )
}

fn invite_data(invitee: &NodeId, level: &str) -> Value {
    json!({"invitee_node_id": invitee, "display_name": "m", "initial_level": level,
           "expires_at": Timestamp::now().plus_seconds(3600)})
}

/// `data` with the author's link to its previous event `prev`.
fn linked(mut data: Value, prev: &Value) -> Value {
    data["author_prev"] = prev["event_id"].clone();
    data
}

fn join(community: CommunityId, key: &DeviceKey, lamport: u64, invite: &Value) -> Value {
    event(
        community,
        key,
        lamport,
        "community.member.joined",
        json!({"invite_event_id": invite["event_id"], "node_manifest": {}}),
    )
}

fn post_data(title: &str) -> Value {
    json!({"client_id": title, "category": "offer", "title": title, "body": "b", "ttl_seconds": 60})
}

/// A signed `market.post.created` by `key` at `lamport`.
fn market_post(community: CommunityId, key: &DeviceKey, lamport: u64, title: &str) -> Value {
    event(
        community,
        key,
        lamport,
        "market.post.created",
        post_data(title),
    )
}

/// `intent` co-signed by `signers` as the `data` of a co-signed change of
/// `event_type` (the signatures cover `cosigned_payload`). An intent
/// without a `client_id` gets one derived from it, so the same intent
/// signed twice is the same change.
fn cosigned(event_type: &str, intent: &Value, signers: &[&DeviceKey]) -> Value {
    let mut data = intent.clone();
    if data.get("client_id").is_none() {
        data["client_id"] = json!(hearthnet_base::Blake3Id::of(intent.to_string().as_bytes()));
    }
    let payload = hearthnet_events::cosigned_payload(event_type, &data);
    data["co_signers"] = signers
        .iter()
        .map(|k| json!({"node_id": k.node_id(), "signature": k.sign_canonical(&payload).unwrap()}))
        .collect();
    data
}

/// `events` pushed by `key` to the node at `addr` over mutual TLS, as a
/// signed request: the answer's body.
fn push(addr: &str, key: &DeviceKey, community: CommunityId, events: &[&Value]) -> Value {
    common::runtime()
        .block_on(async {
            peer_client(key, community)
                .post(addr, None, "/sync/v1/events", &json!({"events": events}))
                .await
                .map(|reply| reply.body)
        })
        .unwrap()
}

/// The reason `report` gives for the event `e`, if it rejected it.
fn reason_for(report: &Value, e: &Value) -> Option<String> {
    report["rejected_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["event_id"] == e["event_id"])
        .map(|r| r["reason"].as_str().unwrap().to_owned())
}

/// The envelope's digest as sync names it: BLAKE3 of its canonical JSON.
fn digest(envelope: &Value) -> String {
    let bytes = hearthnet_base::to_canonical_bytes(envelope).unwrap();
    Hex(Blake3Id::of(&bytes).as_bytes().to_vec()).encode()
}

/// What the node at `addr` serves to a member (`key`) asking for exactly
/// these envelopes by digest (`/sync/v2/fetch`, as reconciliation does).
fn fetch(addr: &str, key: &DeviceKey, community: CommunityId, envelopes: &[&Value]) -> Vec<Value> {
    let hashes: Vec<String> = envelopes.iter().map(|e| digest(e)).collect();
    let body = common::runtime()
        .block_on(async {
            peer_client(key, community)
                .post(addr, None, "/sync/v2/fetch", &json!({"hashes": hashes}))
                .await
                .map(|reply| reply.body)
        })
        .unwrap();
    body["events"].as_array().unwrap().clone()
}

/// The community manifest the node at `addr` serves to member `key`.
fn community_manifest(addr: &str, key: &DeviceKey, community: CommunityId) -> Value {
    common::runtime()
        .block_on(async {
            peer_client(key, community)
                .get(addr, None, "/community/manifest")
                .await
                .map(|reply| reply.body)
        })
        .unwrap()
}

/// The level `manifest` gives `node`, if it lists it as a member.
fn level_in(manifest: &Value, node: &NodeId) -> Option<String> {
    let id = json!(node);
    manifest["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node_id"] == id)
        .map(|m| m["level"].as_str().unwrap().to_owned())
}

/// What `manifest` says of `node`: `revoked`, its level, or `None` for a
/// stranger (revoked members stay in `members` with their last level).
fn standing(manifest: &Value, node: &NodeId) -> Option<String> {
    let id = json!(node);
    let revoked = manifest["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["node_id"] == id);
    if revoked {
        return Some("revoked".into());
    }
    level_in(manifest, node)
}

/// Count and head of the running node of `sb`, from `status --json`.
fn count_and_head(sb: &Sandbox) -> (u64, u64) {
    let status = sb.status().expect("the node answers");
    (status.events.count, status.events.head_lamport)
}

#[test]
fn escalation_by_invite_self_promotion_or_a_disguised_demotion_is_refused() {
    let (community, members) = found(&["member", "trusted", "trusted"]);
    let [founder, plain, trusted, deputy] = &members[..] else {
        unreachable!()
    };
    let _node = founder.sb.start_node(&[]);
    let addr = founder.sb.peer_addr();
    let (count0, head) = count_and_head(&founder.sb);

    // (a) A plain member invites a new key at `trusted`; the key joins.
    let newcomer = DeviceKey::generate();
    let high_invite = invite(
        community,
        &plain.key,
        head + 1,
        &newcomer.node_id(),
        "trusted",
    );
    let high_join = join(community, &newcomer, head + 2, &high_invite);
    let reply = push(&addr, &plain.key, community, &[&high_invite, &high_join]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(
        reason_for(&reply, &high_invite).as_deref(),
        Some("unauthorized"),
        "{reply}"
    );
    assert_eq!(
        reason_for(&reply, &high_join).as_deref(),
        Some("unauthorized"),
        "no invite, no join: {reply}"
    );

    // Nobody invites at anchor, not even the founder.
    let anchor_invite = invite(
        community,
        &founder.key,
        head + 1,
        &newcomer.node_id(),
        "anchor",
    );
    let reply = push(&addr, &founder.key, community, &[&anchor_invite]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(rejected_reasons(&reply), ["unauthorized"], "{reply}");

    // (b) A trusted member promotes itself to anchor, co-signing itself.
    let intent =
        json!({"target_node_id": trusted.key.node_id(), "new_level": "anchor", "reason": "me"});
    let self_promotion = event(
        community,
        &trusted.key,
        head + 3,
        "community.member.promoted",
        cosigned("community.member.promoted", &intent, &[&trusted.key]),
    );
    let reply = push(&addr, &trusted.key, community, &[&self_promotion]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(rejected_reasons(&reply), ["unauthorized"], "{reply}");

    // (c) A promotion "to member" aimed at the founder: a demotion in
    // disguise, which would need the demotion quorum. Tried by the trusted
    // member, and by an anchor (made so by a valid promotion, whose quorum
    // of one it would abuse).
    let intent = json!({"target_node_id": deputy.key.node_id(), "new_level": "anchor"});
    let valid_promotion = event(
        community,
        &founder.key,
        head + 4,
        "community.member.promoted",
        cosigned("community.member.promoted", &intent, &[&founder.key]),
    );
    let reply = push(&addr, &founder.key, community, &[&valid_promotion]);
    assert_eq!(
        reply["accepted"], 1,
        "the rules allow real promotions: {reply}"
    );
    let intent = json!({"target_node_id": founder.key.node_id(), "new_level": "member"});
    let by_trusted = event(
        community,
        &trusted.key,
        head + 5,
        "community.member.promoted",
        cosigned("community.member.promoted", &intent, &[&trusted.key]),
    );
    let by_anchor = event(
        community,
        &deputy.key,
        head + 5,
        "community.member.promoted",
        cosigned("community.member.promoted", &intent, &[&deputy.key]),
    );
    let reply = push(&addr, &deputy.key, community, &[&by_trusted, &by_anchor]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(
        rejected_reasons(&reply),
        ["unauthorized", "unauthorized"],
        "{reply}"
    );

    // Nothing of it counts or is served; the founder is still the anchor.
    assert_eq!(
        count_and_head(&founder.sb).0,
        count0 + 1,
        "only the valid promotion"
    );
    let refused = [
        &anchor_invite,
        &high_invite,
        &high_join,
        &self_promotion,
        &by_trusted,
        &by_anchor,
    ];
    assert!(fetch(&addr, &plain.key, community, &refused).is_empty());
    assert_eq!(
        fetch(&addr, &plain.key, community, &[&valid_promotion]).len(),
        1
    );
    let manifest = community_manifest(&addr, &plain.key, community);
    assert_eq!(
        standing(&manifest, &founder.key.node_id()).as_deref(),
        Some("anchor"),
        "{manifest}"
    );
    assert_eq!(
        level_in(&manifest, &trusted.key.node_id()).as_deref(),
        Some("trusted"),
        "{manifest}"
    );
    assert_eq!(
        level_in(&manifest, &deputy.key.node_id()).as_deref(),
        Some("anchor"),
        "{manifest}"
    );
    assert_eq!(level_in(&manifest, &newcomer.node_id()), None, "{manifest}");
    // The newcomer is no member: its TLS handshake is refused.
    let outsider = common::runtime().block_on(async {
        peer_client(&newcomer, community)
            .get(&addr, None, "/sync/v1/heads")
            .await
    });
    assert!(outsider.is_err(), "the newcomer got an answer");
    drop(_node);
    let counted = counted_ids(&founder.sb, community);
    for e in refused {
        assert!(
            !counted.contains(e["event_id"].as_str().unwrap()),
            "{e} counts"
        );
    }
}

#[test]
fn a_trusted_member_and_its_invitees_cannot_take_the_community_from_its_founder() {
    let (community, members) = found(&["trusted"]);
    let [founder, trusted] = &members[..] else {
        unreachable!()
    };
    let _node = founder.sb.start_node(&[]);
    let addr = founder.sb.peer_addr();
    let (count0, head) = count_and_head(&founder.sb);
    let (x, y) = (DeviceKey::generate(), DeviceKey::generate());

    // Accomplices at trusted: refused, only anchors invite at trusted.
    let high = invite(community, &trusted.key, head + 1, &x.node_id(), "trusted");
    let reply = push(&addr, &trusted.key, community, &[&high]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(rejected_reasons(&reply), ["unauthorized"], "{reply}");
    // At member: allowed, and both join.
    let ix = invite(community, &trusted.key, head + 2, &x.node_id(), "member");
    let iy = invite(community, &trusted.key, head + 3, &y.node_id(), "member");
    let jx = join(community, &x, head + 4, &ix);
    let jy = join(community, &y, head + 5, &iy);
    let reply = push(&addr, &trusted.key, community, &[&ix, &iy, &jx, &jy]);
    assert_eq!(reply["accepted"], 4, "{reply}");

    // The takeover: the founder revoked, or demoted, with the three
    // co-signatures the default policy asks for; pushed by an accomplice.
    let revoke_intent = json!({"target_node_id": founder.key.node_id(), "reason": "takeover"});
    let three = [&trusted.key, &x, &y];
    let revocation = event(
        community,
        &trusted.key,
        head + 6,
        "community.member.revoked",
        cosigned("community.member.revoked", &revoke_intent, &three),
    );
    let demote_intent = json!({"target_node_id": founder.key.node_id(), "new_level": "member"});
    let demotion = event(
        community,
        &trusted.key,
        head + 6,
        "community.member.demoted",
        cosigned("community.member.demoted", &demote_intent, &three),
    );
    // And the revocation authored by a member accomplice.
    let by_member = event(
        community,
        &x,
        head + 7,
        "community.member.revoked",
        cosigned("community.member.revoked", &revoke_intent, &three),
    );
    let reply = push(&addr, &x, community, &[&revocation, &demotion, &by_member]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(
        rejected_reasons(&reply),
        ["unauthorized", "unauthorized", "unauthorized"],
        "{reply}"
    );
    let refused = [&high, &revocation, &demotion, &by_member];
    assert!(fetch(&addr, &x, community, &refused).is_empty());
    assert_eq!(count_and_head(&founder.sb).0, count0 + 4);

    // The founder's own CLI still works, and it is still the anchor.
    let status = founder.sb.run(&["status"], None);
    assert_eq!(status.code, 0, "{status:?}");
    let status = founder.sb.status().expect("status --json");
    assert_eq!(status.community.members, 4, "{status:?}");
    assert_eq!(status.node.id, founder.key.node_id());
    let manifest = community_manifest(&addr, &trusted.key, community);
    assert_eq!(
        standing(&manifest, &founder.key.node_id()).as_deref(),
        Some("anchor"),
        "{manifest}"
    );
    assert_eq!(manifest["revoked"], json!([]), "{manifest}");
    let body =
        json!({"input": {"event_type": "market.post.created", "data": post_data("still mine")}});
    let append = founder.sb.run(
        &[
            "call",
            "experimental.event.append",
            "--body",
            &body.to_string(),
        ],
        None,
    );
    assert_eq!(append.code, 0, "the founder still writes: {append:?}");
    drop(_node);
    let counted = counted_ids(&founder.sb, community);
    for e in refused {
        assert!(
            !counted.contains(e["event_id"].as_str().unwrap()),
            "{e} counts"
        );
    }
}

#[test]
fn events_backdated_before_their_authors_revocation_are_refused() {
    let (community, members) = found(&["member", "trusted", "trusted", "trusted"]);
    let [founder, m, t1, t2, t3] = &members[..] else {
        unreachable!()
    };
    let _node = founder.sb.start_node(&[]);
    let addr = founder.sb.peer_addr();
    let (_, head) = count_and_head(&founder.sb);
    let m_join = m.joined.as_ref().unwrap();

    // M's history as its node writes it: its join, then a post linked to it.
    let last = event(
        community,
        &m.key,
        head + 1,
        "market.post.created",
        linked(post_data("last known"), m_join),
    );
    let reply = push(&addr, &m.key, community, &[&last]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    // M revoked at L by three trusted co-signers, who knew that post.
    let l = head + 10;
    let intent = json!({"target_node_id": m.key.node_id(), "reason": "compromised",
                        "target_last_event_id": last["event_id"]});
    let revocation = event(
        community,
        &t1.key,
        l,
        "community.member.revoked",
        cosigned(
            "community.member.revoked",
            &intent,
            &[&t1.key, &t2.key, &t3.key],
        ),
    );
    let reply = push(&addr, &t1.key, community, &[&revocation]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    let (count1, head1) = count_and_head(&founder.sb);
    assert_eq!(head1, l);

    // M, revoked, writes as if before L: an invite for a sock puppet and a
    // post at L-1 (continuing its chain, or not linked at all), a post
    // forking its chain below its last known event; the puppet joins.
    // Another member relays them (M itself is refused at the handshake).
    let puppet = DeviceKey::generate();
    let backdated_invite = event(
        community,
        &m.key,
        l - 1,
        "community.member.invited",
        linked(invite_data(&puppet.node_id(), "member"), &last),
    );
    let backdated_post = event(
        community,
        &m.key,
        l - 1,
        "market.post.created",
        linked(post_data("backdated"), &last),
    );
    let unlinked_post = event(
        community,
        &m.key,
        l - 1,
        "market.post.created",
        post_data("backdated, unlinked"),
    );
    let forked_post = event(
        community,
        &m.key,
        head + 1,
        "market.post.created",
        linked(post_data("forked"), m_join),
    );
    let puppet_join = join(community, &puppet, l + 1, &backdated_invite);
    let attack = [
        &backdated_invite,
        &backdated_post,
        &unlinked_post,
        &forked_post,
        &puppet_join,
    ];
    let reply = push(&addr, &t2.key, community, &attack);
    assert_eq!(reply["accepted"], 0, "{reply}");
    for e in &attack[..4] {
        assert_eq!(
            reason_for(&reply, e).as_deref(),
            Some("revoked_author"),
            "{e}: {reply}"
        );
    }
    assert_eq!(
        reason_for(&reply, &puppet_join).as_deref(),
        Some("unauthorized"),
        "no invite counts, so no join: {reply}"
    );

    // Nothing of it counts or is served; M's known history still does.
    assert_eq!(count_and_head(&founder.sb), (count1, head1));
    assert!(fetch(&addr, &t2.key, community, &attack).is_empty());
    assert_eq!(fetch(&addr, &t2.key, community, &[&last]).len(), 1);
    let manifest = community_manifest(&addr, &t2.key, community);
    assert_eq!(
        standing(&manifest, &m.key.node_id()).as_deref(),
        Some("revoked"),
        "{manifest}"
    );
    assert_eq!(level_in(&manifest, &puppet.node_id()), None, "{manifest}");
    let puppet_heads = common::runtime().block_on(async {
        peer_client(&puppet, community)
            .get(&addr, None, "/sync/v1/heads")
            .await
    });
    assert!(puppet_heads.is_err(), "the puppet got an answer");
    drop(_node);
    let counted = counted_ids(&founder.sb, community);
    for e in attack {
        assert!(
            !counted.contains(e["event_id"].as_str().unwrap()),
            "{e} counts"
        );
    }
    assert!(counted.contains(last["event_id"].as_str().unwrap()));
}

/// M would rather not link its events (it writes them by hand, as a v1
/// node would), so that its revokers' knowledge cannot be told from what
/// it signs later. A community made by this release requires links:
/// the unlinked event is refused outright, and what M links as its
/// "first" event keeps it to that chain. Nothing M signs after its
/// revocation counts, whatever Lamport it claims.
#[test]
fn an_unlinked_event_backdated_below_a_revoked_authors_last_known_event_is_refused() {
    let (community, members) = found(&["member", "trusted", "trusted", "trusted"]);
    let [founder, m, t1, t2, t3] = &members[..] else {
        unreachable!()
    };
    let _node = founder.sb.start_node(&[]);
    let addr = founder.sb.peer_addr();
    let (_, head) = count_and_head(&founder.sb);
    let unlinked = Event::create(
        NewEvent {
            community_id: community,
            lamport: head + 3,
            event_type: "market.post.created",
            data: post_data("unlinked"),
        },
        &m.key,
    )
    .unwrap()
    .to_value();
    let reply = push(&addr, &m.key, community, &[&unlinked]);
    assert_eq!(
        reason_for(&reply, &unlinked).as_deref(),
        Some("unauthorized"),
        "{reply}"
    );
    let last = market_post(community, &m.key, head + 5, "last known, unlinked");
    let reply = push(&addr, &m.key, community, &[&last]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    let l = head + 10;
    let intent = json!({"target_node_id": m.key.node_id(), "reason": "compromised",
                        "target_last_event_id": last["event_id"]});
    let revocation = event(
        community,
        &t1.key,
        l,
        "community.member.revoked",
        cosigned(
            "community.member.revoked",
            &intent,
            &[&t1.key, &t2.key, &t3.key],
        ),
    );
    let reply = push(&addr, &t1.key, community, &[&revocation]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    let (count1, _) = count_and_head(&founder.sb);

    // After its revocation, M signs an invite dated below its last known
    // event; the puppet joins after the revocation.
    let puppet = DeviceKey::generate();
    let backdated_invite = invite(community, &m.key, head + 4, &puppet.node_id(), "member");
    let puppet_join = join(community, &puppet, l + 1, &backdated_invite);
    let reply = push(
        &addr,
        &t2.key,
        community,
        &[&backdated_invite, &puppet_join],
    );
    assert_eq!(
        reason_for(&reply, &backdated_invite).as_deref(),
        Some("revoked_author"),
        "{reply}"
    );
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(count_and_head(&founder.sb).0, count1);
    let manifest = community_manifest(&addr, &t2.key, community);
    assert_eq!(level_in(&manifest, &puppet.node_id()), None, "{manifest}");
}

#[test]
fn a_member_squatting_another_members_event_id_is_refused_and_the_original_stays() {
    let (community, members) = found(&["member", "member"]);
    let [founder, victim, squatter] = &members[..] else {
        unreachable!()
    };
    let _node_f = founder.sb.start_node(&[]);
    let _node_v = victim.sb.start_node(&[]);
    let addr_f = founder.sb.peer_addr();
    let addr_v = victim.sb.peer_addr();
    let (_, head) = count_and_head(&founder.sb);
    let original = market_post(community, &victim.key, head + 1, "original");
    // The squatter's own envelope, validly signed by it, under the
    // victim's event id (copied: not bound to the squatter's content).
    let mut squat = market_post(community, &squatter.key, head + 2, "squatter");
    squat["event_id"] = original["event_id"].clone();
    let squat = hearthnet_base::sign_value(squat, &squatter.key).unwrap();
    assert!(Event::id_is_bound(&original) && !Event::id_is_bound(&squat));

    // The founder's node has the original: the squat is refused.
    let reply = push(&addr_f, &victim.key, community, &[&original]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    let (count1, _) = count_and_head(&founder.sb);
    let reply = push(&addr_f, &squatter.key, community, &[&squat]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(reply["duplicates"], 0, "{reply}");
    assert_eq!(rejected_reasons(&reply), ["conflicting_id"], "{reply}");
    assert_eq!(
        reply["rejected_reasons"][0]["event_id"],
        original["event_id"]
    );
    assert_eq!(count_and_head(&founder.sb).0, count1);
    assert_eq!(
        fetch(&addr_f, &squatter.key, community, &[&original, &squat]),
        std::slice::from_ref(&original),
        "the original is served, the squat is not"
    );

    // The victim's own node gets the squat first (the squatter raced the
    // original to it), then the original: the original wins there too,
    // and the squat offered again is refused. Alone, the squat does not
    // count either: its id is copied, not bound to it.
    let reply = push(&addr_v, &squatter.key, community, &[&squat]);
    assert_eq!(
        reply["accepted"], 0,
        "an id it never saw, but copied: {reply}"
    );
    assert_eq!(rejected_reasons(&reply), ["unauthorized"], "{reply}");
    let reply = push(&addr_v, &founder.key, community, &[&original]);
    assert_eq!(
        rejected_reasons(&reply),
        ["conflicting_id"],
        "reported: {reply}"
    );
    let reply = push(&addr_v, &squatter.key, community, &[&squat]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(rejected_reasons(&reply), ["conflicting_id"], "{reply}");
    assert_eq!(
        fetch(&addr_v, &squatter.key, community, &[&original, &squat]),
        std::slice::from_ref(&original),
        "the original displaced the squat"
    );
    assert_eq!(count_and_head(&victim.sb).0, count1);
    drop((_node_f, _node_v));
    for sb in [&founder.sb, &victim.sb] {
        let stored = open_log(sb, community)
            .query_blocking(hearthnet_events::Query {
                event_type: Some("market.post.created".into()),
                ..hearthnet_events::Query::default()
            })
            .unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].json, original, "the original stays");
    }
}

#[test]
fn an_event_a_million_lamports_ahead_is_refused_and_the_head_stays() {
    let (community, members) = found(&["member"]);
    let [founder, b] = &members[..] else {
        unreachable!()
    };
    let _node = founder.sb.start_node(&[]);
    let addr = founder.sb.peer_addr();
    let (count0, head0) = count_and_head(&founder.sb);
    let far = market_post(community, &b.key, head0 + 999_999, "far ahead");
    let near = market_post(community, &b.key, head0 + 1, "next");
    let reply = push(&addr, &b.key, community, &[&far, &near]);
    assert_eq!(reply["accepted"], 1, "the honest one is taken: {reply}");
    assert_eq!(rejected_reasons(&reply), ["lamport_ahead"], "{reply}");
    assert_eq!(reason_for(&reply, &far).as_deref(), Some("lamport_ahead"));
    assert_eq!(reply["new_head_lamport"], head0 + 1, "{reply}");
    assert_eq!(count_and_head(&founder.sb), (count0 + 1, head0 + 1));
    assert!(fetch(&addr, &b.key, community, &[&far]).is_empty());
    // The node's clock did not jump: its own next event follows the head.
    let body = json!({"input": {"event_type": "market.post.created", "data": post_data("mine")}});
    let written = founder.sb.run(
        &[
            "call",
            "experimental.event.append",
            "--body",
            &body.to_string(),
        ],
        None,
    );
    assert_eq!(written.code, 0, "{written:?}");
    assert_eq!(count_and_head(&founder.sb), (count0 + 2, head0 + 2));
    // The bound: 10,000 past the head is taken, one more is not.
    let over = market_post(community, &b.key, head0 + 2 + 10_001, "over");
    let reply = push(&addr, &b.key, community, &[&over]);
    assert_eq!(rejected_reasons(&reply), ["lamport_ahead"], "{reply}");
    let at = market_post(community, &b.key, head0 + 2 + 10_000, "at the bound");
    let reply = push(&addr, &b.key, community, &[&at]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    drop(_node);
    let counted = counted_ids(&founder.sb, community);
    assert!(!counted.contains(far["event_id"].as_str().unwrap()));
    assert!(!counted.contains(over["event_id"].as_str().unwrap()));
}

#[test]
fn a_post_arriving_before_its_authors_admission_counts_once_the_admission_arrives() {
    let (community, members) = found(&["member"]);
    let [founder, b] = &members[..] else {
        unreachable!()
    };
    let _node_f = founder.sb.start_node(&[]);
    let _node_b = b.sb.start_node(&[]);
    let addr_f = founder.sb.peer_addr();
    let addr_b = b.sb.peer_addr();
    let (count0, head) = count_and_head(&founder.sb);
    let newcomer = DeviceKey::generate();
    let inv = invite(
        community,
        &founder.key,
        head + 1,
        &newcomer.node_id(),
        "member",
    );
    let jn = join(community, &newcomer, head + 2, &inv);
    let post = market_post(community, &newcomer, head + 3, "early");

    // Out of order at the founder's node: the post first (relayed by B;
    // the newcomer cannot connect yet), then its admission.
    let reply = push(&addr_f, &b.key, community, &[&post]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(rejected_reasons(&reply), ["unknown_author"], "{reply}");
    assert!(fetch(&addr_f, &b.key, community, &[&post]).is_empty());
    assert_eq!(count_and_head(&founder.sb).0, count0);
    let reply = push(&addr_f, &b.key, community, &[&inv, &jn]);
    assert_eq!(reply["accepted"], 2, "{reply}");
    assert_eq!(
        fetch(&addr_f, &b.key, community, &[&post]),
        std::slice::from_ref(&post),
        "the post counts now"
    );
    assert_eq!(count_and_head(&founder.sb).0, count0 + 3);
    let admitted = common::runtime().block_on(async {
        peer_client(&newcomer, community)
            .get(&addr_f, None, "/sync/v1/heads")
            .await
    });
    assert!(
        admitted.is_ok(),
        "the newcomer is a member: {:?}",
        admitted.err()
    );

    // In order at B's node, one push each.
    for e in [&inv, &jn, &post] {
        let reply = push(&addr_b, &founder.key, community, &[e]);
        assert_eq!(reply["accepted"], 1, "{reply}");
    }
    drop((_node_f, _node_b));
    assert_eq!(
        counted_ids(&founder.sb, community),
        counted_ids(&b.sb, community),
        "the same events count, whatever the order they came in"
    );
}

#[test]
fn a_post_after_its_authors_revocation_stops_counting_when_the_revocation_arrives() {
    let (community, members) = found(&["member", "trusted", "trusted", "trusted"]);
    let [founder, m, t1, t2, t3] = &members[..] else {
        unreachable!()
    };
    let _node_f = founder.sb.start_node(&[]);
    let _node_t = t1.sb.start_node(&[]);
    let addr_f = founder.sb.peer_addr();
    let addr_t = t1.sb.peer_addr();
    let (count0, head) = count_and_head(&founder.sb);
    let l = head + 10;
    let post = market_post(community, &m.key, l + 5, "after the revocation point");
    let intent = json!({"target_node_id": m.key.node_id(), "reason": "compromised",
                        "target_last_event_id": m.joined.as_ref().unwrap()["event_id"]});
    let revocation = event(
        community,
        &t1.key,
        l,
        "community.member.revoked",
        cosigned(
            "community.member.revoked",
            &intent,
            &[&t1.key, &t2.key, &t3.key],
        ),
    );

    // At the founder's node the post comes first and counts, M being a
    // member as far as the node knows; then the revocation.
    let reply = push(&addr_f, &m.key, community, &[&post]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    assert_eq!(
        fetch(&addr_f, &t2.key, community, &[&post]),
        std::slice::from_ref(&post)
    );
    let reply = push(&addr_f, &t2.key, community, &[&revocation]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    assert!(
        fetch(&addr_f, &t2.key, community, &[&post]).is_empty(),
        "the post is no longer served"
    );
    assert_eq!(
        count_and_head(&founder.sb).0,
        count0 + 1,
        "the revocation counts, the post no longer"
    );
    let manifest = community_manifest(&addr_f, &t2.key, community);
    assert_eq!(
        standing(&manifest, &m.key.node_id()).as_deref(),
        Some("revoked"),
        "{manifest}"
    );

    // In order at T1's node: the post is refused.
    let reply = push(&addr_t, &t2.key, community, &[&revocation]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    let reply = push(&addr_t, &t2.key, community, &[&post]);
    assert_eq!(rejected_reasons(&reply), ["revoked_author"], "{reply}");
    drop((_node_f, _node_t));
    let counted = counted_ids(&founder.sb, community);
    assert_eq!(counted, counted_ids(&t1.sb, community));
    assert!(!counted.contains(post["event_id"].as_str().unwrap()));
    assert!(counted.contains(revocation["event_id"].as_str().unwrap()));
}

/// The node caches its set of served digests by its count of events. A
/// revocation that holds back one of its target's events leaves the count
/// as it was: the revocation must be served (and synced) all the same.
#[test]
fn a_revocation_that_holds_back_an_event_is_served_at_once() {
    let (community, members) = found(&["member", "trusted", "trusted", "trusted"]);
    let [founder, m, t1, t2, t3] = &members[..] else {
        unreachable!()
    };
    let _node_f = founder.sb.start_node(&[]);
    let _node_o = t3.sb.start_node(&[]);
    let addr_f = founder.sb.peer_addr();
    let (_, head) = count_and_head(&founder.sb);
    let l = head + 10;
    let post = market_post(community, &m.key, l + 5, "after the revocation point");
    let intent = json!({"target_node_id": m.key.node_id(), "reason": "compromised",
                        "target_last_event_id": m.joined.as_ref().unwrap()["event_id"]});
    let revocation = event(
        community,
        &t1.key,
        l,
        "community.member.revoked",
        cosigned(
            "community.member.revoked",
            &intent,
            &[&t1.key, &t2.key, &t3.key],
        ),
    );
    let reply = push(&addr_f, &m.key, community, &[&post]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    // A peer asks for it (as reconciliation does), then the revocation comes.
    assert_eq!(fetch(&addr_f, &t2.key, community, &[&post]).len(), 1);
    let reply = push(&addr_f, &t2.key, community, &[&revocation]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    assert_eq!(
        fetch(&addr_f, &t2.key, community, &[&revocation]),
        std::slice::from_ref(&revocation),
        "the revocation is served"
    );
    // A member that syncs with the founder's node learns of it.
    let synced = t3.sb.run(
        &["sync", "--peer", &addr_f, "--protocol", "v2", "--json"],
        None,
    );
    assert_eq!(synced.code, 0, "{synced:?}");
    drop((_node_f, _node_o));
    let at_t3 = counted_ids(&t3.sb, community);
    assert!(
        at_t3.contains(revocation["event_id"].as_str().unwrap()),
        "the node that synced has the revocation: {synced:?}"
    );
    assert!(!at_t3.contains(post["event_id"].as_str().unwrap()));
}

/// A takeover from above: an anchor the founder made brings in its own
/// people, makes them anchors (each step allowed), and with them tries to
/// revoke or demote the founder: the quorum is all of its own making.
#[test]
fn a_deputy_anchor_cannot_take_over_with_anchors_of_its_own_making() {
    let (community, members) = found(&["trusted"]);
    let [founder, deputy] = &members[..] else {
        unreachable!()
    };
    let _node = founder.sb.start_node(&[]);
    let addr = founder.sb.peer_addr();
    let (count0, head) = count_and_head(&founder.sb);
    let promote = |author: &DeviceKey, target: &DeviceKey, lamport: u64| {
        let intent = json!({"target_node_id": target.node_id(), "new_level": "anchor"});
        event(
            community,
            author,
            lamport,
            "community.member.promoted",
            cosigned("community.member.promoted", &intent, &[author]),
        )
    };
    let made_anchor = promote(&founder.key, &deputy.key, head + 1);
    let reply = push(&addr, &founder.key, community, &[&made_anchor]);
    assert_eq!(reply["accepted"], 1, "{reply}");
    // Its people: invited at trusted, joined, promoted to anchor by it.
    let (x, y) = (DeviceKey::generate(), DeviceKey::generate());
    let ix = invite(community, &deputy.key, head + 2, &x.node_id(), "trusted");
    let iy = invite(community, &deputy.key, head + 3, &y.node_id(), "trusted");
    let jx = join(community, &x, head + 4, &ix);
    let jy = join(community, &y, head + 5, &iy);
    let px = promote(&deputy.key, &x, head + 6);
    let py = promote(&deputy.key, &y, head + 7);
    let reply = push(
        &addr,
        &deputy.key,
        community,
        &[&ix, &iy, &jx, &jy, &px, &py],
    );
    assert_eq!(reply["accepted"], 6, "each step is allowed: {reply}");
    let manifest = community_manifest(&addr, &deputy.key, community);
    for k in [&deputy.key, &x, &y] {
        assert_eq!(standing(&manifest, &k.node_id()).as_deref(), Some("anchor"));
    }

    // Three anchors co-sign the founder's revocation, or its demotion.
    let three = [&deputy.key, &x, &y];
    let revoke_intent = json!({"target_node_id": founder.key.node_id(), "reason": "takeover"});
    let revocation = event(
        community,
        &deputy.key,
        head + 8,
        "community.member.revoked",
        cosigned("community.member.revoked", &revoke_intent, &three),
    );
    let demote_intent = json!({"target_node_id": founder.key.node_id(), "new_level": "trusted"});
    let demotion = event(
        community,
        &x,
        head + 8,
        "community.member.demoted",
        cosigned("community.member.demoted", &demote_intent, &three),
    );
    let reply = push(&addr, &y, community, &[&revocation, &demotion]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(
        rejected_reasons(&reply),
        ["unauthorized", "unauthorized"],
        "{reply}"
    );
    let details: Vec<&str> = reply["rejected_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["detail"].as_str().unwrap())
        .collect();
    assert!(
        details.iter().all(|d| d.contains("independent")),
        "refused for want of independent co-signers: {reply}"
    );
    assert!(fetch(&addr, &y, community, &[&revocation, &demotion]).is_empty());
    assert_eq!(count_and_head(&founder.sb).0, count0 + 7);
    let status = founder.sb.run(&["status", "--json"], None);
    assert_eq!(status.code, 0, "{status:?}");
    let manifest = community_manifest(&addr, &deputy.key, community);
    assert_eq!(
        standing(&manifest, &founder.key.node_id()).as_deref(),
        Some("anchor"),
        "{manifest}"
    );
}

/// Co-signatures cover `data` without `co_signers` and `author_prev`: not
/// the event type, nor where in history the change is. Three trusted
/// members agree to demote X, with a reason; the founder later makes X
/// trusted again.
fn demoted_then_restored() -> (CommunityId, Vec<Member>, common::RunningNode, Value, u64) {
    let (community, members) = found(&["trusted", "trusted", "trusted", "trusted"]);
    let node = members[0].sb.start_node(&[]);
    let addr = members[0].sb.peer_addr();
    let (_, head) = count_and_head(&members[0].sb);
    let [founder, x, t1, t2, t3] = &members[..] else {
        unreachable!()
    };
    let intent =
        json!({"target_node_id": x.key.node_id(), "new_level": "member", "reason": "inactive"});
    let demotion = event(
        community,
        &t1.key,
        head + 1,
        "community.member.demoted",
        cosigned(
            "community.member.demoted",
            &intent,
            &[&t1.key, &t2.key, &t3.key],
        ),
    );
    let restore = json!({"target_node_id": x.key.node_id(), "new_level": "trusted"});
    let restored = event(
        community,
        &founder.key,
        head + 2,
        "community.member.promoted",
        cosigned("community.member.promoted", &restore, &[&founder.key]),
    );
    let reply = push(&addr, &t1.key, community, &[&demotion, &restored]);
    assert_eq!(reply["accepted"], 2, "{reply}");
    (community, members, node, demotion, head + 2)
}

#[test]
fn co_signatures_of_a_past_demotion_cannot_be_replayed() {
    let (community, members, _node, demotion, head) = demoted_then_restored();
    let [founder, x, _, _, t3] = &members[..] else {
        unreachable!()
    };
    let addr = founder.sb.peer_addr();
    let (count1, _) = count_and_head(&founder.sb);
    // T3 alone writes the same demotion again, with the old co-signatures.
    let replay = event(
        community,
        &t3.key,
        head + 1,
        "community.member.demoted",
        demotion["data"].clone(),
    );
    let reply = push(&addr, &t3.key, community, &[&replay]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(rejected_reasons(&reply), ["unauthorized"], "{reply}");
    assert_eq!(count_and_head(&founder.sb).0, count1);
    let manifest = community_manifest(&addr, &t3.key, community);
    assert_eq!(
        standing(&manifest, &x.key.node_id()).as_deref(),
        Some("trusted"),
        "{manifest}"
    );
}

#[test]
fn co_signatures_of_a_demotion_cannot_revoke() {
    let (community, members, _node, demotion, head) = demoted_then_restored();
    let [founder, x, _, _, t3] = &members[..] else {
        unreachable!()
    };
    let addr = founder.sb.peer_addr();
    let (count1, _) = count_and_head(&founder.sb);
    // T3 alone writes a revocation of X carrying the demotion's data.
    let revocation = event(
        community,
        &t3.key,
        head + 1,
        "community.member.revoked",
        demotion["data"].clone(),
    );
    let reply = push(&addr, &t3.key, community, &[&revocation]);
    assert_eq!(reply["accepted"], 0, "{reply}");
    assert_eq!(rejected_reasons(&reply), ["unauthorized"], "{reply}");
    assert_eq!(count_and_head(&founder.sb).0, count1);
    let manifest = community_manifest(&addr, &t3.key, community);
    assert_eq!(
        standing(&manifest, &x.key.node_id()).as_deref(),
        Some("trusted"),
        "{manifest}"
    );
}
