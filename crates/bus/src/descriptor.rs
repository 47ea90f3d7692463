//! Capability descriptors: what a service offers, with the schemas whose
//! hash (Contract §11) tells two implementations they speak alike.

use std::time::Duration;

use hearthnet_base::schema::schema_hash;
use hearthnet_base::{Blake3Id, Stability, TrustLevel};
use hearthnet_identity::CapabilitySpec;
use serde_json::Value;

use crate::version::Version;

/// Who may call a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// At least this level in the community.
    Level(TrustLevel),
    /// Only this node itself (e.g. `chat.history`).
    SelfOnly,
}

/// Everything the bus and its peers need to know of one capability,
/// declared once by the service that offers it. Start from
/// [`CapabilityDescriptor::new`] and name the fields that differ.
#[derive(Debug, Clone)]
pub struct CapabilityDescriptor {
    pub name: String,
    pub version: Version,
    pub stability: Stability,
    /// The JSON Schema every request body (`{"params", "input"}`) must
    /// meet; enforced before the handler runs (`schema_mismatch`).
    pub request_schema: Value,
    pub response_schema: Option<Value>,
    /// Schema of stream frames; `Some` makes the capability streaming.
    pub stream_schema: Option<Value>,
    /// Instance parameters, e.g. `{"model": "qwen2.5-7b-instruct"}`.
    pub params: Value,
    pub max_concurrent: u32,
    pub trust: Trust,
    /// Deadline when the caller names none.
    pub timeout: Duration,
    pub idempotent: bool,
    /// Changes state others rely on: its non-stream responses are signed
    /// (Contract §5.2).
    pub mutating: bool,
    /// Cannot work without the internet: withdrawn in emergency mode.
    pub needs_internet: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DescriptorError {
    #[error(
        "capability `{0}` is outside the allocated namespaces (Contract §3.1); unallocated names start with `experimental.`"
    )]
    Namespace(String),
    #[error("capability `{0}`: {1}")]
    Invalid(String, String),
}

/// The capabilities only a node itself may call, whichever of its services
/// run. The bus never takes them from a peer's manifest, so a call meant for
/// this node (carrying the owner's plaintext, say) cannot reach another
/// node even while the service is disabled here and a peer offers the
/// name. Names with a `local` part are own-only too. Registration refuses
/// a self-only capability missing here, and a listed name that is not
/// self-only, so this list and the services cannot drift apart.
pub const OWN_ONLY: [&str; 12] = [
    "chat.send",
    "chat.history",
    "community.invite",
    "community.revoke",
    "community.demote",
    "community.proposal.create",
    "community.proposal.cosign",
    "community.proposal.submit",
    "market.post",
    "market.expire",
    "rag.reindex",
    "experimental.event.append",
];

/// Whether only a node itself may call `name` ([`OWN_ONLY`]).
pub fn is_own_only(name: &str) -> bool {
    OWN_ONLY.contains(&name) || name.split('.').any(|part| part == "local")
}

/// Prefixes owned by this release's services (Contract §3.1).
const ALLOCATED: [&str; 9] = [
    "llm.",
    "embed.",
    "rag.",
    "file.",
    "market.",
    "chat.",
    "community.",
    "federation.",
    "experimental.",
];

/// The request schema of a capability whose `input` must meet `input`:
/// `{"params": {...}, "input": <input>}`, `input` required.
pub fn body_schema(input: Value) -> Value {
    serde_json::json!({
        "type": "object",
        "required": ["input"],
        "properties": {"params": {"type": "object"}, "input": input}
    })
}

