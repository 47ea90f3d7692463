//! Joining a community with an invite (M13): the one path that both
//! `hearthnet init --join INVITE` (and `invite redeem`) and the join page
//! of a node in joining mode take. The device checks the invite, presents
//! it with its own `community.member.joined` event to the inviter's
//! endpoints over TLS pinned to the inviter's key, and with the answer
//! becomes a member locally: the genesis files, the membership history in
//! its own log, and config.toml naming the community and the inviter.

use std::sync::Arc;

use hearthnet_base::event::{Event, NewEvent};
use hearthnet_base::{CommunityId, DeviceKey, ErrorCode, Timestamp, TrustLevel};
use hearthnet_config::LoadedConfig;
use hearthnet_identity::CommunityManifest;
use hearthnet_onboarding::{Invite, OnboardingError};
use hearthnet_transport::peer_client::{PeerClient, PeerError};
use hearthnet_wire::peer::{Redeem, Redeemed};
use serde_json::{Value, json};

/// What redeeming an invite came to.
#[derive(Debug, Clone)]
pub enum Joined {
    /// This device is now a member of `invite`'s community; `via` is the
    /// inviter's endpoint that took the invite (now a static peer).
    Now { invite: Box<Invite>, via: String },
    /// It was a member of that community already: nothing was done.
    Already { invite: Box<Invite> },
}

/// Why an invite did not make this device a member.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// Not an invite, damaged, expired, for another device, ...
    #[error(transparent)]
    Invite(#[from] OnboardingError),
    #[error(
        "this device belongs to community {} already; one device, one community (start over with `hearthnet erase`)",
        .0.short()
    )]
    OtherCommunity(CommunityId),
    #[error(
        "cannot reach the inviter ({0}); be on the same network as the inviter's node and try again"
    )]
    Unreachable(String),
    #[error("the inviter's node refused: {code}: {message}")]
    Refused { code: ErrorCode, message: String },
    /// The inviter took the redemption (the invite is used now) but its
    /// answer is unusable.
    #[error("{0}")]
    BadAnswer(String),
    /// The answer does not prove the community or this membership.
    #[error("{0}")]
    Untrusted(String),
    /// Writing the membership here failed.
    #[error("{0}")]
    Local(String),
}

impl JoinError {
    /// The contract error code this failure is reported as (the CLI's
    /// exit status, the join page's words).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invite(e) => e.code(),
            Self::Unreachable(_) => ErrorCode::Partition,
            Self::Refused { code, .. } => *code,
            Self::Untrusted(_) => ErrorCode::InvalidSignature,
            Self::OtherCommunity(_) | Self::BadAnswer(_) | Self::Local(_) => {
                ErrorCode::InternalError
            }
        }
    }
}

fn local(e: impl std::fmt::Display) -> JoinError {
    JoinError::Local(e.to_string())
}

fn untrusted(e: impl std::fmt::Display) -> JoinError {
    JoinError::Untrusted(e.to_string())
}

/// Redeem the invite `text` for this device (`key`), and on success save
/// the membership in `loaded` (and its config.toml). On failure `loaded`
/// may name the community without being saved: reload it.
pub async fn redeem(
    loaded: &mut LoadedConfig,
    key: &DeviceKey,
    text: &str,
) -> Result<Joined, JoinError> {
    let invite = Invite::decode(text)?;
    invite.check_for(&key.node_id(), Timestamp::now())?;
    if let Some(current) = loaded.config.community_id() {
        if current == invite.community_id {
            return Ok(Joined::Already {
                invite: Box::new(invite),
            });
        }
        return Err(JoinError::OtherCommunity(current));
    }
    let joined = Event::create(
        NewEvent {
            community_id: invite.community_id,
            lamport: invite.invite_lamport + 1,
            event_type: "community.member.joined",
            // Our first event in the community: the start of our chain.
            data: json!({"invite_event_id": invite.invite_event_id, "author_prev": null,
                         "node_manifest": {"node_id": key.node_id(), "display_name": loaded.config.identity.display_name}}),
        },
        key,
    )
    .map_err(|e| local(format!("cannot build the joined event: {e}")))?;
    let (answer, via) = ask_inviter(key, &invite, joined.to_value()).await?;
    settle(loaded, key, &invite, answer, &via).await?;
    Ok(Joined::Now {
        invite: Box::new(invite),
        via,
    })
}

