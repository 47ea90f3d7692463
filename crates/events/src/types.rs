//! The closed set of event types (Contract §7.2) and the shape of each
//! type's `data`: which fields must be there and of what kind.

use hearthnet_base::{Blake3Id, NodeId, Timestamp};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Node,
    Object,
    Array,
    Int,
    Level,
    Cid,
    Time,
}

/// Every event type this release accepts, with its required `data` fields.
const TYPES: &[(&str, &[(&str, Kind)])] = &[
    (
        "community.created",
        &[
            ("name", Kind::Str),
            ("founder_node_id", Kind::Node),
            ("policy", Kind::Object),
        ],
    ),
    (
        "community.member.invited",
        &[
            ("invitee_node_id", Kind::Node),
            ("initial_level", Kind::Level),
            ("expires_at", Kind::Time),
        ],
    ),
    (
        "community.member.joined",
        &[
            ("invite_event_id", Kind::Str),
            ("node_manifest", Kind::Object),
        ],
    ),
    (
        "community.member.revoked",
        &[
            ("target_node_id", Kind::Node),
            ("reason", Kind::Str),
            ("co_signers", Kind::Array),
        ],
    ),
    (
        "community.member.promoted",
        &[
            ("target_node_id", Kind::Node),
            ("new_level", Kind::Level),
            ("co_signers", Kind::Array),
        ],
    ),
    (
        "community.member.demoted",
        &[
            ("target_node_id", Kind::Node),
            ("new_level", Kind::Level),
            ("co_signers", Kind::Array),
        ],
    ),
    ("community.policy.updated", &[("policy", Kind::Object)]),
    ("node.manifest.updated", &[("manifest", Kind::Object)]),
    (
        "market.post.created",
        &[
            ("client_id", Kind::Str),
            ("category", Kind::Str),
            ("title", Kind::Str),
            ("body", Kind::Str),
            ("ttl_seconds", Kind::Int),
        ],
    ),
    (
        "market.post.updated",
        &[
            ("client_id", Kind::Str),
            ("target_event_id", Kind::Str),
            ("fields", Kind::Object),
        ],
    ),
    (
        "market.post.expired",
        &[
            ("client_id", Kind::Str),
            ("target_event_id", Kind::Str),
            ("reason", Kind::Str),
        ],
    ),
    (
        "chat.message.sent",
        &[
            ("client_id", Kind::Str),
            ("recipient", Kind::Node),
            ("body", Kind::Str),
        ],
    ),
    (
        "chat.message.delivered",
        &[("target_event_id", Kind::Str), ("delivered_at", Kind::Time)],
    ),
    (
        "chat.message.read",
        &[("target_event_id", Kind::Str), ("read_at", Kind::Time)],
    ),
    ("file.cid.advertised", &[("cid", Kind::Cid)]),
    ("file.cid.unpinned", &[("cid", Kind::Cid)]),
    (
        "rag.document.ingested",
        &[
            ("corpus", Kind::Str),
            ("doc_cid", Kind::Cid),
            ("title", Kind::Str),
            ("chunks", Kind::Int),
        ],
    ),
];

pub fn is_known(event_type: &str) -> bool {
    TYPES.iter().any(|(t, _)| *t == event_type)
}

/// Check `data` against its type's required fields; `Err` names the field.
pub fn check_data(event_type: &str, data: &Value) -> Result<(), String> {
    let Some((_, fields)) = TYPES.iter().find(|(t, _)| *t == event_type) else {
        return Err(format!("unknown event type {event_type}"));
    };
    let Some(obj) = data.as_object() else {
        return Err("data is not an object".into());
    };
    for (name, kind) in *fields {
        let value = obj
            .get(*name)
            .ok_or_else(|| format!("data.{name} is missing"))?;
        let ok = match kind {
            Kind::Str => value.is_string(),
            Kind::Node => value.as_str().is_some_and(|s| NodeId::parse(s).is_ok()),
            Kind::Object => value.is_object(),
            Kind::Array => value.is_array(),
            Kind::Int => value.as_u64().is_some(),
            Kind::Level => matches!(value.as_str(), Some("member" | "trusted" | "anchor")),
            Kind::Cid => value.as_str().is_some_and(|s| Blake3Id::parse(s).is_ok()),
            Kind::Time => value.as_str().is_some_and(|s| Timestamp::parse(s).is_ok()),
        };
        if !ok {
            return Err(format!("data.{name} is not a valid {kind:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn data_shapes_are_checked() {
        assert!(is_known("market.post.created"));
        assert!(
            !is_known("federation.peer.added"),
            "reserved types are not accepted"
        );
        assert!(
            check_data(
                "file.cid.unpinned",
                &json!({"cid": format!("{}", Blake3Id::of(b"x"))})
            )
            .is_ok()
        );
        assert_eq!(
            check_data("file.cid.unpinned", &json!({"cid": "sha1:x"})).unwrap_err(),
            "data.cid is not a valid Cid"
        );
        assert_eq!(
            check_data("chat.message.read", &json!({"target_event_id": "x"})).unwrap_err(),
            "data.read_at is missing"
        );
        assert!(check_data("chat.message.read", &json!([])).is_err());
    }
}
