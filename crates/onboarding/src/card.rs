//! The fresh-device identity card (M13 §4.4): what a device not yet in a
//! community shows so that a member can invite it. Unsigned on purpose:
//! it carries only a public key and a name, and the inviter is the source
//! of trust.

use hearthnet_base::NodeId;
use serde::{Deserialize, Serialize};

pub const SCHEME: &str = "hearthnet-id";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityCard {
    pub node_id_full: NodeId,
    pub display_name: String,
}

impl IdentityCard {
    pub fn encode(&self) -> String {
        crate::encode_link(&serde_json::json!(self), SCHEME)
    }

    pub fn decode(text: &str) -> Option<Self> {
        serde_json::from_value(crate::decode_link(text, SCHEME)?).ok()
    }

    /// Accept either a card link or a bare full NodeID, the two ways an
    /// inviter may be handed a device's identity.
    pub fn node_id_from_text(text: &str) -> Option<NodeId> {
        Self::decode(text)
            .map(|c| c.node_id_full)
            .or_else(|| NodeId::parse(text.trim()).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearthnet_base::DeviceKey;

    #[test]
    fn card_round_trips_and_bare_ids_are_accepted() {
        let id = DeviceKey::generate().node_id();
        let card = IdentityCard {
            node_id_full: id,
            display_name: "Hannes' Tablet".into(),
        };
        let text = card.encode();
        assert!(text.starts_with("hearthnet-id://v1/"));
        assert_eq!(IdentityCard::decode(&text), Some(card));
        assert_eq!(IdentityCard::node_id_from_text(&text), Some(id));
        assert_eq!(
            IdentityCard::node_id_from_text(&format!(" {id}\n")),
            Some(id)
        );
        assert_eq!(
            IdentityCard::node_id_from_text("hearthnet-id://v1/!!"),
            None
        );
    }
}