impl CapabilityDescriptor {
    /// Version 1.0 of `name`, taking `input`; experimental, for members,
    /// four calls at once, the contract's default deadline, no stream,
    /// idempotent, changing nothing and needing no internet.
    pub fn new(name: &str, input: Value) -> Self {
        Self {
            name: name.to_owned(),
            version: Version::new(1, 0),
            stability: Stability::Experimental,
            request_schema: body_schema(input),
            response_schema: Some(serde_json::json!({"type": "object"})),
            stream_schema: None,
            params: serde_json::json!({}),
            max_concurrent: 4,
            trust: Trust::Level(TrustLevel::Member),
            timeout: Duration::from_secs(hearthnet_base::constants::RPC_DEFAULT_TIMEOUT_SECONDS),
            idempotent: true,
            mutating: false,
            needs_internet: false,
        }
    }

    pub fn schema_hash(&self) -> Blake3Id {
        schema_hash(
            &self.name,
            &self.version.to_string(),
            &self.request_schema,
            self.response_schema.as_ref(),
            self.stream_schema.as_ref(),
        )
        // Schemas are our own literals; a number out of range is a bug we
        // would see in every test, so hash the name alone rather than panic.
        .unwrap_or_else(|_| Blake3Id::of(self.name.as_bytes()))
    }

    pub fn is_streaming(&self) -> bool {
        self.stream_schema.is_some()
    }

    /// Check the name's namespace, the basic shape and the request schema.
    pub fn validate(&self) -> Result<(), DescriptorError> {
        self.compile().map(drop)
    }

    /// [`Self::validate`], and the compiled request schema.
    pub(crate) fn compile(&self) -> Result<jsonschema::Validator, DescriptorError> {
        let name = &self.name;
        let well_formed = !name.is_empty()
            && name.split('.').count() >= 2
            && name.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            });
        if !well_formed {
            return Err(DescriptorError::Invalid(
                name.clone(),
                "names are dotted lowercase, e.g. llm.chat".into(),
            ));
        }
        if !ALLOCATED.iter().any(|p| name.starts_with(p)) {
            return Err(DescriptorError::Namespace(name.clone()));
        }
        if (self.trust == Trust::SelfOnly) != is_own_only(name) {
            return Err(DescriptorError::Invalid(
                name.clone(),
                "a capability is self-only exactly when it is named in descriptor::OWN_ONLY or has a `local` part".into(),
            ));
        }
        if self.max_concurrent == 0 {
            return Err(DescriptorError::Invalid(
                name.clone(),
                "max_concurrent must be at least 1".into(),
            ));
        }
        if !self.request_schema.is_object() {
            return Err(DescriptorError::Invalid(
                self.name.clone(),
                "request_schema must be a JSON Schema object".into(),
            ));
        }
        jsonschema::validator_for(&self.request_schema).map_err(|e| {
            DescriptorError::Invalid(self.name.clone(), format!("request_schema: {e}"))
        })
    }

    /// A peer's capability as far as its manifest tells: name, version,
    /// params and capacity. The schemas stay with the peer, which checks
    /// calls against them (and the caller's trust level) itself.
    pub fn offered_by_peer(spec: &CapabilitySpec, version: Version, default: Duration) -> Self {
        Self {
            name: spec.name.clone(),
            version,
            stability: spec.stability,
            request_schema: serde_json::json!({"type": "object"}),
            response_schema: None,
            stream_schema: None,
            params: spec.params.clone(),
            max_concurrent: spec.max_concurrent.max(1),
            trust: Trust::Level(TrustLevel::Member),
            timeout: peer_timeout(spec, default),
            idempotent: false,
            // Unknown: the caller's node signs what it relays anyway.
            mutating: false,
            needs_internet: false,
        }
    }

    /// The subset that goes into a node manifest (Contract §6.1).
    pub fn spec(&self) -> CapabilitySpec {
        CapabilitySpec {
            name: self.name.clone(),
            version: self.version.to_string(),
            stability: self.stability,
            schema_hash: self.schema_hash().to_string(),
            params: self.params.clone(),
            max_concurrent: self.max_concurrent,
            timeout_seconds: Some(self.timeout.as_secs().max(1)),
        }
    }
}

