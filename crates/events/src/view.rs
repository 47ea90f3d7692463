//! The community as the log says it is: members and their levels,
//! revocations, open invites, policy — the materialised view behind the
//! community manifest (Contract §6.2). Built by folding events in replay
//! order (§7.4); also the judge of whether an author may write an event at
//! that point of history, by the membership rules of SECURITY.md.

use std::collections::{BTreeMap, BTreeSet};

use hearthnet_base::crypto::verify_canonical;
use hearthnet_base::event::Event;
use hearthnet_base::{CommunityId, DeviceKey, NodeId, Timestamp, TrustLevel, sign_value};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::history::AUTHOR_PREV;
use crate::{Reject, RejectCode};

/// Where an event sits in the total order of the log (§7.4).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    pub lamport: u64,
    pub event_id: String,
}

impl Position {
    pub fn of(e: &Event) -> Self {
        Self {
            lamport: e.lamport,
            event_id: e.event_id.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    pub level: TrustLevel,
    pub added_at: Timestamp,
    pub added_by: NodeId,
    pub since_lamport: u64,
    /// Who brought this member to its level: the inviter and every
    /// promoter. A quorum may not lie within one member's sponsorship.
    #[serde(default)]
    pub sponsors: BTreeSet<NodeId>,
    /// Whether this member's events carry `author_prev` links; once one
    /// does, every later one must.
    #[serde(default)]
    pub linked: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevokedState {
    pub revoked_at: Timestamp,
    pub lamport: u64,
    /// The revocation's place in the log.
    pub at: Position,
    /// The target's last event that the revokers knew (`data.target_last_event_id`):
    /// the target keeps exactly that event and its `author_prev` ancestors.
    #[serde(default)]
    pub last_event_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteState {
    pub invitee: NodeId,
    pub level: TrustLevel,
    pub expires_at: Timestamp,
    pub inviter: NodeId,
    pub used: bool,
}

/// What the revocations of the whole log take from their targets, at every
/// position: an author revoked anywhere in the log writes nothing after its
/// revocation, and before it only the events its revokers knew of. Built by
/// the log from the revocations it holds (it needs the targets' events to
/// follow their `author_prev` links), so a backdated event of a revoked
/// author is refused at any Lamport once the revocation is known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cutoffs(BTreeMap<NodeId, Cutoff>);

#[derive(Debug, Clone, PartialEq)]
pub struct Cutoff {
    /// The first revocation of the target.
    pub at: Position,
    /// The target's events the revokers knew of; `None` for a revocation
    /// that names no last event (written by a v1 node): then the position
    /// alone decides.
    pub kept: Option<BTreeSet<String>>,
}

impl Cutoffs {
    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Cutoff)> {
        self.0.iter()
    }

    pub fn insert(&mut self, target: NodeId, cutoff: Cutoff) {
        self.0.insert(target, cutoff);
    }

    /// Whether `e` survives the revocations of its author. A join always
    /// does: revokers knew their target was a member, and cutting the
    /// join would undo the very revocation that cut it.
    pub fn admit(&self, e: &Event) -> Result<(), Reject> {
        let Some(cut) = self.0.get(&e.author) else {
            return Ok(());
        };
        if e.event_type == "community.member.joined" && Position::of(e) < cut.at {
            return Ok(());
        }
        let before = Position::of(e) < cut.at;
        let known = cut.kept.as_ref().is_none_or(|k| k.contains(&e.event_id));
        if before && known {
            return Ok(());
        }
        Err(Reject::new(
            RejectCode::RevokedAuthor,
            if before {
                format!(
                    "{} was revoked at Lamport {}, and this event is not one its revokers knew",
                    e.author.short(),
                    cut.at.lamport
                )
            } else {
                format!(
                    "{} was revoked at Lamport {}",
                    e.author.short(),
                    cut.at.lamport
                )
            },
        ))
    }
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
    /// Digests of the co-signed payloads of counted changes: each is
    /// honoured once.
    #[serde(default)]
    pub cosigned: BTreeSet<String>,
    /// Each author's live market posts (the cap of
    /// [`crate::market::MAX_LIVE_POSTS_PER_AUTHOR`] is judged against it).
    #[serde(default)]
    pub live_posts: crate::market::LivePosts,
    /// Highest Lamport applied.
    pub head: u64,
    /// Events applied.
    pub count: u64,
    /// `(lamport, event_id)` of the last event applied, for replay order.
    pub last: Option<(u64, String)>,
}

/// Policy defaults where the genesis policy says nothing (M13 §4.1; the
/// promotion quorum is ours).
const DEFAULT_PROMOTE_QUORUM: u64 = 1;
const DEFAULT_DEMOTE_QUORUM: u64 = 3;
const DEFAULT_REVOKE_QUORUM: u64 = 3;
/// Taking the root key's level or membership needs at least this many
/// anchors, whatever the policy says.
const ROOT_QUORUM_FLOOR: u64 = 2;

fn unauthorized(detail: impl Into<String>) -> Reject {
    Reject::new(RejectCode::Unauthorized, detail)
}

fn parse_level(v: &Value) -> Option<TrustLevel> {
    match v.as_str()? {
        "member" => Some(TrustLevel::Member),
        "trusted" => Some(TrustLevel::Trusted),
        "anchor" => Some(TrustLevel::Anchor),
        _ => None,
    }
}

/// What co-signers of a membership change sign: the event type and the
/// data without `co_signers` and the author's own `author_prev` link. The
/// type keeps a demotion's signatures from revoking; the data's required
/// `client_id` makes every change's payload unique, and a payload is
/// honoured once.
pub fn cosigned_payload(event_type: &str, data: &Value) -> Value {
    let mut data = data.clone();
    if let Some(m) = data.as_object_mut() {
        m.remove("co_signers");
        m.remove(AUTHOR_PREV);
    }
    json!({"event_type": event_type, "data": data})
}

fn payload_digest(payload: &Value) -> String {
    let bytes = hearthnet_base::to_canonical_bytes(payload).unwrap_or_default();
    blake3::hash(&bytes).to_hex().to_string()
}

/// What a co-signed change asks of its co-signers.
struct Quorum {
    target: NodeId,
    needed: u64,
    /// The lowest level a co-signer may have.
    signer_level: TrustLevel,
}

/// How a co-signed change (promotion, demotion, revocation) stands
/// against its quorum at one point of history: what [`CommunityView`]
/// judges when the event arrives, told before it is written, so those
/// gathering signatures know how many are still missing and who may give
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub target: NodeId,
    /// Co-signatures the change needs.
    pub needed: u64,
    /// The lowest level a co-signer may have.
    pub signer_level: TrustLevel,
    /// Co-signers whose signatures count.
    pub counted: BTreeSet<NodeId>,
    /// Co-signatures that do not count, each with the reason in words
    /// (the signer as written, since it may not be a node id).
    pub not_counted: Vec<(String, String)>,
    /// A member other than the root who is, or sponsored, every counted
    /// co-signer: with a quorum of two or more the change does not count
    /// until a co-signer outside its lineage signs.
    pub common_sponsor: Option<NodeId>,
    /// These co-signatures were already used by a change that counts.
    pub already_used: bool,
}

impl Tally {
    /// Co-signatures still missing: an independent one when the counted
    /// ones all come from one member's lineage.
    pub fn missing(&self) -> u64 {
        if self.blocked_by_sponsor().is_some() {
            1
        } else {
            self.needed.saturating_sub(self.counted.len() as u64)
        }
    }

    /// The member whose lineage every counted co-signer is in, when that
    /// alone keeps a change with enough co-signatures from counting.
    pub fn blocked_by_sponsor(&self) -> Option<NodeId> {
        self.common_sponsor
            .filter(|_| self.needed >= 2 && self.counted.len() as u64 >= self.needed)
    }

    /// Whether the co-signatures would let the change count (the author's
    /// own level is judged apart).
    pub fn is_met(&self) -> bool {
        self.missing() == 0 && !self.already_used
    }

    /// Who may still co-sign: members at the signer level, not the
    /// target, not yet counted.
    pub fn may_still_sign<'a>(
        &'a self,
        view: &'a CommunityView,
    ) -> impl Iterator<Item = NodeId> + 'a {
        view.members
            .keys()
            .filter(move |m| {
                **m != self.target
                    && !self.counted.contains(m)
                    && view.level_of(m) >= self.signer_level
            })
            .copied()
    }
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
            cosigned: BTreeSet::new(),
            live_posts: BTreeMap::new(),
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