/// Present the invite and our joined event to the inviter's endpoints, in
/// turn, over TLS pinned to the inviter's key.
async fn ask_inviter(
    key: &DeviceKey,
    invite: &Invite,
    joined: Value,
) -> Result<(Redeemed, String), JoinError> {
    let identity = Arc::new(hearthnet_transport::tls::TlsIdentity::new(key).map_err(local)?);
    let inviter = invite.inviter_node_id;
    let body = Redeem {
        invite: invite.encode(),
        joined,
    };
    let mut last = None;
    for endpoint in &invite.bootstrap_endpoints {
        let addr = format!("{}:{}", endpoint.host, endpoint.port);
        let client = PeerClient::new(
            key.clone(),
            invite.community_id,
            identity.clone(),
            Arc::new(move |id| *id == inviter),
            endpoint.transport == "http",
        );
        let asked = client
            .post_as::<Redeemed>(&addr, Some(inviter), "/onboarding/v1/redeem", &body)
            .await;
        match asked {
            Ok(reply) => return Ok((reply.body, addr)),
            // Used up by the inviter but unusable: a bad answer, not a bad
            // invite, and no reason to ask another of its endpoints.
            Err(e @ PeerError::BadAnswer { .. }) => {
                return Err(JoinError::BadAnswer(e.to_string()));
            }
            Err(PeerError::Refused { body, status, .. }) => {
                let refusal = match serde_json::from_str::<Value>(&body) {
                    Ok(body) => crate::peers::error_from_body(&body),
                    Err(_) => hearthnet_bus::CallError::new(
                        ErrorCode::InternalError,
                        format!("HTTP {status}: {body}"),
                    ),
                };
                return Err(JoinError::Refused {
                    code: refusal.code,
                    message: refusal.message,
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(JoinError::Unreachable(last.map_or_else(
        || "the invite names no endpoint".to_owned(),
        |e| e.to_string(),
    )))
}

/// Become a member locally: the genesis files, the membership history in
/// our own log, and config.toml naming the community and the inviter.
async fn settle(
    loaded: &mut LoadedConfig,
    key: &DeviceKey,
    invite: &Invite,
    answer: Redeemed,
    via: &str,
) -> Result<(), JoinError> {
    let manifest = CommunityManifest::verify(&answer.genesis_manifest).map_err(untrusted)?;
    if manifest.community_id != invite.community_id || answer.community_id != invite.community_id {
        return Err(untrusted(
            "the inviter sent the manifest of another community",
        ));
    }
    let events = answer.events;
    let genesis = events
        .iter()
        .find(|e| e["event_type"] == "community.created")
        .cloned()
        .ok_or_else(|| untrusted("the inviter sent no genesis event"))?;
    let genesis_event = Event::verify(&genesis).map_err(untrusted)?;
    loaded.config.community.community_id = Some(invite.community_id);
    let state_dir = loaded
        .paths()
        .state_dir
        .ok_or_else(|| local("community state directory unresolved"))?;
    let write = |name: &str, value: &Value| -> Result<(), JoinError> {
        let mut bytes = serde_json::to_vec_pretty(value).map_err(local)?;
        bytes.push(b'\n');
        hearthnet_base::fsio::atomic_write(&state_dir.join(name), &bytes, 0o600).map_err(local)
    };
    write(
        hearthnet_identity::community::MANIFEST_FILE,
        &answer.genesis_manifest,
    )?;
    write(
        hearthnet_identity::community::GENESIS_FILE,
        &genesis_event.to_value(),
    )?;
    let log = hearthnet_events::EventLog::open(
        hearthnet_events::LogPaths::in_state_dir(&state_dir),
        invite.community_id,
        hearthnet_events::Limits::default(),
        Some(genesis),
        Some(key.clone()),
    )
    .map_err(local)?;
    let report = log.append_received(events).await.map_err(local)?;
    if log.view().level_of(&key.node_id()) < TrustLevel::Member {
        return Err(untrusted(format!(
            "the membership history does not admit this device ({:?})",
            report.rejected
        )));
    }
    let peers = &mut loaded.config.discovery.static_peers;
    if !peers.iter().any(|p| p == via) {
        peers.push(via.to_owned());
    }
    hearthnet_config::save(loaded).map_err(local)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code

    use hearthnet_identity::{CommunityPolicy, Endpoint, Genesis};
    use hearthnet_onboarding::InviteRequest;

    use super::*;

    /// A fresh device's configuration in `home`.
    fn fresh(home: &std::path::Path) -> LoadedConfig {
        let env = hearthnet_config::Env::from_pairs([("HOME", home.to_str().unwrap())]);
        hearthnet_config::load(None, &env).unwrap()
    }

    /// An invite for `invitee`, valid for `hours` (negative: expired),
    /// naming `endpoint` as the inviter's.
    fn invite(invitee: &DeviceKey, hours: i64, endpoint: std::net::SocketAddr) -> String {
        let founder = DeviceKey::generate();
        let genesis = Genesis::create(&founder, "Den", CommunityPolicy::default()).unwrap();
        Invite::create(
            InviteRequest {
                community_id: genesis.manifest.community_id,
                community_name: "Den",
                invitee: invitee.node_id(),
                level: TrustLevel::Member,
                bootstrap_endpoints: vec![Endpoint {
                    transport: "https".into(),
                    host: endpoint.ip().to_string(),
                    port: endpoint.port(),
                }],
                expires_at: Timestamp::now().plus_seconds(hours * 3600),
                invite_event_id: "01HXR3F7J8Q2W0KQ5M1N9ZB6TC",
                invite_lamport: 1,
            },
            &founder,
        )
        .unwrap()
        .encode()
    }

    /// A loopback address nobody listens on.
    fn closed_port() -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    #[tokio::test]
    async fn invites_that_cannot_work_are_refused_with_their_codes_and_nothing_saved() {
        let home = tempfile::tempdir().unwrap();
        let mut loaded = fresh(home.path());
        let device = DeviceKey::generate();
        let nowhere = closed_port();

        let expired = redeem(&mut loaded, &device, &invite(&device, -1, nowhere)).await;
        assert_eq!(expired.unwrap_err().code(), ErrorCode::Expired);

        let other = DeviceKey::generate();
        let foreign = redeem(&mut loaded, &device, &invite(&other, 24, nowhere)).await;
        let foreign = foreign.unwrap_err();
        assert_eq!(foreign.code(), ErrorCode::Unauthorized);
        assert!(foreign.to_string().contains("addressed to"), "{foreign}");

        let garbage = redeem(&mut loaded, &device, "hello").await;
        assert_eq!(garbage.unwrap_err().code(), ErrorCode::BadRequest);

        let unreachable = redeem(&mut loaded, &device, &invite(&device, 24, nowhere)).await;
        let unreachable = unreachable.unwrap_err();
        assert_eq!(unreachable.code(), ErrorCode::Partition, "{unreachable}");
        assert!(unreachable.to_string().contains("same network"));

        assert!(loaded.config.community_id().is_none());
        assert!(!loaded.path.exists(), "nothing was saved");
    }

    #[tokio::test]
    async fn a_member_of_another_community_is_refused_and_of_the_same_one_has_nothing_to_do() {
        let home = tempfile::tempdir().unwrap();
        let mut loaded = fresh(home.path());
        let device = DeviceKey::generate();
        let text = invite(&device, 24, closed_port());
        let community = Invite::decode(&text).unwrap().community_id;

        loaded.config.community.community_id = Some(community);
        let again = redeem(&mut loaded, &device, &text).await.unwrap();
        assert!(matches!(again, Joined::Already { .. }));

        let elsewhere = CommunityId::of_root(DeviceKey::generate().node_id());
        loaded.config.community.community_id = Some(elsewhere);
        let refused = redeem(&mut loaded, &device, &text).await.unwrap_err();
        assert!(matches!(refused, JoinError::OtherCommunity(_)), "{refused}");
    }
}
