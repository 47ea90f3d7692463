//! The community as the log says it is: members and their levels,
//! revocations, open invites, policy — the materialised view behind the
//! community manifest (Contract §6.2). Built by folding events in replay
//! order (§7.4); also the judge of whether an author may write an event at
//! that point of history.

use std::collections::BTreeMap;

use hearthnet_base::crypto::verify_canonical;
use hearthnet_base::event::Event;
use hearthnet_base::{CommunityId, DeviceKey, NodeId, Timestamp, TrustLevel, sign_value};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Reject, RejectCode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    pub level: TrustLevel,
    pub added_at: Timestamp,
    pub added_by: NodeId,
    pub since_lamport: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevokedState {
    pub revoked_at: Timestamp,
    pub lamport: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteState {
    pub invitee: NodeId,
    pub level: TrustLevel,
    pub expires_at: Timestamp,
    pub inviter: NodeId,
    pub used: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommunityView {
    pub community_id: CommunityId,
    pub name: String,
    pub created_at: Option<Timestamp>,
    pub policy: Value,
    pub members: BTreeMap<NodeId, MemberState>,
    pub revoked: BTreeMap<NodeId, RevokedState>,
    pub invites: BTreeMap<String, InviteState>,
    /// Highest Lamport applied.
    pub head: u64,
    /// Events applied.
    pub count: u64,
    /// `(lamport, event_id)` of the last event applied, for replay order.
    pub last: Option<(u64, String)>,
}

impl CommunityView {
    pub fn new(community_id: CommunityId) -> Self {
        Self {
            community_id,
            name: String::new(),
            created_at: None,
            policy: json!({}),
            members: BTreeMap::new(),
            revoked: BTreeMap::new(),
            invites: BTreeMap::new(),
            head: 0,
            count: 0,
            last: None,
        }
    }

    /// The level of `node` now: `Unknown` for strangers and revoked ones.
    pub fn level_of(&self, node: &NodeId) -> TrustLevel {
        if self.revoked.contains_key(node) {
            return TrustLevel::Unknown;
        }
        self.members
            .get(node)
            .map_or(TrustLevel::Unknown, |m| m.level)
    }

    pub fn is_revoked(&self, node: &NodeId) -> bool {
        self.revoked.contains_key(node)
    }

    /// Whether `e` would come after everything applied so far.
    pub fn is_in_order(&self, e: &Event) -> bool {
        self.last
            .as_ref()
            .is_none_or(|(l, id)| (e.lamport, e.event_id.as_str()) > (*l, id.as_str()))
    }

    fn policy_u64(&self, key: &str, default: u64) -> u64 {
        self.policy
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or(default)
    }

    /// The author's level at the event's point of history: a member since
    /// before it, and not revoked before it.
    fn author_level(&self, e: &Event) -> Result<TrustLevel, Reject> {
        if let Some(r) = self.revoked.get(&e.author)
            && r.lamport < e.lamport
        {
            return Err(Reject::new(
                RejectCode::RevokedAuthor,
                format!("{} was revoked at Lamport {}", e.author.short(), r.lamport),
            ));
        }
        match self.members.get(&e.author) {
            Some(m) if m.since_lamport <= e.lamport => Ok(m.level),
            _ => Err(Reject::new(
                RejectCode::UnknownAuthor,
                format!(
                    "{} is not a member at Lamport {}",
                    e.author.short(),
                    e.lamport
                ),
            )),
        }
    }

    /// Whether `e` may be written by its author at its point of history.
    pub fn authorize(&self, e: &Event) -> Result<(), Reject> {
        let data = &e.data;
        let node = |k: &str| data[k].as_str().and_then(|s| NodeId::parse(s).ok());
        match e.event_type.as_str() {
            "community.created" => {
                if self.created_at.is_some() {
                    return Err(Reject::new(
                        RejectCode::Unauthorized,
                        "the community was already created",
                    ));
                }
                if e.author != self.community_id.root_key()
                    || node("founder_node_id") != Some(e.author)
                {
                    return Err(Reject::new(
                        RejectCode::Unauthorized,
                        "only the root key founds its community",
                    ));
                }
                Ok(())
            }
            "community.member.joined" => {
                let invite_id = data["invite_event_id"].as_str().unwrap_or_default();
                let invite = self.invites.get(invite_id).ok_or_else(|| {
                    Reject::new(RejectCode::Unauthorized, format!("no invite {invite_id}"))
                })?;
                if invite.invitee != e.author {
                    return Err(Reject::new(
                        RejectCode::Unauthorized,
                        "the invite is addressed to another node",
                    ));
                }
                if invite.used {
                    return Err(Reject::new(
                        RejectCode::Unauthorized,
                        "the invite was already used",
                    ));
                }
                if e.wall_clock > invite.expires_at {
                    return Err(Reject::new(
                        RejectCode::Unauthorized,
                        format!("the invite expired at {}", invite.expires_at),
                    ));
                }
                if self.is_revoked(&e.author) {
                    return Err(Reject::new(
                        RejectCode::RevokedAuthor,
                        "a revoked node cannot rejoin",
                    ));
                }
                Ok(())
            }
            kind => {
                let level = self.author_level(e)?;
                match kind {
                    "community.member.invited" => {
                        let may = level >= TrustLevel::Trusted
                            || self
                                .policy
                                .get("default_member_can_invite")
                                .and_then(Value::as_bool)
                                .unwrap_or(true);
                        if !may {
                            return Err(Reject::new(
                                RejectCode::Unauthorized,
                                "members of this community may not invite",
                            ));
                        }
                        if data["initial_level"] == "anchor" {
                            return Err(Reject::new(
                                RejectCode::Unauthorized,
                                "an invite grants member or trusted",
                            ));
                        }
                        Ok(())
                    }
                    "community.member.revoked" => self.check_cosigned(
                        e,
                        level,
                        self.policy_u64("min_signatures_to_revoke", 3),
                    ),
                    "community.member.demoted" => self.check_cosigned(
                        e,
                        level,
                        self.policy_u64("min_signatures_to_demote", 3),
                    ),
                    "community.member.promoted" => self.check_cosigned(e, level, 1),
                    "community.policy.updated" if e.author != self.community_id.root_key() => {
                        Err(Reject::new(
                            RejectCode::Unauthorized,
                            "only the root key changes the policy",
                        ))
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    /// Revocations, promotions and demotions carry co-signatures of
    /// distinct trusted members over the data without `co_signers`.
    fn check_cosigned(
        &self,
        e: &Event,
        author_level: TrustLevel,
        needed: u64,
    ) -> Result<(), Reject> {
        if author_level < TrustLevel::Trusted {
            return Err(Reject::new(
                RejectCode::Unauthorized,
                "only trusted members do this",
            ));
        }
        let mut payload = e.data.clone();
        if let Some(m) = payload.as_object_mut() {
            m.remove("co_signers");
        }
        let mut signers = std::collections::BTreeSet::new();
        for c in e.data["co_signers"].as_array().into_iter().flatten() {
            let (Some(id), Some(sig)) = (
                c["node_id"].as_str().and_then(|s| NodeId::parse(s).ok()),
                c["signature"].as_str(),
            ) else {
                continue;
            };
            let trusted = self.level_of(&id) >= TrustLevel::Trusted;
            if trusted && verify_canonical(&payload, sig, &id).is_ok() {
                signers.insert(id);
            }
        }
        if (signers.len() as u64) < needed {
            return Err(Reject::new(
                RejectCode::Unauthorized,
                format!(
                    "needs {needed} distinct trusted co-signers, has {}",
                    signers.len()
                ),
            ));
        }
        Ok(())
    }

    /// Fold one authorised event into the view.
    pub fn apply(&mut self, e: &Event) {
        let data = &e.data;
        let node = |k: &str| data[k].as_str().and_then(|s| NodeId::parse(s).ok());
        let level = |k: &str| match data[k].as_str() {
            Some("anchor") => TrustLevel::Anchor,
            Some("trusted") => TrustLevel::Trusted,
            _ => TrustLevel::Member,
        };
        match e.event_type.as_str() {
            "community.created" => {
                self.name = data["name"].as_str().unwrap_or_default().to_owned();
                self.created_at = Some(e.wall_clock);
                self.policy = data["policy"].clone();
                self.members.insert(
                    e.author,
                    MemberState {
                        level: TrustLevel::Anchor,
                        added_at: e.wall_clock,
                        added_by: e.author,
                        since_lamport: e.lamport,
                    },
                );
            }
            "community.member.invited" => {
                if let Some(invitee) = node("invitee_node_id") {
                    let expires_at = data["expires_at"]
                        .as_str()
                        .and_then(|s| Timestamp::parse(s).ok());
                    self.invites.insert(
                        e.event_id.clone(),
                        InviteState {
                            invitee,
                            level: level("initial_level"),
                            expires_at: expires_at.unwrap_or(e.wall_clock),
                            inviter: e.author,
                            used: false,
                        },
                    );
                }
            }
            "community.member.joined" => {
                let invite_id = data["invite_event_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if let Some(invite) = self.invites.get_mut(&invite_id) {
                    invite.used = true;
                    let added_by = invite.inviter;
                    let level = invite.level;
                    self.members.entry(e.author).or_insert(MemberState {
                        level,
                        added_at: e.wall_clock,
                        added_by,
                        since_lamport: e.lamport,
                    });
                }
            }
            "community.member.revoked" => {
                if let Some(target) = node("target_node_id") {
                    self.revoked.entry(target).or_insert(RevokedState {
                        revoked_at: e.wall_clock,
                        lamport: e.lamport,
                    });
                }
            }
            "community.member.promoted" | "community.member.demoted" => {
                if let Some(target) = node("target_node_id")
                    && let Some(m) = self.members.get_mut(&target)
                {
                    m.level = level("new_level");
                }
            }
            "community.policy.updated" => self.policy = data["policy"].clone(),
            _ => {}
        }
        self.head = self.head.max(e.lamport);
        self.count += 1;
        if self.is_in_order(e) {
            self.last = Some((e.lamport, e.event_id.clone()));
        }
    }

    /// The community manifest of this view (Contract §6.2), signed by `key`
    /// (the root at genesis, any anchor afterwards).
    pub fn manifest(&self, key: &DeviceKey) -> Result<Value, hearthnet_base::SignatureError> {
        let members: Vec<Value> = self
            .members
            .iter()
            .map(|(id, m)| json!({"node_id": id, "level": m.level, "added_at": m.added_at, "added_by": m.added_by}))
            .collect();
        let revoked: Vec<Value> = self
            .revoked
            .iter()
            .map(|(id, r)| json!({"node_id": id, "revoked_at": r.revoked_at}))
            .collect();
        let unsigned = json!({
            "version": 1,
            "community_id": self.community_id,
            "name": self.name,
            "root_key": self.community_id.root_key(),
            "created_at": self.created_at.unwrap_or_else(Timestamp::now),
            "lamport_at_creation": 0,
            "policy": self.policy,
            "members": members,
            "revoked": revoked,
            "head_lamport": self.head,
        });
        sign_value(unsigned, key)
    }
}
