//! The community log's event envelope (Contract §7.1) and its signature.
//!
//! Storage, validation against membership and replay belong to the event
//! log (X02); this module only knows how one event is built, encoded and
//! checked to be authentic.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::{DeviceKey, SignatureError, sign_value, verify_value};
use crate::ids::{CommunityId, NodeId};
use crate::time::Timestamp;

/// The envelope revision this build writes.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub schema_version: u32,
    /// ULID, 26 characters of Crockford base32.
    pub event_id: String,
    pub lamport: u64,
    pub wall_clock: Timestamp,
    pub community_id: CommunityId,
    pub author: NodeId,
    pub event_type: String,
    pub data: Value,
    pub signature: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event is not a valid envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("event signature invalid: {0}")]
    Signature(#[from] SignatureError),
    #[error("event id `{0}` is not a ULID")]
    BadEventId(String),
}

/// What an author decides about a new event; the envelope adds the rest.
pub struct NewEvent<'a> {
    pub community_id: CommunityId,
    pub lamport: u64,
    pub event_type: &'a str,
    pub data: Value,
}

impl Event {
    /// Build and sign a new event authored by `key`, stamped now. Its id
    /// is bound to its content (see [`Event::id_is_bound`]).
    pub fn create(new: NewEvent<'_>, key: &DeviceKey) -> Result<Self, EventError> {
        let mut unsigned = serde_json::json!({
            "schema_version": EVENT_SCHEMA_VERSION,
            "lamport": new.lamport,
            "wall_clock": Timestamp::now(),
            "community_id": new.community_id,
            "author": key.node_id(),
            "event_type": new.event_type,
            "data": new.data,
        });
        let id = bound_id(&unsigned, ulid::Ulid::new().timestamp_ms())?;
        if let Some(fields) = unsigned.as_object_mut() {
            fields.insert("event_id".into(), Value::String(id));
        }
        let signed = sign_value(unsigned, key)?;
        Ok(serde_json::from_value(signed)?)
    }

    /// Whether the envelope's id is bound to its content: the 80 random
    /// bits of the ULID are the first 80 bits of BLAKE3 over the canonical
    /// envelope without `event_id` and `signature`. Authors choose ids, so
    /// an unbound id can be copied onto another envelope; a bound one only
    /// by finding an 80-bit second preimage. v1 writers use random ids.
    pub fn id_is_bound(value: &Value) -> bool {
        let Some(id) = value
            .get("event_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<ulid::Ulid>().ok())
        else {
            return false;
        };
        let mut rest = value.clone();
        if let Some(fields) = rest.as_object_mut() {
            fields.remove("event_id");
            fields.remove("signature");
        }
        bound_id(&rest, id.timestamp_ms()).is_ok_and(|bound| bound == id.to_string())
    }

    /// Parse an envelope as received and check its author's signature.
    pub fn verify(value: &Value) -> Result<Self, EventError> {
        let event: Event = serde_json::from_value(value.clone())?;
        if event.event_id.parse::<ulid::Ulid>().is_err() || event.event_id.len() != 26 {
            return Err(EventError::BadEventId(event.event_id));
        }
        verify_value(value, &event.author)?;
        Ok(event)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The ULID at `ms` whose random part comes from the content.
fn bound_id(content: &Value, ms: u64) -> Result<String, SignatureError> {
    let bytes = crate::canonical::to_canonical_bytes(content)?;
    let hash = blake3::hash(&bytes);
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&hash.as_bytes()[..10]);
    Ok(ulid::Ulid::from_parts(ms, u128::from_be_bytes(random)).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn created_events_verify_and_tampering_is_caught() {
        let key = DeviceKey::generate();
        let community = CommunityId::of_root(key.node_id());
        let event = Event::create(
            NewEvent {
                community_id: community,
                lamport: 7,
                event_type: "market.post.created",
                data: json!({"title": "Wasserkanister 20 l", "ttl_seconds": 86400}),
            },
            &key,
        )
        .unwrap();
        let value = event.to_value();
        assert_eq!(Event::verify(&value).unwrap(), event);
        assert!(Event::id_is_bound(&value));
        let mut copied = value.clone();
        copied["data"]["title"] = json!("another envelope under the same id");
        assert!(!Event::id_is_bound(&copied));

        let mut tampered = value.clone();
        tampered["lamport"] = json!(8);
        assert!(matches!(
            Event::verify(&tampered),
            Err(EventError::Signature(_))
        ));

        let mut extra = value;
        extra["smuggled"] = json!(true);
        assert!(matches!(
            Event::verify(&extra),
            Err(EventError::Malformed(_))
        ));
    }
}
