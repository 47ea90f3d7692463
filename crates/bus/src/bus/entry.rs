//! One capability of one node as the bus holds it: the handler that
//! serves it, its capacity and load, its health, for our own the request
//! schema a call must pass, for a peer's how long the peer's manifest
//! vouches for it; and the score routing ranks it by (M03 §5.4).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hearthnet_base::{ErrorCode, NodeId};
use hearthnet_identity::CapabilitySpec;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{CapabilityKey, InboundCall};
use crate::descriptor::{CapabilityDescriptor, Trust, default_params_compatible};
use crate::health::Health;
use crate::service::{CallError, Capability, Handler};
use crate::version::Version;

pub(super) struct Entry {
    pub(super) node_id: NodeId,
    pub(super) descriptor: CapabilityDescriptor,
    /// Ours, or as the offering peer's manifest states it.
    pub(super) schema_hash: String,
    pub(super) handler: Handler,
    pub(super) params_compatible: fn(&Value, &Value) -> bool,
    /// For our own entries: the request schema, checked before the
    /// handler runs. A peer checks its own.
    request_schema: Option<jsonschema::Validator>,
    pub(super) permits: Arc<Semaphore>,
    pub(super) in_flight: AtomicU32,
    pub(super) health: Mutex<Health>,
    /// For a peer's entry: until when its manifest vouches for it.
    pub(super) valid_until: Mutex<Option<Instant>>,
}

impl Entry {
    /// One of our own capabilities, with its compiled request schema.
    pub(super) fn local(
        node_id: NodeId,
        capability: Capability,
        request_schema: jsonschema::Validator,
    ) -> Arc<Self> {
        let hash = capability.descriptor.schema_hash().to_string();
        Self::new(
            node_id,
            capability.descriptor,
            hash,
            capability.handler,
            capability.params_compatible,
            Some(request_schema),
            None,
        )
    }

    /// What peer `node` offers as `spec` (its version already parsed),
    /// carried there by `provider` until the manifest runs out.
    pub(super) fn remote(
        node: NodeId,
        spec: &CapabilitySpec,
        version: Version,
        default_timeout: Duration,
        provider: Handler,
        valid_until: Instant,
    ) -> Arc<Self> {
        Self::new(
            node,
            CapabilityDescriptor::offered_by_peer(spec, version, default_timeout),
            spec.schema_hash.clone(),
            provider,
            default_params_compatible,
            None,
            Some(valid_until),
        )
    }

    fn new(
        node_id: NodeId,
        descriptor: CapabilityDescriptor,
        schema_hash: String,
        handler: Handler,
        params_compatible: fn(&Value, &Value) -> bool,
        request_schema: Option<jsonschema::Validator>,
        valid_until: Option<Instant>,
    ) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            permits: Arc::new(Semaphore::new(descriptor.max_concurrent as usize)),
            descriptor,
            schema_hash,
            handler,
            params_compatible,
            request_schema,
            in_flight: AtomicU32::new(0),
            health: Mutex::new(Health::default()),
            valid_until: Mutex::new(valid_until),
        })
    }

    /// Whether `spec` of peer `node` is what this entry already holds, so
    /// a renewed manifest keeps the entry and its health record.
    pub(super) fn is_offer(&self, node: NodeId, spec: &CapabilitySpec, version: Version) -> bool {
        self.node_id == node
            && self.descriptor.name == spec.name
            && self.descriptor.version == version
            && self.schema_hash == spec.schema_hash
            && self.descriptor.params == spec.params
            // A peer that declares nothing keeps the timeout it has.
            && self.descriptor.timeout == crate::descriptor::peer_timeout(spec, self.descriptor.timeout)
    }

    pub(super) fn is_fresh(&self, now: Instant) -> bool {
        self.valid_until.lock().is_none_or(|until| now < until)
    }

    pub(super) fn is_quarantined(&self, now: Instant) -> bool {
        self.health.lock().is_quarantined(now)
    }

    /// Whether our own entry may run `req`: the caller's trust level, then
    /// the body against the request schema.
    pub(super) fn admit(&self, req: &InboundCall, us: NodeId) -> Result<(), CallError> {
        check_trust(&self.descriptor, req, us)?;
        self.check_request(&req.body)
    }

    /// Contract §5.4: a body that breaks the request schema is refused
    /// with `schema_mismatch`, naming where, before any work is done.
    fn check_request(&self, body: &Value) -> Result<(), CallError> {
        let Some(schema) = &self.request_schema else {
            return Ok(());
        };
        let Err(e) = schema.validate(body) else {
            return Ok(());
        };
        let at = e.instance_path().to_string();
        let at = if at.is_empty() { "/".to_owned() } else { at };
        Err(CallError::new(
            ErrorCode::SchemaMismatch,
            format!(
                "the request does not match the schema of {}@{} at `{at}`: {e}",
                self.descriptor.name, self.descriptor.version
            ),
        )
        .with("schema_hash_expected", json!(self.schema_hash)))
    }

    pub(super) fn key(&self) -> CapabilityKey {
        CapabilityKey {
            name: self.descriptor.name.clone(),
            version: self.descriptor.version.to_string(),
            node: self.node_id,
        }
    }

    pub(super) fn load(&self) -> f64 {
        f64::from(self.in_flight.load(Ordering::Relaxed))
            / f64::from(self.descriptor.max_concurrent.max(1))
    }

    /// M03 §5.4: lower is better.
    pub(super) fn score(&self, is_local: bool) -> f64 {
        let (p50, success) = {
            let h = self.health.lock();
            (h.p50_ms(), h.success_rate())
        };
        let latency = if p50 > 0.0 { p50 } else { 500.0 };
        let bonus = if is_local { -50.0 } else { 0.0 };
        latency * (1.0 + self.load()) + (1.0 - success) * 1000.0 + bonus
    }
}

fn check_trust(d: &CapabilityDescriptor, req: &InboundCall, us: NodeId) -> Result<(), CallError> {
    let allowed = match d.trust {
        Trust::Level(needed) => req.caller_level >= needed,
        Trust::SelfOnly => req.caller == us,
    };
    if allowed {
        Ok(())
    } else {
        Err(CallError::new(
            ErrorCode::Unauthorized,
            format!(
                "{} needs trust level {:?}; the caller is {}",
                d.name, d.trust, req.caller_level
            ),
        ))
    }
}
