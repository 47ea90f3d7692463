//! The peer protocols' documents: event sync (Contract §7.6, X02 §6, and
//! our negentropy rounds), invite redemption (M13), raw chunks, pub-sub
//! (Contract §8) and the local "sync now" request.
//!
//! Events travel as the JSON they were signed as (`Value`): a signature
//! is checked on the document as received, never on a re-encoded struct.

use std::collections::BTreeMap;

use hearthnet_base::{Blake3Id, CommunityId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The most bytes a push of events (`POST /sync/v1/events`) may carry: the
/// receiver refuses larger bodies unread, and a pusher splits its batches
/// to stay under it.
pub const MAX_PUSH_BYTES: usize = 4 * 1024 * 1024;

/// `GET /sync/v1/heads`: the contract's `{<community_id>: max_lamport}`,
/// plus named fields for readers that want them and the sync protocols
/// offered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heads {
    pub community_id: CommunityId,
    pub head: u64,
    #[serde(default)]
    pub sync: Vec<String>,
    /// The contract's form: head Lamport by full CommunityID.
    #[serde(flatten)]
    pub by_community: BTreeMap<String, u64>,
}

/// `POST /sync/v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsPush {
    /// Absent in the contract's form; when present it must be ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_id: Option<CommunityId>,
    pub events: Vec<Value>,
}

/// The answer to [`EventsPush`]. The contract names `accepted`, `rejected`
/// and `new_head_lamport`; the rest is ours and optional for readers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsReport {
    pub accepted: u64,
    #[serde(default)]
    pub duplicates: u64,
    #[serde(default)]
    pub rejected: u64,
    #[serde(default)]
    pub rejected_reasons: Vec<Rejection>,
    pub new_head_lamport: u64,
}

/// Why one pushed event was not stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub event_id: String,
    pub reason: String,
    pub detail: String,
}

/// `POST /sync/v2/reconcile`, both ways: one negentropy message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconcile {
    pub message: Hex,
}

/// `POST /sync/v2/fetch`: events by the hashes reconciliation named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchRequest {
    pub hashes: Vec<Hex>,
}

/// The answer to [`FetchRequest`] (and the events of a redemption).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchAnswer {
    pub events: Vec<Value>,
}

/// `POST /onboarding/v1/redeem`: the invite text (`hearthnet://v1/…`) and
/// the invitee's own signed `community.member.joined` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redeem {
    pub invite: String,
    pub joined: Value,
}

/// The answer to [`Redeem`]: what a new member needs before its first
/// sync, the community manifest as signed (verified on this JSON, never on
/// a re-encoded struct) and the membership history (every `community.*`
/// event, the genesis among them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redeemed {
    pub community_id: CommunityId,
    pub genesis_manifest: Value,
    pub events: Vec<Value>,
}

/// `POST /local/v1/sync` (the node's own key): one round with `peer`
/// (`host:port`) now; `protocol` forces `v1` or `v2`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncNow {
    pub peer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// `POST /blobs/v1/chunks`: chunks of blob `cid` by index, increasing
/// (all of them when absent, as for `file.read`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunksRequest {
    pub cid: Blake3Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<u64>>,
}

