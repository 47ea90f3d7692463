//! The closed set of event types (Contract §7.2): the shape of each
//! type's `data` (which fields must be there and of what kind) and the
//! pub-sub topic (§8) it is published under.

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

impl Kind {
    fn accepts(self, value: &Value) -> bool {
        match self {
            Kind::Str => value.is_string(),
            Kind::Node => value.as_str().is_some_and(|s| NodeId::parse(s).is_ok()),
            Kind::Object => value.is_object(),
            Kind::Array => value.is_array(),
            Kind::Int => value.as_u64().is_some(),
            Kind::Level => matches!(value.as_str(), Some("member" | "trusted" | "anchor")),
            Kind::Cid => value.as_str().is_some_and(|s| Blake3Id::parse(s).is_ok()),
            Kind::Time => value.as_str().is_some_and(|s| Timestamp::parse(s).is_ok()),
        }
    }
}

/// Where subscribers hear of an event type (Contract §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    /// Durable in the log only; no live notification.
    None,
    Named(&'static str),
    /// One topic per value of a `data` field: `<prefix><value>`, so a
    /// subscriber hears only of the events addressed to it. `private`:
    /// the value is a node id, and only that node may subscribe.
    PerField {
        prefix: &'static str,
        field: &'static str,
        private: bool,
    },
}

/// `chat.message.<recipient>`: each node listens for its own messages,
/// and nobody else for them (Contract §8: subscriber "recipient").
const CHAT_TOPIC: Topic = Topic::PerField {
    prefix: "chat.message.",
    field: "recipient",
    private: true,
};

/// One event type: its name, its topic, its required `data` fields.
struct Declaration {
    name: &'static str,
    topic: Topic,
    fields: &'static [(&'static str, Kind)],
}

const fn declare(
    name: &'static str,
    topic: Topic,
    fields: &'static [(&'static str, Kind)],
) -> Declaration {
    Declaration {
        name,
        topic,
        fields,
    }
}

/// Every event type this release accepts: its pub-sub topic and its
/// required `data` fields.
const TYPES: &[Declaration] = &[
    declare(
        "community.created",
        Topic::None,
        &[
            ("name", Kind::Str),
            ("founder_node_id", Kind::Node),
            ("policy", Kind::Object),
        ],
    ),
    declare(
        "community.member.invited",
        Topic::None,
        &[
            ("invitee_node_id", Kind::Node),
            ("initial_level", Kind::Level),
            ("expires_at", Kind::Time),
        ],
    ),
    declare(
        "community.member.joined",
        Topic::Named("community.member.added"),
        &[
            ("invite_event_id", Kind::Str),
            ("node_manifest", Kind::Object),
        ],
    ),
    declare(
        "community.member.revoked",
        Topic::Named("community.member.revoked"),
        &[
            ("target_node_id", Kind::Node),
            ("reason", Kind::Str),
            ("co_signers", Kind::Array),
        ],
    ),
    declare(
        "community.member.promoted",
        Topic::None,
        &[
            ("target_node_id", Kind::Node),
            ("new_level", Kind::Level),
            ("co_signers", Kind::Array),
        ],
    ),
    declare(
        "community.member.demoted",
        Topic::None,
        &[
            ("target_node_id", Kind::Node),
            ("new_level", Kind::Level),
            ("co_signers", Kind::Array),
        ],
    ),
    declare(
        "community.policy.updated",
        Topic::None,
        &[("policy", Kind::Object)],
    ),
    declare(
        "node.manifest.updated",
        Topic::Named("node.manifest.updated"),
        &[("manifest", Kind::Object)],
    ),
    declare(
        "market.post.created",
        Topic::Named("marketplace.post.created"),
        &[
            ("client_id", Kind::Str),
            ("category", Kind::Str),
            ("title", Kind::Str),
            ("body", Kind::Str),
            ("ttl_seconds", Kind::Int),
        ],
    ),
    declare(
        "market.post.updated",
        Topic::None,
        &[
            ("client_id", Kind::Str),
            ("target_event_id", Kind::Str),
            ("fields", Kind::Object),
        ],
    ),
    declare(
        "market.post.expired",
        Topic::Named("marketplace.post.expired"),
        &[
            ("client_id", Kind::Str),
            ("target_event_id", Kind::Str),
            ("reason", Kind::Str),
        ],
    ),
    declare(
        "chat.message.sent",
        CHAT_TOPIC,
        &[
            ("client_id", Kind::Str),
            ("recipient", Kind::Node),
            ("body", Kind::Str),
        ],
    ),
    declare(
        "chat.message.delivered",
        Topic::None,
        &[("target_event_id", Kind::Str), ("delivered_at", Kind::Time)],
    ),
    declare(
        "chat.message.read",
        Topic::None,
        &[("target_event_id", Kind::Str), ("read_at", Kind::Time)],
    ),
    declare("file.cid.advertised", Topic::None, &[("cid", Kind::Cid)]),
    declare("file.cid.unpinned", Topic::None, &[("cid", Kind::Cid)]),
    declare(
        "rag.document.ingested",
        Topic::None,
        &[
            ("corpus", Kind::Str),
            ("doc_cid", Kind::Cid),
            ("title", Kind::Str),
            ("language", Kind::Str),
            ("chunks", Kind::Int),
        ],
    ),
];