/// The longest a peer's declared timeout is taken as: an hour, the bus's
/// longest deadline.
const MAX_PEER_TIMEOUT: Duration = Duration::from_secs(3600);

/// How long a call to a peer's capability may run: what the peer declares
/// (bounded), else `default` for a peer that declares nothing.
pub(crate) fn peer_timeout(spec: &CapabilitySpec, default: Duration) -> Duration {
    spec.timeout_seconds
        .map_or(default, Duration::from_secs)
        .clamp(Duration::from_secs(1), MAX_PEER_TIMEOUT)
}

/// The default `params_compatible` (M03 §5.5): every requested parameter
/// the offer also names must be equal, except that a requested `model` may
/// also match any entry of the offer's `models` catalogue (Contract §4.1).
/// Parameters the offer does not name are the caller's business.
pub fn default_params_compatible(offered: &Value, requested: &Value) -> bool {
    let (Some(offered), Some(requested)) = (offered.as_object(), requested.as_object()) else {
        return true;
    };
    requested.iter().all(|(key, wanted)| {
        let in_catalogue = || {
            offered
                .get(&format!("{key}s"))
                .and_then(Value::as_array)
                .is_some_and(|all| all.contains(wanted))
        };
        match offered.get(key) {
            Some(have) => have == wanted || in_catalogue(),
            None => in_catalogue() || !offered.contains_key(&format!("{key}s")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn echo_like(name: &str) -> CapabilityDescriptor {
        CapabilityDescriptor {
            max_concurrent: 2,
            ..CapabilityDescriptor::new(name, json!({"type": "object"}))
        }
    }

    #[test]
    fn namespaces_are_enforced() {
        assert!(echo_like("experimental.echo").validate().is_ok());
        assert!(echo_like("llm.chat").validate().is_ok());
        assert_eq!(
            echo_like("ocr.page").validate(),
            Err(DescriptorError::Namespace("ocr.page".into()))
        );
        assert!(matches!(
            echo_like("Echo").validate(),
            Err(DescriptorError::Invalid(..))
        ));
    }

    #[test]
    fn self_only_exactly_when_listed_as_own_only() {
        let own = |name: &str| CapabilityDescriptor {
            trust: Trust::SelfOnly,
            ..echo_like(name)
        };
        assert!(own("chat.send").validate().is_ok());
        assert!(own("file.local.add").validate().is_ok());
        for unlisted in [own("experimental.mine"), echo_like("chat.history")] {
            assert!(
                matches!(unlisted.validate(), Err(DescriptorError::Invalid(n, why)) if why.contains("OWN_ONLY") && n == unlisted.name),
                "{} registered",
                unlisted.name
            );
        }
    }

    #[test]
    fn schema_hash_is_stable_and_changes_with_the_schema() {
        let a = echo_like("experimental.echo");
        assert_eq!(
            a.schema_hash(),
            echo_like("experimental.echo").schema_hash()
        );
        let mut b = echo_like("experimental.echo");
        b.request_schema = json!({"type": "object", "required": ["input"]});
        assert_ne!(a.schema_hash(), b.schema_hash());
    }

    #[test]
    fn params_match_models_and_catalogues() {
        let offered = json!({"model": "qwen", "models": ["qwen", "llama"], "ctx": 8192});
        assert!(default_params_compatible(
            &offered,
            &json!({"model": "llama"})
        ));
        assert!(default_params_compatible(
            &offered,
            &json!({"model": "qwen", "ctx": 8192})
        ));
        assert!(!default_params_compatible(
            &offered,
            &json!({"model": "mistral"})
        ));
        assert!(!default_params_compatible(&offered, &json!({"ctx": 4096})));
        assert!(default_params_compatible(
            &offered,
            &json!({"temperature": 0.2})
        ));
        assert!(default_params_compatible(
            &json!({}),
            &json!({"anything": 1})
        ));
    }
}
