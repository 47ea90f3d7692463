//! Where a sealed body becomes text for this node's owner: the answer of
//! `chat.history` and the owner's export ([`transcript`]) both open
//! messages here, so they show a message the same way.

use hearthnet_base::event::Event;
use hearthnet_base::{CommunityId, DeviceKey};
use serde_json::{Value, json};

use crate::Content;
use crate::conversations::{Conversations, Message};
use crate::seal::{PairKeys, Placement};

/// The content of `m`, a message of `community` to or from the node
/// `keys` belong to; the error says why it does not open (a forger or a
/// broken peer wrote it).
pub(crate) fn open(
    keys: &PairKeys,
    community: CommunityId,
    m: &Message,
) -> Result<Content, String> {
    let placement = Placement {
        community,
        author: m.author,
        recipient: m.recipient,
        client_id: &m.client_id,
    };
    let bytes = keys.open(&placement, &m.body).map_err(|e| e.to_string())?;
    let mut content: Content = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    content.text = content.text.replace("\r\n", "\n");
    // What this node would not send, it does not show: another member's
    // client may be hostile.
    crate::check_content(&content).map_err(|e| e.message)?;
    Ok(content)
}

/// `m` with its opened content, as `chat.history` answers it.
pub(crate) fn shown(m: &Message, content: Content) -> Value {
    json!({
        "event_id": m.event_id,
        "lamport": m.lamport,
        "from": m.author.full(),
        "to": m.recipient.full(),
        "body": content.text,
        "attachments": content.attachments,
        "created_at": m.created_at,
        "delivered_at": m.delivered_at,
        "read_at": m.read_at,
    })
}

/// Every conversation of `key`'s node, opened for its owner.
#[derive(Debug, Default)]
pub struct Transcript {
    /// In replay order, each as `chat.history` shows it.
    pub messages: Vec<Value>,
    /// Messages addressed to or from this node whose body does not open.
    pub unreadable: usize,
}

/// The transcript folded from `envelopes` (stored `chat.message.*`
/// events of `community`, in replay order, as the log holds them): the
/// same fold as the service (one message per client id, receipts only
/// from recipients), keeping every message rather than the newest. Envelopes that do not parse are skipped; the log
/// checked them when they arrived.
pub fn transcript<'a>(
    key: &DeviceKey,
    community: CommunityId,
    envelopes: impl IntoIterator<Item = &'a Value>,
) -> Transcript {
    let mut conversations = Conversations::unbounded(key.node_id());
    for envelope in envelopes {
        if let Ok(event) = serde_json::from_value::<Event>(envelope.clone()) {
            conversations.apply(&event);
        }
    }
    let keys = PairKeys::new(key.clone(), community);
    let mut transcript = Transcript::default();
    for m in conversations.history(None, 0, usize::MAX) {
        match open(&keys, community, &m) {
            Ok(content) => transcript.messages.push(shown(&m, content)),
            Err(_) => transcript.unreadable += 1,
        }
    }
    transcript
}
