#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use super::*;
use hearthnet_base::event::{Event, NewEvent};
use hearthnet_base::{DeviceKey, Timestamp};
use hearthnet_bus::{Bus, BusSettings, InboundCall, Version};
use hearthnet_events::{Limits, LogPaths};
use hearthnet_identity::{CommunityPolicy, Genesis};

/// One community log, and a bus serving [`MembershipChanges`] as each of
/// its members would (the same log, each member's key).
struct World {
    _dir: tempfile::TempDir,
    log: EventLog,
    founder: DeviceKey,
    trusted: Vec<DeviceKey>,
    member: DeviceKey,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let founder = DeviceKey::generate();
        let genesis = Genesis::create(&founder, "t", CommunityPolicy::default()).unwrap();
        let community = genesis.manifest.community_id;
        let log = EventLog::open(
            LogPaths::in_state_dir(&dir.path().join("state")),
            community,
            Limits::default(),
            Some(genesis.created_event.to_value()),
            None,
        )
        .unwrap();
        let event = |key: &DeviceKey, lamport: u64, event_type: &str, data: Value| {
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
        };
        let trusted: Vec<DeviceKey> = (0..2).map(|_| DeviceKey::generate()).collect();
        let member = DeviceKey::generate();
        for (i, (key, level)) in trusted
            .iter()
            .map(|k| (k, "trusted"))
            .chain([(&member, "member")])
            .enumerate()
        {
            let at = 1 + 2 * i as u64;
            let invite = event(
                &founder,
                at,
                "community.member.invited",
                json!({"author_prev": null, "invitee_node_id": key.node_id(), "display_name": "x",
                       "initial_level": level, "expires_at": Timestamp::now().plus_seconds(3600)}),
            );
            let joined = event(
                key,
                at + 1,
                "community.member.joined",
                json!({"author_prev": null, "invite_event_id": invite["event_id"], "node_manifest": {}}),
            );
            let report = log.append_received(vec![invite, joined]).await.unwrap();
            assert_eq!(report.accepted, 2, "{report:?}");
        }
        Self {
            _dir: dir,
            log,
            founder,
            trusted,
            member,
        }
    }

    /// Call `capability` on the node of `key`, as that node's own key.
    async fn call(
        &self,
        key: &DeviceKey,
        capability: &str,
        input: Value,
    ) -> Result<Value, CallError> {
        let bus = Arc::new(Bus::new(
            key.node_id(),
            BusSettings::default(),
            Arc::default(),
        ));
        bus.register(Arc::new(MembershipChanges {
            log: self.log.clone(),
            key: key.clone(),
        }))
        .unwrap();
        let call = InboundCall::new(
            capability,
            Version::new(1, 0),
            json!({"params": {}, "input": input}),
            key.node_id(),
            TrustLevel::Anchor,
        );
        bus.call(call)?.outcome().await
    }

    async fn standing(&self, key: &DeviceKey, capability: &str, input: Value) -> ProposalStanding {
        let answer = self.call(key, capability, input).await.unwrap();
        serde_json::from_value::<ProposalAnswer>(answer)
            .unwrap()
            .output
    }
}

