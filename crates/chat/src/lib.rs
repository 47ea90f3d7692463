//! M10, direct messages: `chat.send@1.0` and `chat.history@1.0`
//! (Contract §4.15–§4.16), end to end encrypted ([`seal`]).
//!
//! A message is a `chat.message.sent` event whose `data.body` is sealed
//! for the pair of author and recipient; the envelope (author, recipient,
//! `client_id`, Lamport, time) stays in clear and signed, so every member
//! stores and relays what it cannot read. Delivery: handed to the
//! recipient at once when it is reachable (`direct`), else to anchors
//! that keep it for the recipient's next sync (`forwarded`), else left
//! in our own log for sync (`queued`). The recipient writes
//! `chat.message.delivered` when the message reaches its log and
//! `chat.message.read` when its owner reads the conversation.
//!
//! Architecture invariant: plaintext exists only in the author's and the
//! recipient's processes, never in an event or on disk; the log keeps
//! the sealed body as received and [`ChatService`] opens it on read.

mod conversations;
mod opened;
mod seal;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use hearthnet_base::event::Event;
use hearthnet_base::{Blake3Id, DeviceKey, ErrorCode, NodeId, Stability, Timestamp, TrustLevel};
use hearthnet_bus::{Call, CallError, Capability, CapabilityDescriptor, Service, Trust};
use hearthnet_events::{EventLog, Fold, Query};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use conversations::{Conversations, Message};
pub use opened::{Transcript, transcript};
use seal::{PairKeys, Placement};

/// The longest text of one message, in UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
/// Attachments of one message at most.
pub const MAX_ATTACHMENTS: usize = 16;
/// The longest attachment name, in UTF-8 bytes.
pub const MAX_ATTACHMENT_NAME_BYTES: usize = 255;
/// The longest `client_id` (every node's log refuses longer ones).
pub const MAX_CLIENT_ID_CHARS: usize = hearthnet_events::types::MAX_CHAT_CLIENT_ID_CHARS;
// Every body this service seals fits what every node's log accepts.
const _: () = assert!(seal::MAX_SEALED_CHARS <= hearthnet_events::types::MAX_CHAT_BODY_BYTES);
/// `chat.history`'s default and largest `limit`.
pub const DEFAULT_HISTORY_LIMIT: usize = 200;
pub const MAX_HISTORY_LIMIT: usize = 1000;
/// Anchors a message is handed to when its recipient is away (M10 §4.4).
const FORWARD_TO_ANCHORS: usize = 2;
/// Chat events the follower reads from the log at once.
const FOLLOW_PAGE: usize = 500;
/// The longest event id `read_up_to` may name: the log's bound.
pub const MAX_EVENT_ID_CHARS: usize = hearthnet_events::types::MAX_EVENT_ID_BYTES;
/// Read receipts one `chat.history` call writes at most (each is a
/// durable write): the rest are written by the next call.
pub const MAX_READ_RECEIPTS_PER_CALL: usize = 64;
/// Anchors tried at most: with the courier's own timeout per try, this
/// keeps `chat.send` within its deadline however many anchors there are.
const MAX_ANCHOR_TRIES: usize = 3;
/// Delivered receipts written for one peer's messages per UTC day: a
/// member flooding us gets this many, the rest stay unacknowledged (its
/// messages are still shown), and other peers' messages keep theirs.
const MAX_RECEIPTS_PER_PEER_PER_DAY: usize = 500;
/// Receipts are written only while less than this share (in percent) of
/// the node's own daily quota is used: the rest stays for what the node
/// must be able to write, such as revocations and co-signatures.
const RECEIPT_QUOTA_PERCENT: u64 = 75;

/// How a message reaches a node now: the node implements it with its
/// peer client (a push of the one event to the node's peer port).
pub trait Courier: Send + Sync + 'static {
    /// Hand the signed envelope `event` to `node` if it is reachable;
    /// true once `node` holds it (stored now or before).
    fn hand_to(&self, node: NodeId, event: Value) -> BoxFuture<'static, bool>;
    /// The nodes that may be reachable now (verified peers): only these
    /// are tried as anchors.
    fn reachable(&self) -> Vec<NodeId>;
}