/// The query of `GET /pubsub/v1/subscribe` (X01 §8): messages of `topic`
/// after `last_seq`, waiting up to `timeout` seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeQuery {
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// Bytes as lowercase hex, the form of negentropy messages and event
/// hashes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl Hex {
    pub fn encode(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(self.0.len() * 2);
        for b in &self.0 {
            text.push(char::from(DIGITS[usize::from(b >> 4)]));
            text.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        text
    }

    /// Lowercase hex only: one spelling per byte string, as for every
    /// other id on the wire.
    pub fn decode(text: &str) -> Option<Self> {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(2) {
            return None;
        }
        bytes
            .chunks(2)
            .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
            .collect::<Option<Vec<u8>>>()
            .map(Self)
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::decode(&text).ok_or_else(|| {
            serde::de::Error::custom("expected lowercase hex, an even number of digits")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, from_value};
    use serde_json::json;

    #[test]
    fn hex_round_trips_and_refuses_other_spellings() {
        let bytes = Hex(vec![0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(bytes.encode(), "000fa5ff");
        assert_eq!(Hex::decode("000fa5ff"), Some(bytes));
        assert_eq!(Hex::decode(""), Some(Hex(Vec::new())));
        for bad in ["0", "0F", "zz", "0 "] {
            assert_eq!(Hex::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_malformed_document_names_its_field() {
        let e = decode::<FetchRequest>("a fetch", br#"{"hashes": ["00", "xy"]}"#)
            .err()
            .map(|e| e.path);
        assert_eq!(e.as_deref(), Some("hashes[1]"));
        let e = from_value::<Reconcile>("a reconcile answer", json!({"msg": "00"}))
            .err()
            .map(|e| (e.path, e.message));
        assert_eq!(e, Some(("message".into(), "missing field".into())));
        let e = from_value::<EventsReport>(
            "a push report",
            json!({"accepted": "3", "new_head_lamport": 1}),
        )
        .err()
        .map(|e| e.path);
        assert_eq!(e.as_deref(), Some("accepted"));
    }

    #[test]
    fn a_malformed_redemption_answer_names_its_field() {
        let community = CommunityId::of_root(hearthnet_base::DeviceKey::generate().node_id());
        let e = from_value::<Redeemed>(
            "the inviter's answer",
            json!({"community_id": community, "events": []}),
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("the inviter's answer: field `genesis_manifest`: missing field")
        );
        let e = from_value::<Redeemed>(
            "the inviter's answer",
            json!({"community_id": "ed25519:nope", "genesis_manifest": {}, "events": []}),
        )
        .err()
        .map(|e| e.path);
        assert_eq!(e.as_deref(), Some("community_id"));
        let e = from_value::<Redeemed>(
            "the inviter's answer",
            json!({"community_id": community, "genesis_manifest": {}, "events": {}}),
        )
        .err()
        .map(|e| e.path);
        assert_eq!(e.as_deref(), Some("events"));
    }

    #[test]
    fn heads_carry_the_contract_form_beside_the_named_fields() {
        let community = CommunityId::of_root(hearthnet_base::DeviceKey::generate().node_id());
        let heads = Heads {
            community_id: community,
            head: 7,
            sync: vec!["negentropy/1".into()],
            by_community: [(community.full(), 7)].into_iter().collect(),
        };
        let value = serde_json::to_value(&heads).unwrap();
        assert_eq!(value[community.full()], 7);
        assert_eq!(value["head"], 7);
        assert_eq!(from_value::<Heads>("heads", value).unwrap(), heads);
    }

    #[test]
    fn optional_fields_stay_off_the_wire_and_default_when_absent() {
        let push = EventsPush {
            community_id: None,
            events: vec![json!({"event_id": "01A"})],
        };
        assert_eq!(
            serde_json::to_value(&push).unwrap(),
            json!({"events": [{"event_id": "01A"}]})
        );
        // The contract's minimal report (another implementation's answer).
        let report: EventsReport = from_value(
            "a push report",
            json!({"accepted": 2, "rejected": 1, "new_head_lamport": 9}),
        )
        .unwrap();
        assert_eq!((report.accepted, report.duplicates), (2, 0));
        // "Sync now" without a protocol: the node chooses; an older
        // client's explicit `null` means the same.
        let now = SyncNow {
            peer: "10.0.0.2:7443".into(),
            protocol: None,
        };
        assert_eq!(
            serde_json::to_value(&now).unwrap(),
            json!({"peer": "10.0.0.2:7443"})
        );
        let old: SyncNow = from_value(
            "a sync request",
            json!({"peer": "10.0.0.2:7443", "protocol": null}),
        )
        .unwrap();
        assert_eq!(old, now);
    }
}
