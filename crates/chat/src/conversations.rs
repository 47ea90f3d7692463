//! This node's own conversations, folded from `chat.message.*` events:
//! the messages it sent or received (their bodies sealed, as stored) and
//! the receipts their recipients wrote. Other members' messages, which
//! every member stores and relays, are not kept here, and of each peer's
//! conversation only the newest [`MAX_KEPT_PER_PEER`] messages are: a
//! member flooding us holds a bounded share of memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hearthnet_base::event::Event;
use hearthnet_base::{NodeId, Timestamp};

/// One direct message as the log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub event_id: String,
    pub lamport: u64,
    pub author: NodeId,
    pub recipient: NodeId,
    pub client_id: String,
    /// Sealed (`seal::open` reads it).
    pub body: String,
    pub created_at: Timestamp,
    /// From the recipient's own `chat.message.delivered`.
    pub delivered_at: Option<Timestamp>,
    /// From the recipient's own `chat.message.read`.
    pub read_at: Option<Timestamp>,
    /// Whether this node tried to acknowledge it (received messages): a
    /// receipt the log refused is not tried again on every change.
    pub receipt_tried: bool,
}

impl Message {
    /// The other end of the conversation, seen from `me`.
    pub fn peer_of(&self, me: NodeId) -> NodeId {
        if self.author == me {
            self.recipient
        } else {
            self.author
        }
    }
}

/// Messages kept per peer: the newest, in replay order. As many as one
/// `chat.history` call can show.
pub const MAX_KEPT_PER_PEER: usize = crate::MAX_HISTORY_LIMIT;

/// Messages of this node in replay order, with the indexes the service
/// needs.
pub struct Conversations {
    me: NodeId,
    /// Keyed by `(lamport, event_id)`: replay order (Contract §7.4).
    messages: BTreeMap<(u64, String), Message>,
    by_id: HashMap<String, (u64, String)>,
    /// `(author, client_id)` → event id: one message per client id, the
    /// first in replay order (a replay under a new id is not a new message).
    by_client: HashMap<(NodeId, String), String>,
    /// Each peer's messages by replay key, to drop the oldest.
    by_peer: HashMap<NodeId, BTreeSet<(u64, String)>>,
    /// Messages kept per peer at most.
    kept_per_peer: usize,
    /// The log's local sequence number folded in so far.
    seq: i64,
    /// The number of the log's judged-out ids taken in so far
    /// (`EventLog::judged_out`).
    judged_seq: i64,
}