/// An attachment: a blob by CID with the name to show (M10 §4.5). It
/// travels sealed with the text; the blob itself is fetched with M07.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Attachment {
    cid: Blake3Id,
    name: String,
}

/// What is sealed: the text and the attachments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Content {
    text: String,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

/// Delivered receipts written per peer on one UTC day.
#[derive(Default)]
struct ReceiptBudget {
    day: i64,
    written: HashMap<NodeId, usize>,
}

impl ReceiptBudget {
    /// Whether one more receipt for `peer`'s messages may be written at
    /// `now`, counting it if so.
    fn take(&mut self, peer: NodeId, now: Timestamp) -> bool {
        let day = now.unix().div_euclid(86_400);
        if day != self.day {
            self.day = day;
            self.written.clear();
        }
        let written = self.written.entry(peer).or_default();
        if *written >= MAX_RECEIPTS_PER_PEER_PER_DAY {
            return false;
        }
        *written += 1;
        true
    }
}

/// The chat service of one node.
pub struct ChatService {
    log: EventLog,
    key: DeviceKey,
    keys: PairKeys,
    receipts: Mutex<ReceiptBudget>,
    courier: Arc<dyn Courier>,
    /// Whether a message for an absent recipient is handed to anchors.
    store_and_forward: bool,
    conversations: Mutex<Conversations>,
    /// True once the stored log has been folded in.
    replayed: tokio::sync::watch::Sender<bool>,
    /// Held from the `client_id` check to the write, so two calls with one
    /// `client_id` make one message.
    writing: tokio::sync::Mutex<()>,
}

impl Service for ChatService {
    fn name(&self) -> &'static str {
        "chat"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let node = json!({"type": "string", "maxLength": 100});
        let attachment = json!({"type": "object", "required": ["cid", "name"],
            "additionalProperties": false, "properties": {
                "cid": {"type": "string", "maxLength": 100},
                "name": {"type": "string", "maxLength": MAX_ATTACHMENT_NAME_BYTES}}});
        // The message is this node's event, signed with its key: only its
        // owner may send it (as for community.invite), whatever §3.2 says.
        let send = CapabilityDescriptor {
            stability: Stability::Stable,
            trust: Trust::SelfOnly,
            max_concurrent: 8,
            timeout: Duration::from_secs(15),
            mutating: true,
            idempotent: true,
            ..CapabilityDescriptor::new(
                "chat.send",
                json!({"type": "object", "required": ["recipient", "body"], "properties": {
                    "client_id": {"type": "string", "minLength": 1, "maxLength": MAX_CLIENT_ID_CHARS},
                    "recipient": node,
                    "body": {"type": "string", "maxLength": MAX_TEXT_BYTES},
                    "attachments": {"type": "array", "maxItems": MAX_ATTACHMENTS, "items": attachment}
                }}),
            )
        };
        let history = CapabilityDescriptor {
            stability: Stability::Stable,
            trust: Trust::SelfOnly,
            max_concurrent: 8,
            timeout: Duration::from_secs(5),
            idempotent: true,
            ..CapabilityDescriptor::new(
                "chat.history",
                json!({"type": "object", "properties": {
                    "peer": node,
                    "since_lamport": {"type": "integer", "minimum": 0},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY_LIMIT},
                    "mark_read": {"type": "boolean"},
                    "read_up_to": {"type": "string", "minLength": 1, "maxLength": MAX_EVENT_ID_CHARS}
                }}),
            )
        };
        vec![
            Capability::new(send, &self, Self::send),
            Capability::new(history, &self, Self::history),
        ]
    }
}

fn internal(e: impl std::fmt::Display) -> CallError {
    CallError::new(ErrorCode::InternalError, e.to_string())
}

fn refused(e: hearthnet_events::EventLogError) -> CallError {
    CallError::new(e.error_code(), e.to_string())
}