fn declaration(event_type: &str) -> Option<&'static Declaration> {
    TYPES.iter().find(|d| d.name == event_type)
}

/// Every event type this release accepts, in declaration order.
pub fn known() -> impl Iterator<Item = &'static str> {
    TYPES.iter().map(|d| d.name)
}

pub fn is_known(event_type: &str) -> bool {
    declaration(event_type).is_some()
}

/// Check `data` against its type's required fields; `Err` names the field.
pub fn check_data(event_type: &str, data: &Value) -> Result<(), String> {
    let Some(declared) = declaration(event_type) else {
        return Err(format!("unknown event type {event_type}"));
    };
    let Some(obj) = data.as_object() else {
        return Err("data is not an object".into());
    };
    for (name, kind) in declared.fields {
        let value = obj
            .get(*name)
            .ok_or_else(|| format!("data.{name} is missing"))?;
        if !kind.accepts(value) {
            return Err(format!("data.{name} is not a valid {kind:?}"));
        }
    }
    check_chat_data(event_type, obj)?;
    crate::market::check_data(event_type, obj)
}

/// The longest `client_id` of a direct message, in characters.
pub const MAX_CHAT_CLIENT_ID_CHARS: usize = 128;
/// The longest body of a direct message, in bytes: room for the sealed
/// form of the chat service's largest plaintext.
pub const MAX_CHAT_BODY_BYTES: usize = 22 * 1024;
/// An event id: a ULID (26 characters), with room to spare.
pub const MAX_EVENT_ID_BYTES: usize = 64;

/// Bounds of direct messages and their receipts, so no member makes every
/// other store and relay oversized ones for the retention period (the
/// sealed content itself only its recipient can judge).
fn check_chat_data(event_type: &str, obj: &serde_json::Map<String, Value>) -> Result<(), String> {
    let at_most = |name: &str, max: usize, len: fn(&str) -> usize| match obj
        .get(name)
        .and_then(Value::as_str)
    {
        Some(text) if len(text) > max => Err(format!("data.{name} is longer than {max}")),
        _ => Ok(()),
    };
    match event_type {
        "chat.message.sent" => {
            at_most("client_id", MAX_CHAT_CLIENT_ID_CHARS, |t| t.chars().count())?;
            at_most("body", MAX_CHAT_BODY_BYTES, str::len)
        }
        "chat.message.delivered" | "chat.message.read" => {
            at_most("target_event_id", MAX_EVENT_ID_BYTES, str::len)
        }
        _ => Ok(()),
    }
}

/// What a pub-sub topic delivers: events of some types, for a
/// parameterised topic only those whose field holds the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    wanted: Vec<Wanted>,
    /// The one node that may subscribe, for a private topic.
    private_to: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    event_type: &'static str,
    /// The `data` field that must equal the topic's parameter, and that
    /// parameter.
    field: Option<(&'static str, Value)>,
}

impl TopicFilter {
    /// The one node that may subscribe to this topic; `None` when every
    /// member may.
    pub fn private_to(&self) -> Option<NodeId> {
        self.private_to
    }

    /// The event types behind the topic.
    pub fn event_types(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.wanted.iter().map(|w| w.event_type)
    }

    /// Whether an event of `event_type` with `data` belongs to the topic.
    pub fn matches(&self, event_type: &str, data: &Value) -> bool {
        self.wanted.iter().any(|w| {
            w.event_type == event_type
                && w.field
                    .as_ref()
                    .is_none_or(|(name, value)| data.get(*name) == Some(value))
        })
    }
}