    /// How many posts of `author` count and lapse after `at`.
    pub fn live_posts_of(&self, author: &NodeId, at: Timestamp) -> usize {
        crate::market::live_at(&self.live_posts, author, at)
    }

    pub fn is_revoked(&self, node: &NodeId) -> bool {
        self.revoked.contains_key(node)
    }

    /// The position of the last event applied.
    pub fn position(&self) -> Option<Position> {
        self.last.as_ref().map(|(lamport, id)| Position {
            lamport: *lamport,
            event_id: id.clone(),
        })
    }

    fn policy_u64(&self, key: &str, default: u64) -> u64 {
        self.policy
            .get(key)
            .and_then(Value::as_u64)
            .unwrap_or(default)
    }

    fn is_root(&self, node: &NodeId) -> bool {
        *node == self.community_id.root_key()
    }

    /// The author's level at the event's point of history: a member since
    /// before it, and not revoked before it.
    fn author_level(&self, e: &Event) -> Result<TrustLevel, Reject> {
        if let Some(r) = self.revoked.get(&e.author) {
            return Err(Reject::new(
                RejectCode::RevokedAuthor,
                format!("{} was revoked at Lamport {}", e.author.short(), r.lamport),
            ));
        }
        match self.members.get(&e.author) {
            Some(m) => Ok(m.level),
            None => Err(Reject::new(
                RejectCode::UnknownAuthor,
                format!(
                    "{} is not a member at Lamport {}",
                    e.author.short(),
                    e.lamport
                ),
            )),
        }
    }