impl Conversations {
    /// The service's fold: the newest [`MAX_KEPT_PER_PEER`] per peer.
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            messages: BTreeMap::new(),
            by_id: HashMap::new(),
            by_client: HashMap::new(),
            by_peer: HashMap::new(),
            kept_per_peer: MAX_KEPT_PER_PEER,
            seq: 0,
            judged_seq: 0,
        }
    }

    /// Every message, for a one-off read the owner asked for (the export).
    pub fn unbounded(me: NodeId) -> Self {
        Self {
            kept_per_peer: usize::MAX,
            ..Self::new(me)
        }
    }

    /// The log's local sequence number this fold has read up to.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// Everything up to `seq` of the log is folded in.
    pub fn folded_up_to(&mut self, seq: i64) {
        self.seq = self.seq.max(seq);
    }

    /// The number of the log's judged-out ids this fold has taken in.
    pub fn judged_seq(&self) -> i64 {
        self.judged_seq
    }

    /// The log no longer counts the events `gone` (judged out, or
    /// displaced by another envelope); `current` is what it counts under
    /// those ids now, taken in instead; ids up to `judged_seq` are done.
    pub fn replace(&mut self, gone: &[String], current: &[Event], judged_seq: i64) {
        for id in gone {
            self.forget(id);
        }
        for event in current {
            self.apply(event);
        }
        self.judged_seq = self.judged_seq.max(judged_seq);
    }

    pub fn wants(event_type: &str) -> bool {
        event_type.starts_with("chat.message.")
    }

    /// Fold one event in; events of others' conversations, receipts not
    /// written by the message's recipient and second messages under one
    /// client id are ignored.
    pub fn apply(&mut self, event: &Event) {
        match event.event_type.as_str() {
            "chat.message.sent" => self.message(event),
            "chat.message.delivered" => self.receipt(event, "delivered_at"),
            "chat.message.read" => self.receipt(event, "read_at"),
            _ => {}
        }
    }

    fn message(&mut self, event: &Event) {
        let data = &event.data;
        let (Some(recipient), Some(client_id), Some(body)) = (
            data["recipient"]
                .as_str()
                .and_then(|r| NodeId::parse(r).ok()),
            data["client_id"].as_str(),
            data["body"].as_str(),
        ) else {
            return;
        };
        let ours = event.author == self.me || recipient == self.me;
        if !ours || event.author == recipient || self.by_id.contains_key(&event.event_id) {
            return;
        }
        let client_key = (event.author, client_id.to_owned());
        let key = (event.lamport, event.event_id.clone());
        // One message per client id: the first in replay order, whatever
        // order the events came in, as on every other node.
        if let Some(held) = self.by_client.get(&client_key).cloned() {
            if self.by_id.get(&held).is_some_and(|k| *k <= key) {
                return;
            }
            self.forget(&held);
        }
        let peer = if event.author == self.me {
            recipient
        } else {
            event.author
        };
        self.by_client.insert(client_key, event.event_id.clone());
        self.by_id.insert(event.event_id.clone(), key.clone());
        let kept = self.by_peer.entry(peer).or_default();
        kept.insert(key.clone());
        let oldest = (kept.len() > self.kept_per_peer)
            .then(|| kept.pop_first())
            .flatten();
        self.messages.insert(
            key,
            Message {
                event_id: event.event_id.clone(),
                lamport: event.lamport,
                author: event.author,
                recipient,
                client_id: client_id.to_owned(),
                body: body.to_owned(),
                created_at: event.wall_clock,
                delivered_at: None,
                read_at: None,
                receipt_tried: false,
            },
        );
        if let Some((_, event_id)) = oldest {
            self.forget(&event_id);
        }
    }

    fn receipt(&mut self, event: &Event, field: &str) {
        let data = &event.data;
        let (Some(target), Some(at)) = (
            data["target_event_id"].as_str(),
            data[field].as_str().and_then(|t| Timestamp::parse(t).ok()),
        ) else {
            return;
        };
        let Some(message) = self
            .by_id
            .get(target)
            .and_then(|key| self.messages.get_mut(key))
        else {
            return;
        };
        // Only the recipient says it received or read a message.
        if event.author != message.recipient {
            return;
        }
        let slot = if field == "read_at" {
            &mut message.read_at
        } else {
            &mut message.delivered_at
        };
        if slot.is_none() {
            *slot = Some(at);
        }
    }

    /// The message `author` sent under `client_id`.
    pub fn by_client(&self, author: NodeId, client_id: &str) -> Option<&Message> {
        let id = self.by_client.get(&(author, client_id.to_owned()))?;
        self.messages.get(self.by_id.get(id)?)
    }

    /// What `peer` wrote to this node and it has not read, in the
    /// conversation up to and including the message `event_id`, in replay
    /// order; `None` when `event_id` is no message of that conversation.
    pub fn unread_up_to(&self, peer: NodeId, event_id: &str) -> Option<Vec<Message>> {
        let key = self.by_id.get(event_id)?;
        if self.messages.get(key)?.peer_of(self.me) != peer {
            return None;
        }
        let unread = self
            .by_peer
            .get(&peer)?
            .range(..=key.clone())
            .filter_map(|k| self.messages.get(k))
            .filter(|m| m.recipient == self.me && m.read_at.is_none())
            .cloned()
            .collect();
        Some(unread)
    }

    /// Messages with `peer` (with anyone when `None`) after Lamport
    /// `since`, in replay order, at most `limit`.
    pub fn history(&self, peer: Option<NodeId>, since: u64, limit: usize) -> Vec<Message> {
        self.messages
            .range((since.saturating_add(1), String::new())..)
            .map(|(_, m)| m)
            .filter(|m| peer.is_none_or(|p| m.peer_of(self.me) == p))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Received messages this node has neither acknowledged nor tried to.
    pub fn undelivered(&self) -> Vec<Message> {
        self.messages
            .values()
            .filter(|m| m.recipient == self.me && m.delivered_at.is_none() && !m.receipt_tried)
            .cloned()
            .collect()
    }

    /// A receipt for `event_id` was tried: it is not offered again.
    pub fn tried(&mut self, event_id: &str) {
        if let Some(m) = self
            .by_id
            .get(event_id)
            .and_then(|key| self.messages.get_mut(key))
        {
            m.receipt_tried = true;
        }
    }

    /// Forget a message whose body does not open: it was never a message
    /// between its author and its recipient (a forger copied a body, or a
    /// broken peer wrote it), so it is neither shown nor acknowledged.
    pub fn forget(&mut self, event_id: &str) {
        if let Some(key) = self.by_id.remove(event_id)
            && let Some(m) = self.messages.remove(&key)
        {
            let peer = m.peer_of(self.me);
            if let Some(kept) = self.by_peer.get_mut(&peer) {
                kept.remove(&key);
                if kept.is_empty() {
                    self.by_peer.remove(&peer);
                }
            }
            self.by_client.remove(&(m.author, m.client_id));
        }
    }

    /// Record this node's own receipt at once (its event folds in later).
    pub fn mark(&mut self, event_id: &str, delivered: Option<Timestamp>, read: Option<Timestamp>) {
        if let Some(m) = self
            .by_id
            .get(event_id)
            .and_then(|key| self.messages.get_mut(key))
        {
            m.delivered_at = m.delivered_at.or(delivered);
            m.read_at = m.read_at.or(read);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::event::NewEvent;
    use hearthnet_base::{CommunityId, DeviceKey};
    use serde_json::{Value, json};

    fn event(key: &DeviceKey, lamport: u64, event_type: &str, data: Value) -> Event {
        let community = CommunityId::of_root(NodeId::from_bytes([9; 32]));
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
    }

    fn sent(key: &DeviceKey, lamport: u64, to: NodeId, client_id: &str) -> Event {
        let data = json!({"client_id": client_id, "recipient": to.full(), "body": "e2e1:x"});
        event(key, lamport, "chat.message.sent", data)
    }

    fn receipt(key: &DeviceKey, lamport: u64, kind: &str, target: &str) -> Event {
        let field = if kind == "read" {
            "read_at"
        } else {
            "delivered_at"
        };
        let data = json!({"target_event_id": target, field: "2026-05-26T08:14:23Z"});
        event(key, lamport, &format!("chat.message.{kind}"), data)
    }

    #[test]
    fn one_message_per_client_id_the_first_in_replay_order_whatever_the_arrival() {
        let (me, a) = (DeviceKey::generate(), DeviceKey::generate());
        let (early, late) = (
            sent(&a, 3, me.node_id(), "c"),
            sent(&a, 7, me.node_id(), "c"),
        );
        for order in [[&early, &late], [&late, &early]] {
            let mut c = Conversations::new(me.node_id());
            for e in order {
                c.apply(e);
            }
            let ids: Vec<String> = c
                .history(None, 0, 10)
                .into_iter()
                .map(|m| m.event_id)
                .collect();
            assert_eq!(ids, std::slice::from_ref(&early.event_id));
            assert_eq!(c.by_client(a.node_id(), "c").map(|m| m.lamport), Some(3));
        }
    }

    #[test]
    fn what_the_log_stops_counting_leaves_and_its_replacement_comes_in() {
        let (me, a) = (DeviceKey::generate(), DeviceKey::generate());
        let first = sent(&a, 3, me.node_id(), "one");
        let mut other = first.clone();
        other.data["body"] = json!("e2e1:y");
        let mut c = Conversations::new(me.node_id());
        c.apply(&first);
        c.apply(&sent(&a, 4, me.node_id(), "two"));
        c.replace(std::slice::from_ref(&first.event_id), &[other], 12);
        let bodies: Vec<String> = c.history(None, 0, 10).into_iter().map(|m| m.body).collect();
        assert_eq!(bodies, ["e2e1:y", "e2e1:x"]);
        assert_eq!(c.judged_seq(), 12);
        c.replace(std::slice::from_ref(&first.event_id), &[], 13);
        assert_eq!(c.history(None, 0, 10).len(), 1);
    }

    #[test]
    fn keeps_only_this_nodes_conversations() {
        let (me, a, b) = (
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
        );
        let mut c = Conversations::new(me.node_id());
        c.apply(&sent(&a, 1, me.node_id(), "1"));
        c.apply(&sent(&me, 2, a.node_id(), "2"));
        c.apply(&sent(&a, 3, b.node_id(), "3"));
        c.apply(&sent(&me, 4, me.node_id(), "4"));
        let all = c.history(None, 0, 100);
        assert_eq!(
            all.iter().map(|m| m.client_id.as_str()).collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert!(c.history(Some(b.node_id()), 0, 100).is_empty());
        assert_eq!(c.history(Some(a.node_id()), 1, 100).len(), 1);
        assert_eq!(c.history(None, 0, 1).len(), 1);
    }

    #[test]
    fn a_replay_under_the_same_client_id_is_one_message() {
        let (me, a) = (DeviceKey::generate(), DeviceKey::generate());
        let mut c = Conversations::new(me.node_id());
        let first = sent(&a, 1, me.node_id(), "same");
        c.apply(&first);
        c.apply(&first);
        c.apply(&sent(&a, 5, me.node_id(), "same"));
        let all = c.history(None, 0, 100);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].event_id, first.event_id);
        assert_eq!(c.undelivered().len(), 1);
        c.forget(&first.event_id);
        assert!(c.history(None, 0, 100).is_empty());
        assert!(c.by_client(a.node_id(), "same").is_none());
    }

    #[test]
    fn only_the_recipients_receipts_count() {
        let (me, a, forger) = (
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
        );
        let mut c = Conversations::new(me.node_id());
        let msg = sent(&me, 1, a.node_id(), "1");
        c.apply(&msg);
        c.apply(&receipt(&forger, 2, "delivered", &msg.event_id));
        c.apply(&receipt(&me, 2, "read", &msg.event_id));
        assert_eq!(c.history(None, 0, 10)[0].delivered_at, None);
        assert_eq!(c.history(None, 0, 10)[0].read_at, None);
        c.apply(&receipt(&a, 3, "delivered", &msg.event_id));
        c.apply(&receipt(&a, 4, "read", &msg.event_id));
        let m = &c.history(None, 0, 10)[0];
        assert!(m.delivered_at.is_some() && m.read_at.is_some());
    }

    #[test]
    fn a_tried_receipt_is_not_offered_again() {
        let (me, a) = (DeviceKey::generate(), DeviceKey::generate());
        let mut c = Conversations::new(me.node_id());
        let (first, second) = (
            sent(&a, 1, me.node_id(), "1"),
            sent(&a, 2, me.node_id(), "2"),
        );
        c.apply(&first);
        c.apply(&second);
        c.tried(&first.event_id);
        let pending = c.undelivered();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].event_id, second.event_id);
    }

    #[test]
    fn only_the_newest_messages_of_each_peer_are_kept() {
        let (me, flooder, friend) = (
            DeviceKey::generate(),
            DeviceKey::generate(),
            DeviceKey::generate(),
        );
        let mut c = Conversations::new(me.node_id());
        c.apply(&sent(&friend, 1, me.node_id(), "hello"));
        c.apply(&sent(&me, 2, flooder.node_id(), "mine"));
        let extra = 5;
        for i in 0..MAX_KEPT_PER_PEER + extra {
            c.apply(&sent(
                &flooder,
                10 + i as u64,
                me.node_id(),
                &format!("f{i}"),
            ));
        }
        // A backdated one is older than all kept: dropped at once.
        c.apply(&sent(&flooder, 3, me.node_id(), "backdated"));
        let theirs = c.history(Some(flooder.node_id()), 0, usize::MAX);
        assert_eq!(theirs.len(), MAX_KEPT_PER_PEER);
        assert_eq!(theirs[0].client_id, format!("f{extra}"));
        assert!(c.by_client(me.node_id(), "mine").is_none());
        assert!(c.by_client(flooder.node_id(), "f0").is_none());
        assert_eq!(c.undelivered().len(), MAX_KEPT_PER_PEER + 1);
        assert_eq!(c.history(Some(friend.node_id()), 0, 10).len(), 1);
    }
}