/// The events a pub-sub topic (Contract §8) delivers, from the event
/// types' declarations; `None` for a topic no event type is published
/// under (unknown, reserved, or local-only like `emergency.mode.changed`).
/// A parameterised topic resolves only with a parameter its field would
/// accept (`chat.message.<recipient>` needs a full NodeID).
pub fn topic(topic: &str) -> Option<TopicFilter> {
    let mut private_to = None;
    let wanted: Vec<Wanted> = TYPES
        .iter()
        .filter_map(|d| match d.topic {
            Topic::None => None,
            Topic::Named(name) => (name == topic).then_some(Wanted {
                event_type: d.name,
                field: None,
            }),
            Topic::PerField {
                prefix,
                field,
                private,
            } => {
                let parameter = topic.strip_prefix(prefix)?;
                let (_, kind) = d.fields.iter().find(|(f, _)| *f == field)?;
                let parameter = Value::String(parameter.to_owned());
                if !kind.accepts(&parameter) {
                    return None;
                }
                if private {
                    // A private topic's parameter is a node id (checked
                    // by `a_private_topic_is_named_by_a_node_field`).
                    private_to = parameter.as_str().and_then(|p| NodeId::parse(p).ok());
                }
                Some(Wanted {
                    event_type: d.name,
                    field: Some((field, parameter)),
                })
            }
        })
        .collect();
    (!wanted.is_empty()).then_some(TopicFilter { wanted, private_to })
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

    #[test]
    fn direct_messages_and_receipts_have_bounded_fields() {
        let recipient = hearthnet_base::DeviceKey::generate().node_id().full();
        let message = |client_id: &str, body: &str| {
            check_data(
                "chat.message.sent",
                &json!({"client_id": client_id, "recipient": recipient, "body": body}),
            )
        };
        assert!(message(&"c".repeat(128), &"b".repeat(MAX_CHAT_BODY_BYTES)).is_ok());
        let long_id = message(&"c".repeat(129), "b").unwrap_err();
        assert!(long_id.contains("data.client_id"), "{long_id}");
        let long_body = message("c", &"b".repeat(MAX_CHAT_BODY_BYTES + 1)).unwrap_err();
        assert!(long_body.contains("data.body"), "{long_body}");
        let receipt = |target: &str| {
            check_data(
                "chat.message.read",
                &json!({"target_event_id": target, "read_at": "2026-11-30T12:00:00Z"}),
            )
        };
        assert!(receipt("01JDX3Y8W5K2Q9ZP7T4M6N1B0C").is_ok());
        assert!(receipt(&"x".repeat(65)).is_err());
    }

    #[test]
    fn an_ingested_document_names_its_corpus_cid_title_language_and_chunks() {
        let cid = format!("{}", Blake3Id::of(b"doc"));
        let data = json!({"corpus": "niederrhein-emergency", "doc_cid": cid,
            "title": "Notfall-Trinkwasser", "language": "de", "chunks": 87});
        assert!(check_data("rag.document.ingested", &data).is_ok());
        let mut without = data.clone();
        without.as_object_mut().unwrap().remove("language");
        assert_eq!(
            check_data("rag.document.ingested", &without).unwrap_err(),
            "data.language is missing"
        );
        let mut negative = data;
        negative["chunks"] = json!(-1);
        assert!(check_data("rag.document.ingested", &negative).is_err());
    }

    /// Contract §8, the topics backed by events of the log, with the
    /// event type each delivers.
    const CONTRACT_TOPICS: [(&str, &str); 5] = [
        ("community.member.added", "community.member.joined"),
        ("community.member.revoked", "community.member.revoked"),
        ("node.manifest.updated", "node.manifest.updated"),
        ("marketplace.post.created", "market.post.created"),
        ("marketplace.post.expired", "market.post.expired"),
    ];

    #[test]
    fn every_topic_of_the_contract_resolves_to_its_event_type() {
        for (name, event_type) in CONTRACT_TOPICS {
            let filter = topic(name).unwrap_or_else(|| panic!("{name} does not resolve"));
            assert_eq!(filter.event_types().collect::<Vec<_>>(), [event_type]);
            assert!(filter.matches(event_type, &json!({})), "{name}");
            assert!(!filter.matches("chat.message.sent", &json!({})), "{name}");
        }
    }

    #[test]
    fn unknown_and_local_only_topics_do_not_resolve() {
        for name in [
            "",
            "market.post.created",
            "community.member.joined",
            "marketplace.post",
            "emergency.mode.changed",
            "federation.peer.added",
            "capability.registered",
            "chat.message.",
            "chat.message.sent",
            "chat.message.ed25519:nope",
        ] {
            assert_eq!(topic(name), None, "{name}");
        }
    }

    #[test]
    fn the_chat_topic_takes_its_recipient_as_parameter() {
        let me = NodeId::from_bytes([1; 32]);
        let other = NodeId::from_bytes([2; 32]);
        let filter = topic(&format!("chat.message.{}", me.full())).expect("resolves");
        assert_eq!(
            filter.event_types().collect::<Vec<_>>(),
            ["chat.message.sent"]
        );
        let to = |node: NodeId| json!({"recipient": node.full(), "body": "hi"});
        assert!(filter.matches("chat.message.sent", &to(me)));
        assert!(!filter.matches("chat.message.sent", &to(other)));
        assert!(!filter.matches("chat.message.sent", &json!({"body": "hi"})));
        assert!(!filter.matches("chat.message.read", &to(me)));
    }

    #[test]
    fn a_parameterised_topic_names_a_declared_field() {
        for d in TYPES {
            if let Topic::PerField { field, .. } = d.topic {
                assert!(d.fields.iter().any(|(f, _)| *f == field), "{}", d.name);
            }
        }
    }

    #[test]
    fn a_private_topic_is_named_by_a_node_field() {
        for d in TYPES {
            if let Topic::PerField {
                field,
                private: true,
                ..
            } = d.topic
            {
                assert!(d.fields.contains(&(field, Kind::Node)), "{}", d.name);
            }
        }
    }

    #[test]
    fn only_the_recipient_may_subscribe_to_its_chat_topic() {
        let me = NodeId::from_bytes([1; 32]);
        let filter = topic(&format!("chat.message.{}", me.full())).expect("resolves");
        assert_eq!(filter.private_to(), Some(me));
        let public = topic("marketplace.post.created").expect("resolves");
        assert_eq!(public.private_to(), None);
    }
}