#[tokio::test]
async fn a_revocation_gathers_its_quorum_and_each_step_says_what_is_missing() {
    let w = World::new().await;
    let [t0, t1] = &w.trusted[..] else {
        unreachable!()
    };
    let target = w.member.node_id();
    let proposed = w
        .standing(
            t0,
            "community.proposal.create",
            json!({"kind": "revoke", "target_node_id": target, "reason": "compromised"}),
        )
        .await;
    assert_eq!(
        (proposed.needed, proposed.signed, proposed.missing),
        (3, 1, 2)
    );
    assert_eq!(proposed.signer_level, TrustLevel::Trusted);
    // The target's last event is named, so nothing it signs later counts.
    assert!(proposed.proposal.target_last_event_id.is_some());
    let mut may = proposed.may_sign.clone();
    may.sort();
    let mut want = vec![w.founder.node_id(), t1.node_id()];
    want.sort();
    assert_eq!(may, want);
    assert!(
        proposed.explanation.contains("2 still missing"),
        "{}",
        proposed.explanation
    );

    // Below the quorum, submitting is refused with the count.
    let early = w
        .call(
            t0,
            "community.proposal.submit",
            json!({"proposal": proposed.text}),
        )
        .await
        .unwrap_err();
    assert_eq!(early.code, ErrorCode::Unauthorized);
    assert!(
        early.message.contains("2 still missing"),
        "{}",
        early.message
    );

    // The target may not co-sign its own revocation.
    let e = w
        .call(
            &w.member,
            "community.proposal.cosign",
            json!({"proposal": proposed.text}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unauthorized, "{}", e.message);
    assert!(e.message.contains("target"), "{}", e.message);
    let second = w
        .standing(
            t1,
            "community.proposal.cosign",
            json!({"proposal": proposed.text}),
        )
        .await;
    assert_eq!(second.missing, 1);
    // Signing again changes nothing.
    let again = w
        .standing(
            t1,
            "community.proposal.cosign",
            json!({"proposal": second.text}),
        )
        .await;
    assert_eq!((again.missing, again.proposal.co_signers.len()), (1, 2));
    // The object form serves as well as the text.
    let third = w
        .standing(
            &w.founder,
            "community.proposal.cosign",
            json!({"proposal": second.proposal}),
        )
        .await;
    assert_eq!((third.signed, third.missing), (3, 0));
    assert!(
        third.explanation.contains("ready to submit"),
        "{}",
        third.explanation
    );

    let done = w
        .call(
            t1,
            "community.proposal.submit",
            json!({"proposal": third.text}),
        )
        .await
        .unwrap();
    assert_eq!(done["output"]["event_type"], "community.member.revoked");
    assert!(w.log.view().is_revoked(&target));
    // Once made, the proposal is spent.
    let spent = w
        .call(
            t0,
            "community.proposal.submit",
            json!({"proposal": third.text}),
        )
        .await
        .unwrap_err();
    assert_eq!(spent.code, ErrorCode::BadRequest, "{}", spent.message);
}

#[tokio::test]
async fn a_demotion_is_proposed_and_submitted_the_same_way() {
    let w = World::new().await;
    let [t0, t1] = &w.trusted[..] else {
        unreachable!()
    };
    let proposed = w
        .standing(
            t0,
            "community.proposal.create",
            json!({"kind": "demote", "target_node_id": t1.node_id(), "new_level": "member"}),
        )
        .await;
    // t1 is the target: only t0 and the founder may sign, so the default
    // quorum of three cannot be met.
    assert_eq!((proposed.needed, proposed.missing), (3, 2));
    assert_eq!(proposed.may_sign, vec![w.founder.node_id()]);
    assert!(
        proposed.explanation.contains("fewer than are missing"),
        "{}",
        proposed.explanation
    );
    let both = w
        .standing(
            &w.founder,
            "community.proposal.cosign",
            json!({"proposal": proposed.text}),
        )
        .await;
    assert_eq!(both.missing, 1);
    let refused = w
        .call(
            t0,
            "community.proposal.submit",
            json!({"proposal": both.text}),
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Unauthorized);
    assert_eq!(w.log.view().level_of(&t1.node_id()), TrustLevel::Trusted);
}

#[tokio::test]
async fn bad_proposals_are_refused_before_anything_is_signed() {
    let w = World::new().await;
    let [t0, t1] = &w.trusted[..] else {
        unreachable!()
    };
    // A target that is no member, and a level that is no demotion.
    let stranger = DeviceKey::generate().node_id();
    let e = w
        .call(
            t0,
            "community.proposal.create",
            json!({"kind": "revoke", "target_node_id": stranger}),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("not a member"), "{}", e.message);
    let e = w
        .call(
            t0,
            "community.proposal.create",
            json!({"kind": "demote", "target_node_id": w.member.node_id(), "new_level": "trusted"}),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("lowers the level"), "{}", e.message);
    let e = w
        .call(
            t0,
            "community.proposal.create",
            json!({"kind": "demote", "target_node_id": w.member.node_id()}),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("new_level"), "{}", e.message);

    let proposed = w
        .standing(
            t0,
            "community.proposal.create",
            json!({"kind": "revoke", "target_node_id": w.member.node_id(), "reason": "inactive"}),
        )
        .await;
    // Another community's proposal.
    let mut foreign = proposed.proposal.clone();
    foreign.community_id = hearthnet_base::CommunityId::of_root(stranger);
    let e = w
        .call(
            t1,
            "community.proposal.cosign",
            json!({"proposal": foreign}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("for community"), "{}", e.message);
    // A proposal changed after it was signed.
    let mut changed = proposed.proposal.clone();
    changed.reason = Some("compromised".into());
    let e = w
        .call(
            t1,
            "community.proposal.cosign",
            json!({"proposal": changed}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidSignature, "{}", e.message);
    // Text that is no proposal, or too long, never reaches the decoder.
    let e = w
        .call(
            t1,
            "community.proposal.cosign",
            json!({"proposal": "hearthnet://v1/abc"}),
        )
        .await
        .unwrap_err();
    assert!(
        e.message.contains("hearthnet-proposal://v1/"),
        "{}",
        e.message
    );
    let e = w
        .call(
            t1,
            "community.proposal.cosign",
            json!({"proposal": "x".repeat(MAX_TEXT_BYTES + 1)}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::SchemaMismatch, "{}", e.message);
}