    /// Whether the id of the envelope `bytes` may count at this point of
    /// history: where links are required (only our writers can write
    /// there, and they bind every id), an id not bound to its content
    /// ([`Event::id_is_bound`]) is a copy and counts nowhere. So of two
    /// envelopes under one id at most the bound one counts, whichever of
    /// them a log holds: the conflict never needs the other, which a log
    /// may not have (held events are not synced).
    pub fn authorize_id(&self, bytes: &[u8]) -> Result<(), Reject> {
        if !self.requires_links() {
            return Ok(());
        }
        let bound = serde_json::from_slice::<Value>(bytes).is_ok_and(|v| Event::id_is_bound(&v));
        if bound {
            Ok(())
        } else {
            Err(unauthorized(
                "this community requires event ids bound to their content, and this one is not",
            ))
        }
    }

    fn requires_links(&self) -> bool {
        self.policy
            .get("require_event_links")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Whether `e` may be written by its author at its point of history:
    /// this view is the community just before `e`, and `cutoffs` what the
    /// revocations of the whole log take from their targets.
    pub fn authorize(&self, e: &Event, cutoffs: &Cutoffs) -> Result<(), Reject> {
        cutoffs.admit(e)?;
        if self.requires_links() && e.data.get(AUTHOR_PREV).is_none() {
            return Err(unauthorized(format!(
                "this community requires data.{AUTHOR_PREV} on every event (null on an author's first)"
            )));
        }
        if self.members.get(&e.author).is_some_and(|m| m.linked)
            && e.data.get(AUTHOR_PREV).is_none()
        {
            return Err(unauthorized(format!(
                "{} links its events, and this one has no data.{AUTHOR_PREV}",
                e.author.short()
            )));
        }
        match e.event_type.as_str() {
            "community.created" => self.authorize_creation(e),
            "community.member.joined" => self.authorize_join(e),
            kind => {
                let level = self.author_level(e)?;
                match kind {
                    "community.member.invited" => self.authorize_invite(e, level),
                    "community.member.promoted" => self.authorize_promotion(e, level),
                    "community.member.demoted" => self.authorize_demotion(e, level),
                    "community.member.revoked" => self.authorize_revocation(e, level),
                    "community.policy.updated" => {
                        if !self.is_root(&e.author) || level < TrustLevel::Anchor {
                            return Err(unauthorized(
                                "only the root key, while an anchor, changes the policy",
                            ));
                        }
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        }
    }

    fn authorize_creation(&self, e: &Event) -> Result<(), Reject> {
        if self.created_at.is_some() {
            return Err(unauthorized("the community was already created"));
        }
        let founder = e.data["founder_node_id"]
            .as_str()
            .and_then(|s| NodeId::parse(s).ok());
        if !self.is_root(&e.author) || founder != Some(e.author) {
            return Err(unauthorized("only the root key founds its community"));
        }
        Ok(())
    }

    fn authorize_join(&self, e: &Event) -> Result<(), Reject> {
        let invite_id = e.data["invite_event_id"].as_str().unwrap_or_default();
        let invite = self
            .invites
            .get(invite_id)
            .ok_or_else(|| unauthorized(format!("no invite {invite_id} before this join")))?;
        if invite.invitee != e.author {
            return Err(unauthorized("the invite is addressed to another node"));
        }
        if invite.used {
            return Err(unauthorized("the invite was already used"));
        }
        if e.wall_clock > invite.expires_at {
            return Err(unauthorized(format!(
                "the invite expired at {}",
                invite.expires_at
            )));
        }
        if self.is_revoked(&e.author) {
            return Err(Reject::new(
                RejectCode::RevokedAuthor,
                "a revoked node cannot rejoin",
            ));
        }
        if self.members.contains_key(&e.author) {
            return Err(unauthorized("already a member"));
        }
        Ok(())
    }

    /// Members invite members (if the policy lets them); only anchors
    /// invite at `trusted`; nobody invites at `anchor`.
    fn authorize_invite(&self, e: &Event, level: TrustLevel) -> Result<(), Reject> {
        let members_may = self
            .policy
            .get("default_member_can_invite")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if level < TrustLevel::Trusted && !members_may {
            return Err(unauthorized("members of this community may not invite"));
        }
        match parse_level(&e.data["initial_level"]) {
            Some(TrustLevel::Member) => Ok(()),
            Some(TrustLevel::Trusted) if level >= TrustLevel::Anchor => Ok(()),
            Some(TrustLevel::Trusted) => Err(unauthorized(
                "only anchors invite at trusted; invite at member and promote",
            )),
            _ => Err(unauthorized("an invite grants member or trusted")),
        }
    }

    /// The target of a membership change: a member, not revoked.
    fn target(&self, data: &Value) -> Result<(NodeId, &MemberState), Reject> {
        let target = data["target_node_id"]
            .as_str()
            .and_then(|s| NodeId::parse(s).ok())
            .ok_or_else(|| unauthorized("data.target_node_id is not a node id"))?;
        if self.is_revoked(&target) {
            return Err(unauthorized(format!("{} is revoked", target.short())));
        }
        let state = self
            .members
            .get(&target)
            .ok_or_else(|| unauthorized(format!("{} is not a member", target.short())))?;
        Ok((target, state))
    }

    /// Promotion raises the target's level; anchors promote, with the
    /// policy's quorum of anchors.
    fn authorize_promotion(&self, e: &Event, level: TrustLevel) -> Result<(), Reject> {
        if level < TrustLevel::Anchor {
            return Err(unauthorized("only anchors promote"));
        }
        self.check_quorum(e)
    }

    /// Demotion lowers the target's level, never below member (that is
    /// revocation); co-signers are at least trusted and at least the
    /// target's level.
    fn authorize_demotion(&self, e: &Event, level: TrustLevel) -> Result<(), Reject> {
        if level < TrustLevel::Trusted {
            return Err(unauthorized("only trusted members demote"));
        }
        self.check_quorum(e)
    }

    fn authorize_revocation(&self, e: &Event, level: TrustLevel) -> Result<(), Reject> {
        if level < TrustLevel::Trusted {
            return Err(unauthorized("only trusted members revoke"));
        }
        self.check_quorum(e)
    }

    /// What a co-signed change of `event_type` with `data` asks: its
    /// target must be a member, not revoked, whose level the change
    /// really raises (promotion) or lowers (demotion).
    fn quorum(&self, event_type: &str, data: &Value) -> Result<Quorum, Reject> {
        let (target, state) = self.target(data)?;
        let new_level = || {
            parse_level(&data["new_level"])
                .ok_or_else(|| unauthorized("data.new_level is not a level"))
        };
        match event_type {
            "community.member.promoted" => {
                let new = new_level()?;
                if new <= state.level {
                    return Err(unauthorized(format!(
                        "a promotion raises the level; {} is already {}",
                        target.short(),
                        state.level
                    )));
                }
                Ok(Quorum {
                    target,
                    needed: self.policy_u64("min_signatures_to_promote", DEFAULT_PROMOTE_QUORUM),
                    signer_level: TrustLevel::Anchor,
                })
            }
            "community.member.demoted" => {
                let new = new_level()?;
                if new >= state.level {
                    return Err(unauthorized(format!(
                        "a demotion lowers the level; {} is {}",
                        target.short(),
                        state.level
                    )));
                }
                Ok(self.removal_quorum(
                    target,
                    state.level,
                    self.policy_u64("min_signatures_to_demote", DEFAULT_DEMOTE_QUORUM),
                ))
            }
            "community.member.revoked" => Ok(self.removal_quorum(
                target,
                state.level,
                self.policy_u64("min_signatures_to_revoke", DEFAULT_REVOKE_QUORUM),
            )),
            other => Err(unauthorized(format!("{other} is not a co-signed change"))),
        }
    }

    /// Who may lower `target`: members at least trusted and at least at
    /// its level; the root only by several anchors, whatever the policy.
    fn removal_quorum(&self, target: NodeId, target_level: TrustLevel, needed: u64) -> Quorum {
        let needed = if self.is_root(&target) {
            needed.max(ROOT_QUORUM_FLOOR)
        } else {
            needed
        };
        Quorum {
            target,
            needed,
            signer_level: target_level.max(TrustLevel::Trusted),
        }
    }

    /// How the co-signatures in `data.co_signers` (over
    /// [`cosigned_payload`]) stand against the quorum of the change at
    /// this point of history; an error when the change itself cannot be
    /// (no such target, a level it does not raise or lower, no
    /// `client_id`). Judges exactly as the log will, but not the author.
    pub fn tally(&self, event_type: &str, data: &Value) -> Result<Tally, Reject> {
        let quorum = self.quorum(event_type, data)?;
        if !data["client_id"]
            .as_str()
            .is_some_and(|c| !c.is_empty() && c.len() <= 128)
        {
            return Err(unauthorized(
                "data.client_id, a nonce the co-signers sign, is required (1 to 128 characters)",
            ));
        }
        let payload = cosigned_payload(event_type, data);
        let mut counted = BTreeSet::new();
        let mut not_counted = Vec::new();
        for c in data["co_signers"].as_array().into_iter().flatten() {
            let named = c["node_id"].as_str().unwrap_or_default();
            let why = match (NodeId::parse(named), c["signature"].as_str()) {
                (Err(_), _) => Some("not a node id".to_owned()),
                (_, None) => Some("no signature".to_owned()),
                (Ok(id), _) if id == quorum.target => Some("the target cannot co-sign".to_owned()),
                (Ok(id), _) if counted.contains(&id) => Some("signed twice".to_owned()),
                (Ok(id), _) if self.level_of(&id) < quorum.signer_level => Some(format!(
                    "is {}, and co-signers must be {} or above",
                    self.level_of(&id),
                    quorum.signer_level
                )),
                (Ok(id), Some(sig)) => match verify_canonical(&payload, sig, &id) {
                    Ok(()) => {
                        counted.insert(id);
                        None
                    }
                    Err(_) => Some("the signature does not verify".to_owned()),
                },
            };
            if let Some(why) = why {
                not_counted.push((named.chars().take(64).collect(), why));
            }
        }
        Ok(Tally {
            common_sponsor: self.common_sponsor(&counted),
            already_used: self.cosigned.contains(&payload_digest(&payload)),
            target: quorum.target,
            needed: quorum.needed,
            signer_level: quorum.signer_level,
            counted,
            not_counted,
        })
    }

    /// The co-signatures of `e` come from distinct members other than the
    /// target, at the required level at this position, reach the quorum,
    /// were not used by an earlier change, and no single member other than
    /// the root sponsored all of them.
    fn check_quorum(&self, e: &Event) -> Result<(), Reject> {
        let tally = self.tally(&e.event_type, &e.data)?;
        if tally.already_used {
            return Err(unauthorized(
                "these co-signatures were already used by an earlier change",
            ));
        }
        if (tally.counted.len() as u64) < tally.needed {
            return Err(unauthorized(format!(
                "needs {} distinct co-signers at level {} or above (not the target), has {}",
                tally.needed,
                tally.signer_level,
                tally.counted.len()
            )));
        }
        if let Some(sponsor) = tally.blocked_by_sponsor() {
            return Err(unauthorized(format!(
                "every co-signer is {} or was brought in by it; a quorum needs independent members",
                sponsor.short()
            )));
        }
        Ok(())
    }

    /// Everyone who sponsored `node`, directly or through its sponsors.
    fn ancestry(&self, node: &NodeId) -> BTreeSet<NodeId> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![*node];
        while let Some(n) = todo.pop() {
            for s in self.members.get(&n).into_iter().flat_map(|m| &m.sponsors) {
                if seen.insert(*s) {
                    todo.push(*s);
                }
            }
        }
        seen
    }

    /// A member other than the root who is, or sponsored, every signer.
    fn common_sponsor(&self, signers: &BTreeSet<NodeId>) -> Option<NodeId> {
        let mut common: Option<BTreeSet<NodeId>> = None;
        for s in signers {
            let mut line = self.ancestry(s);
            line.insert(*s);
            common = Some(match common {
                None => line,
                Some(c) => c.intersection(&line).copied().collect(),
            });
        }
        common?.into_iter().find(|n| !self.is_root(n))
    }

    /// Fold one authorised event into the view.
    pub fn apply(&mut self, e: &Event) {
        let data = &e.data;
        let node = |k: &str| data[k].as_str().and_then(|s| NodeId::parse(s).ok());
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
                        sponsors: BTreeSet::new(),
                        linked: false,
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
                            level: parse_level(&data["initial_level"])
                                .unwrap_or(TrustLevel::Member),
                            expires_at: expires_at.unwrap_or(e.wall_clock),
                            inviter: e.author,
                            used: false,
                        },
                    );
                }
            }
            "community.member.joined" => {
                let invite_id = data["invite_event_id"].as_str().unwrap_or_default();
                if let Some(invite) = self.invites.get_mut(invite_id) {
                    invite.used = true;
                    let added_by = invite.inviter;
                    let level = invite.level;
                    self.members.entry(e.author).or_insert(MemberState {
                        level,
                        added_at: e.wall_clock,
                        added_by,
                        since_lamport: e.lamport,
                        sponsors: BTreeSet::from([added_by]),
                        linked: false,
                    });
                }
            }
            "community.member.revoked" => {
                if let Some(target) = node("target_node_id") {
                    self.revoked.entry(target).or_insert(RevokedState {
                        revoked_at: e.wall_clock,
                        lamport: e.lamport,
                        at: Position::of(e),
                        last_event_id: data["target_last_event_id"].as_str().map(str::to_owned),
                    });
                }
            }
            "community.member.promoted" | "community.member.demoted" => {
                if let Some(target) = node("target_node_id")
                    && let Some(level) = parse_level(&data["new_level"])
                    && let Some(m) = self.members.get_mut(&target)
                {
                    m.level = level;
                    if e.event_type == "community.member.promoted" {
                        m.sponsors.insert(e.author);
                    }
                }
            }
            "community.policy.updated" => self.policy = data["policy"].clone(),
            _ => crate::market::apply_live(&mut self.live_posts, e),
        }
        if matches!(
            e.event_type.as_str(),
            "community.member.promoted" | "community.member.demoted" | "community.member.revoked"
        ) {
            self.cosigned
                .insert(payload_digest(&cosigned_payload(&e.event_type, data)));
        }
        if data.get(AUTHOR_PREV).is_some()
            && let Some(m) = self.members.get_mut(&e.author)
        {
            m.linked = true;
        }
        self.head = self.head.max(e.lamport);
        self.count += 1;
        let here = Some((e.lamport, e.event_id.clone()));
        if here > self.last {
            self.last = here;
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
