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
    /// Build and sign a new event authored by `key`, stamped now.
    pub fn create(new: NewEvent<'_>, key: &DeviceKey) -> Result<Self, EventError> {
        let unsigned = serde_json::json!({
            "schema_version": EVENT_SCHEMA_VERSION,
            "event_id": ulid::Ulid::new().to_string(),
            "lamport": new.lamport,
            "wall_clock": Timestamp::now(),
            "community_id": new.community_id,
            "author": key.node_id(),
            "event_type": new.event_type,
            "data": new.data,
        });
        let signed = sign_value(unsigned, key)?;
        Ok(serde_json::from_value(signed)?)
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