impl ChatService {
    pub fn new(
        log: EventLog,
        key: DeviceKey,
        courier: Arc<dyn Courier>,
        store_and_forward: bool,
    ) -> Self {
        let me = key.node_id();
        let keys = PairKeys::new(key.clone(), log.view().community_id);
        Self {
            log,
            key,
            keys,
            receipts: Mutex::default(),
            courier,
            store_and_forward,
            conversations: Mutex::new(Conversations::new(me)),
            replayed: tokio::sync::watch::channel(false).0,
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// The content of `m`, opened; `None` (and a warning) for a body that
    /// does not open, which a forger or a broken peer wrote.
    fn open(&self, m: &Message) -> Option<Content> {
        match opened::open(&self.keys, self.log.view().community_id, m) {
            Ok(content) => Some(content),
            Err(e) => {
                tracing::warn!(event_id = %m.event_id, author = %m.author, error = %e,
                    "a direct message that does not open is ignored");
                None
            }
        }
    }

    /// Wait (within the call's deadline) until the stored log is folded in,
    /// then fold what arrived since: answers and the `client_id` check see
    /// every message stored before the call (one a subscriber was just
    /// told of included), not only what the follower got to.
    async fn until_current(&self, deadline: tokio::time::Instant) -> Result<(), CallError> {
        let mut replayed = self.replayed.subscribe();
        let done = tokio::time::timeout_at(deadline, replayed.wait_for(|done| *done))
            .await
            .is_ok_and(|waited| waited.is_ok());
        if !done {
            return Err(CallError::new(
                ErrorCode::Partition,
                "the chat history is still being read from the event log; try again shortly",
            ));
        }
        self.catch_up().await.map_err(internal)
    }

    /// Fold the chat events stored since the fold's sequence number, in
    /// pages, so a large sync is never held in memory at once. Folding an
    /// event twice changes nothing, so concurrent catch-ups are harmless.
    async fn catch_up(&self) -> Result<(), hearthnet_events::EventLogError> {
        let types = ["sent", "delivered", "read"].map(|t| format!("chat.message.{t}"));
        let judged = self.conversations.lock().judged_seq();
        let out = self.log.judged_out(judged, FOLLOW_PAGE).await?;
        if out.missed {
            // Too far behind to know what to drop: fold the log as it
            // counts now, from the start.
            tracing::warn!("the chat history missed events the log judged out; folding it again");
            let mut fresh = Conversations::new(self.key.node_id());
            fresh.replace(&[], &[], out.newest);
            *self.conversations.lock() = fresh;
        } else if let Some(newest) = out.last_number() {
            let gone = out.gone();
            let current: Vec<Event> = (out.current.into_iter())
                .filter(|e| Conversations::wants(&e.event_type))
                .collect();
            self.conversations.lock().replace(&gone, &current, newest);
        }
        loop {
            let after = self.conversations.lock().seq();
            let new = self
                .log
                .query(Query {
                    event_types: types.to_vec(),
                    after_seq: Some(after),
                    limit: Some(FOLLOW_PAGE),
                    ..Query::default()
                })
                .await?;
            let full = new.len() == FOLLOW_PAGE;
            {
                let mut conversations = self.conversations.lock();
                for stored in new {
                    conversations.apply(&stored.event);
                    conversations.folded_up_to(stored.seq);
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn send(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        let me = self.key.node_id();
        let input = &call.input;
        let recipient = input["recipient"]
            .as_str()
            .and_then(|r| NodeId::parse(r).ok())
            .ok_or_else(|| {
                CallError::bad_request("input.recipient must be a full node id (ed25519:…)")
            })?;
        if recipient == me {
            return Err(CallError::bad_request(
                "input.recipient is this node: a message needs another member",
            ));
        }
        if self.log.view().level_of(&recipient) == TrustLevel::Unknown {
            return Err(CallError::new(
                ErrorCode::NotFound,
                format!("{recipient} is not a member of this community"),
            ));
        }
        let attachments = match input.get("attachments") {
            None | Some(Value::Null) => Vec::new(),
            Some(list) => serde_json::from_value(list.clone())
                .map_err(|e| CallError::bad_request(format!("input.attachments: {e}")))?,
        };
        let content = Content {
            // A browser's text area sends CRLF line breaks; a line break
            // is kept as one character.
            text: input["body"]
                .as_str()
                .unwrap_or_default()
                .replace("\r\n", "\n"),
            attachments,
        };
        check_content(&content)?;
        let client_id = match input["client_id"].as_str() {
            Some(id) => id.to_owned(),
            None => ulid::Ulid::new().to_string(),
        };
        self.until_current(call.deadline).await?;
        let one_at_a_time = self.writing.lock().await;
        let existing = self.conversations.lock().by_client(me, &client_id).cloned();
        let event = match existing {
            Some(m) if m.recipient != recipient => {
                return Err(CallError::bad_request(format!(
                    "client_id {client_id} was used for a message to {}; a new message needs a new client_id",
                    m.recipient
                )));
            }
            // The same request again: the message it made, delivered again.
            Some(m) => self.stored(&m.event_id).await?,
            None => self.write(recipient, &client_id, &content).await?,
        };
        drop(one_at_a_time);
        let delivered = self.deliver(recipient, &event).await;
        Ok(json!({
            "output": {"event_id": event.event_id, "lamport": event.lamport, "delivered": delivered},
            "meta": {"ms": started.elapsed().as_millis() as u64}
        }))
    }

    /// Seal `content` for `recipient` and append it as this node's
    /// `chat.message.sent`.
    async fn write(
        &self,
        recipient: NodeId,
        client_id: &str,
        content: &Content,
    ) -> Result<Event, CallError> {
        let placement = Placement {
            community: self.log.view().community_id,
            author: self.key.node_id(),
            recipient,
            client_id,
        };
        let plaintext = serde_json::to_vec(content).map_err(internal)?;
        let body = self
            .keys
            .seal(&placement, &plaintext)
            .map_err(|e| CallError::bad_request(e.to_string()))?;
        let data = json!({"client_id": client_id, "recipient": recipient.full(), "body": body});
        let event = self
            .log
            .append_local("chat.message.sent", data, &self.key)
            .await
            .map_err(refused)?;
        // Folded now, so a retry of the same client_id finds it at once.
        self.conversations.lock().apply(&event);
        Ok(event)
    }

    async fn stored(&self, event_id: &str) -> Result<Event, CallError> {
        let mut found = self
            .log
            .by_ids(vec![event_id.to_owned()])
            .await
            .map_err(internal)?;
        found
            .pop()
            .map(|s| s.event)
            .ok_or_else(|| internal(format!("message {event_id} is no longer in the log")))
    }

    /// Hand `event` to its recipient, else to anchors; what happened, as
    /// the contract names it.
    async fn deliver(&self, recipient: NodeId, event: &Event) -> &'static str {
        let envelope = event.to_value();
        if self.courier.hand_to(recipient, envelope.clone()).await {
            return "direct";
        }
        if !self.store_and_forward {
            return "queued";
        }
        let me = self.key.node_id();
        let anchors: Vec<NodeId> = {
            let view = self.log.view();
            view.members
                .keys()
                .filter(|n| **n != me && **n != recipient)
                .filter(|n| view.level_of(n) == TrustLevel::Anchor)
                .copied()
                .collect()
        };
        let reachable = self.courier.reachable();
        let anchors = anchors
            .into_iter()
            .filter(|n| reachable.contains(n))
            .take(MAX_ANCHOR_TRIES);
        let mut holding = 0;
        for anchor in anchors {
            if self.courier.hand_to(anchor, envelope.clone()).await {
                holding += 1;
                if holding == FORWARD_TO_ANCHORS {
                    break;
                }
            }
        }
        if holding > 0 { "forwarded" } else { "queued" }
    }

    async fn history(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        let input = &call.input;
        let peer = match input["peer"].as_str() {
            Some(p) => Some(NodeId::parse(p).map_err(|_| {
                CallError::bad_request("input.peer must be a full node id (ed25519:…)")
            })?),
            None => None,
        };
        let since = input["since_lamport"].as_u64().unwrap_or(0);
        let limit = input["limit"]
            .as_u64()
            .map_or(DEFAULT_HISTORY_LIMIT, |l| l as usize)
            .min(MAX_HISTORY_LIMIT);
        let mark_read = input["mark_read"].as_bool().unwrap_or(true);
        let read_up_to = input["read_up_to"].as_str();
        if read_up_to.is_some() && (peer.is_none() || !mark_read) {
            return Err(CallError::bad_request(
                "input.read_up_to marks one conversation read: it needs input.peer, and mark_read may not be false",
            ));
        }
        self.until_current(call.deadline).await?;
        let me = self.key.node_id();
        let (messages, unread) = {
            let conversations = self.conversations.lock();
            let messages = conversations.history(peer, since, limit);
            // The owner reads a conversation with one peer: what it
            // received there is read now (sync carries the receipts), or
            // only up to the message it names.
            let unread = match (peer, read_up_to) {
                (Some(p), Some(id)) => conversations.unread_up_to(p, id).ok_or_else(|| {
                    CallError::new(
                        ErrorCode::NotFound,
                        format!(
                            "input.read_up_to: {id} is no message of the conversation with {p}"
                        ),
                    )
                })?,
                (Some(_), None) if mark_read => messages
                    .iter()
                    .filter(|m| m.recipient == me && m.read_at.is_none())
                    .cloned()
                    .collect(),
                _ => Vec::new(),
            };
            (messages, unread)
        };
        let mut read_now = HashMap::new();
        let readable = unread.into_iter().filter(|m| self.open(m).is_some());
        for m in readable.take(MAX_READ_RECEIPTS_PER_CALL) {
            if let Some((at, _)) = self.receipt("chat.message.read", &m).await {
                read_now.insert(m.event_id, at);
            }
        }
        let marked = read_now.len();
        let mut shown = Vec::with_capacity(messages.len());
        for mut m in messages {
            let Some(content) = self.open(&m) else {
                continue;
            };
            if let Some(at) = read_now.get(&m.event_id) {
                m.read_at = Some(*at);
            }
            shown.push(opened::shown(&m, content));
        }
        Ok(json!({
            "output": {"messages": shown},
            "meta": {"ms": started.elapsed().as_millis() as u64, "marked_read": marked}
        }))
    }

    /// Whether the node may spend its quota on receipts now (see
    /// [`RECEIPT_QUOTA_PERCENT`]); logged when not.
    async fn receipts_allowed(&self) -> bool {
        match self.log.quota_today(self.key.node_id()).await {
            Ok(quota) if quota.below_percent(RECEIPT_QUOTA_PERCENT) => true,
            Ok(quota) => {
                tracing::warn!(
                    events = quota.events,
                    bytes = quota.bytes,
                    "most of today's quota is used: no receipts are written until tomorrow"
                );
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the quota; no receipt written");
                false
            }
        }
    }

    /// Write this node's receipt of `kind` for `m`; the time it names and
    /// the receipt, or `None` when the quota is kept for other writes or
    /// the log refused it (logged).
    async fn receipt(&self, kind: &str, m: &Message) -> Option<(Timestamp, Event)> {
        if !self.receipts_allowed().await {
            return None;
        }
        let now = Timestamp::now();
        let read = kind == "chat.message.read";
        let data = if read {
            json!({"target_event_id": m.event_id, "read_at": now})
        } else {
            json!({"target_event_id": m.event_id, "delivered_at": now})
        };
        match self.log.append_local(kind, data, &self.key).await {
            Ok(event) => {
                let (delivered, read) = if read {
                    (None, Some(now))
                } else {
                    (Some(now), None)
                };
                self.conversations.lock().mark(&m.event_id, delivered, read);
                Some((now, event))
            }
            Err(e) => {
                tracing::warn!(event_id = %m.event_id, error = %e, "cannot write a {kind} receipt");
                None
            }
        }
    }

    /// Acknowledge the received messages that open and have no receipt of
    /// ours yet, each tried once, within the peer's daily budget and while
    /// the quota allows. A receipt is handed to its author at once unless
    /// a push to that author failed this round (sync carries the rest).
    async fn acknowledge(&self) {
        let pending = self.conversations.lock().undelivered();
        let mut unreachable = HashSet::new();
        for m in pending {
            if !self.receipts_allowed().await {
                return;
            }
            if !self.receipts.lock().take(m.author, Timestamp::now()) {
                continue;
            }
            self.conversations.lock().tried(&m.event_id);
            if self.open(&m).is_none() {
                self.conversations.lock().forget(&m.event_id);
                continue;
            }
            if let Some((_, receipt)) = self.receipt("chat.message.delivered", &m).await
                && !unreachable.contains(&m.author)
                && !self.courier.hand_to(m.author, receipt.to_value()).await
            {
                unreachable.insert(m.author);
            }
        }
    }

    /// Fold the stored log in, then follow it until `stop`, acknowledging
    /// what arrives for us: a task for the node to run.
    pub fn follow(self: &Arc<Self>, stop: CancellationToken) -> impl Future<Output = ()> + 'static {
        struct Replay(Conversations);
        impl Fold for Replay {
            fn wants(&self, event_type: &str) -> bool {
                Conversations::wants(event_type)
            }
            fn apply(&mut self, event: &Event) {
                self.0.apply(event);
            }
        }
        let this = self.clone();
        async move {
            let log = this.log.clone();
            let mut changes = log.changes();
            let me = this.key.node_id();
            let replay = {
                let log = log.clone();
                tokio::task::spawn_blocking(move || log.replay_into(Replay(Conversations::new(me))))
                    .await
            };
            match replay {
                Ok(Ok((Replay(mut folded), seq))) => {
                    folded.folded_up_to(seq);
                    *this.conversations.lock() = folded;
                    this.replayed.send_replace(true);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot replay chat events; chat unavailable");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot replay chat events; chat unavailable");
                    return;
                }
            }
            loop {
                if let Err(e) = this.catch_up().await {
                    tracing::error!(error = %e, "cannot read chat events; chat stops following");
                    return;
                }
                this.acknowledge().await;
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

/// The refusals of content the schema cannot express (bytes, not
/// characters; an empty message; control characters, which could rewrite
/// a terminal or forge lines where the text is shown). Content received
/// from other members must pass them too before it is shown.
fn check_content(content: &Content) -> Result<(), CallError> {
    if let Some((at, c)) = first_control(&content.text, &['\n', '\t']) {
        return Err(CallError::bad_request(format!(
            "input.body has the control character U+{:04X} at byte {at}; a message is text, with line breaks and tabs at most",
            u32::from(c)
        )));
    }
    if content.text.len() > MAX_TEXT_BYTES {
        return Err(CallError::bad_request(format!(
            "input.body is {} bytes; a message carries at most {MAX_TEXT_BYTES}",
            content.text.len()
        )));
    }
    if content.text.is_empty() && content.attachments.is_empty() {
        return Err(CallError::bad_request(
            "input.body is empty and there are no attachments: nothing to send",
        ));
    }
    if content.attachments.len() > MAX_ATTACHMENTS {
        return Err(CallError::bad_request(format!(
            "{} attachments; a message carries at most {MAX_ATTACHMENTS}",
            content.attachments.len()
        )));
    }
    if let Some(a) = content
        .attachments
        .iter()
        .find(|a| a.name.len() > MAX_ATTACHMENT_NAME_BYTES)
    {
        return Err(CallError::bad_request(format!(
            "attachment {}: the name is {} bytes, at most {MAX_ATTACHMENT_NAME_BYTES}",
            a.cid,
            a.name.len()
        )));
    }
    if let Some(a) = content
        .attachments
        .iter()
        .find(|a| first_control(&a.name, &[]).is_some())
    {
        return Err(CallError::bad_request(format!(
            "attachment {}: the name has a control character; name it with printable text",
            a.cid
        )));
    }
    Ok(())
}

/// The byte offset and character of the first control character in
/// `text` that is not one of `allowed`: the C0 and C1 controls, and the
/// characters that reorder or break what is shown (bidirectional
/// overrides and isolates, which make `invoice\u{202e}fdp.exe` read as
/// `invoiceexe.pdf`; the line and paragraph separators).
fn first_control(text: &str, allowed: &[char]) -> Option<(usize, char)> {
    let reorders = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}');
    text.char_indices()
        .find(|(_, c)| (c.is_control() || reorders(*c)) && !allowed.contains(c))
}

#[cfg(test)]
mod tests;
