//! The registry: which capabilities the bus can route to. Our own come
//! from registered services and can be withdrawn and restored; peers'
//! offers are set from their manifests and stay while those are valid.
//! Every change is published locally as a [`RegistryEvent`] (M03 §3.2).

use std::sync::Arc;
use std::time::Duration;

use hearthnet_base::NodeId;
use hearthnet_identity::CapabilitySpec;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::Bus;
use super::entry::Entry;
use crate::descriptor::{CapabilityDescriptor, DescriptorError, is_own_only};
use crate::service::{Handler, Service};
use crate::version::Version;

/// One capability of one node, as registry events name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilityKey {
    pub name: String,
    pub version: String,
    pub node: NodeId,
}

/// A change of what the bus can route to (M03 §3.2), published locally to
/// whoever subscribed ([`Bus::changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    /// `capability.added`: registered, restored, or offered by a peer.
    Added(CapabilityKey),
    /// `capability.removed`: withdrawn, or no longer offered by a peer.
    Removed(CapabilityKey),
}

impl RegistryEvent {
    /// The local topic the event is published under.
    pub fn topic(&self) -> &'static str {
        match self {
            Self::Added(_) => "capability.added",
            Self::Removed(_) => "capability.removed",
        }
    }
}

/// Registry events kept for a subscriber that lags behind.
pub(super) const REGISTRY_EVENT_BACKLOG: usize = 256;

/// A service whose capabilities could not be registered, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot register the {service} service: {source}")]
pub struct RegisterError {
    pub service: &'static str,
    #[source]
    pub source: DescriptorError,
}

impl Bus {
    /// Register every capability `service` declares. Nothing is
    /// registered if any declaration is invalid; the error names the
    /// service and the capability.
    pub fn register(&self, service: Arc<dyn Service>) -> Result<(), RegisterError> {
        let name = service.name();
        let mut ready = Vec::new();
        for capability in service.capabilities() {
            let schema = capability
                .descriptor
                .compile()
                .map_err(|source| RegisterError {
                    service: name,
                    source,
                })?;
            ready.push(Entry::local(self.node_id, capability, schema));
        }
        let mut entries = self.entries.write();
        for entry in ready {
            let same = |e: &Arc<Entry>| {
                e.node_id == self.node_id
                    && e.descriptor.name == entry.descriptor.name
                    && e.descriptor.version == entry.descriptor.version
            };
            entries.retain(|e| !same(e));
            self.withdrawn.lock().retain(|e| !same(e));
            tracing::info!(service = name, capability = %entry.descriptor.name, version = %entry.descriptor.version, "capability registered");
            self.publish(RegistryEvent::Added(entry.key()));
            entries.push(entry);
        }
        Ok(())
    }

    /// Take our own capabilities that `pick` selects off the bus: they are
    /// no longer routed to or listed in our manifest (calls in flight
    /// finish) until [`Bus::restore`]. Returns the names withdrawn.
    pub fn withdraw(&self, pick: impl Fn(&CapabilityDescriptor) -> bool) -> Vec<String> {
        let mut entries = self.entries.write();
        let (taken, kept): (Vec<_>, Vec<_>) = entries
            .drain(..)
            .partition(|e| e.node_id == self.node_id && pick(&e.descriptor));
        *entries = kept;
        self.announce(&taken, RegistryEvent::Removed, "withdrawn");
        let names = taken.iter().map(|e| e.descriptor.name.clone()).collect();
        self.withdrawn.lock().extend(taken);
        names
    }

    /// The names of our capabilities withdrawn at the moment (emergency
    /// mode shows what it took away).
    pub fn withdrawn_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .withdrawn
            .lock()
            .iter()
            .map(|e| e.descriptor.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Put back the withdrawn capabilities that `pick` selects. Returns
    /// the names restored.
    pub fn restore(&self, pick: impl Fn(&CapabilityDescriptor) -> bool) -> Vec<String> {
        let mut entries = self.entries.write();
        let (back, still): (Vec<_>, Vec<_>) = self
            .withdrawn
            .lock()
            .drain(..)
            .partition(|e| pick(&e.descriptor));
        *self.withdrawn.lock() = still;
        self.announce(&back, RegistryEvent::Added, "restored");
        let names = back.iter().map(|e| e.descriptor.name.clone()).collect();
        entries.extend(back);
        names
    }

    /// Registry events from now on (M03 §3.2): capabilities added and
    /// removed, ours and our peers'.
    pub fn changes(&self) -> broadcast::Receiver<RegistryEvent> {
        self.changes.subscribe()
    }

    fn publish(&self, event: RegistryEvent) {
        // Nobody listening is fine: the events are for whoever cares now.
        let _ = self.changes.send(event);
    }

    fn announce(
        &self,
        entries: &[Arc<Entry>],
        event: fn(CapabilityKey) -> RegistryEvent,
        what: &str,
    ) {
        for e in entries {
            tracing::info!(capability = %e.descriptor.name, version = %e.descriptor.version, "capability {what}");
            self.publish(event(e.key()));
        }
    }

    /// Set what peer `node` offers, as its manifest (valid for `valid_for`)
    /// lists it; `provider` carries calls there. Entries that stay keep
    /// their health record; the ones no longer offered go.
    pub fn set_remote(
        &self,
        node: NodeId,
        offers: &[CapabilitySpec],
        valid_for: Duration,
        provider: Handler,
    ) {
        let until = Instant::now() + valid_for;
        let mut entries = self.entries.write();
        let mut kept: Vec<Arc<Entry>> = Vec::new();
        // What only a node itself may call is never taken from a peer: a
        // call meant for this node must not reach another.
        for spec in offers.iter().filter(|s| !is_own_only(&s.name)) {
            let Ok(version) = spec.version.parse::<Version>() else {
                tracing::debug!(peer = %node.short(), capability = %spec.name, version = %spec.version, "unusable version in a peer's manifest");
                continue;
            };
            match entries.iter().find(|e| e.is_offer(node, spec, version)) {
                Some(e) => {
                    *e.valid_until.lock() = Some(until);
                    kept.push(e.clone());
                }
                None => {
                    let entry = Entry::remote(
                        node,
                        spec,
                        version,
                        self.settings.default_timeout,
                        provider.clone(),
                        until,
                    );
                    self.publish(RegistryEvent::Added(entry.key()));
                    kept.push(entry);
                }
            }
        }
        entries.retain(|e| {
            let gone = e.node_id == node && !kept.iter().any(|k| Arc::ptr_eq(k, e));
            if gone {
                self.publish(RegistryEvent::Removed(e.key()));
            }
            e.node_id != node
        });
        entries.extend(kept);
    }

    /// The peers with entries on this bus.
    pub fn remote_nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = self
            .entries
            .read()
            .iter()
            .map(|e| e.node_id)
            .filter(|n| *n != self.node_id)
            .collect();
        nodes.sort_by_key(NodeId::full);
        nodes.dedup();
        nodes
    }

    /// Forget everything peer `node` offered.
    pub fn remove_remote(&self, node: &NodeId) {
        if *node == self.node_id {
            return;
        }
        self.entries.write().retain(|e| {
            let gone = e.node_id == *node;
            if gone {
                self.publish(RegistryEvent::Removed(e.key()));
            }
            !gone
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::BusSettings;
    use crate::bus::testing::{FakePeer, bus_with, call, offer, peer};
    use crate::descriptor::Trust;
    use crate::service::{Call, Capability};
    use hearthnet_base::{DeviceKey, ErrorCode, TrustLevel};
    use hearthnet_observability::metrics::Metrics;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn withdrawn_capabilities_are_not_routed_until_restored() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let mut changes = bus.changes();
        let key = CapabilityKey {
            name: "experimental.test".into(),
            version: "1.2".into(),
            node: bus.node_id(),
        };
        assert_eq!(
            bus.withdraw(|d| d.name == "experimental.other"),
            Vec::<String>::new()
        );
        assert_eq!(
            bus.withdraw(|d| !d.needs_internet),
            vec!["experimental.test"]
        );
        assert_eq!(
            changes.try_recv().ok(),
            Some(RegistryEvent::Removed(key.clone()))
        );
        assert_eq!(
            bus.call(call(json!({}))).err().map(|e| e.code),
            Some(ErrorCode::NotFound)
        );
        assert!(
            bus.local_descriptors().is_empty(),
            "not in our manifest either"
        );
        assert_eq!(bus.restore(|_| true), vec!["experimental.test"]);
        assert_eq!(changes.try_recv().ok(), Some(RegistryEvent::Added(key)));
        assert!(bus.call(call(json!({}))).is_ok());
        assert!(changes.try_recv().is_err(), "one event per change");
    }

    #[tokio::test(start_paused = true)]
    async fn peers_offers_come_and_go_as_registry_events() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let mut changes = bus.changes();
        let node = DeviceKey::generate().node_id();
        let key = CapabilityKey {
            name: "experimental.remote".into(),
            version: "1.0".into(),
            node,
        };
        let provider: Arc<FakePeer> = peer(true);
        offer(&bus, node, &provider);
        assert_eq!(
            changes.try_recv().ok(),
            Some(RegistryEvent::Added(key.clone()))
        );
        offer(&bus, node, &provider);
        assert!(
            changes.try_recv().is_err(),
            "an unchanged offer is no event"
        );
        bus.set_remote(node, &[], Duration::from_secs(30), provider.handler());
        assert_eq!(
            changes.try_recv().ok(),
            Some(RegistryEvent::Removed(key.clone()))
        );
        offer(&bus, node, &provider);
        bus.remove_remote(&node);
        assert_eq!(
            changes.try_recv().ok(),
            Some(RegistryEvent::Added(key.clone()))
        );
        assert_eq!(changes.try_recv().ok(), Some(RegistryEvent::Removed(key)));
    }

    #[tokio::test(start_paused = true)]
    async fn own_only_names_are_never_taken_from_a_peer_even_unserved_here() {
        let (bus, _) = bus_with(2, Trust::Level(TrustLevel::Member));
        let node = DeviceKey::generate().node_id();
        let provider: Arc<FakePeer> = peer(true);
        let named = |name: &str| CapabilitySpec {
            name: name.into(),
            ..crate::bus::testing::remote_spec()
        };
        let offers = [
            named("chat.send"),
            named("file.local.get"),
            named("market.list"),
        ];
        bus.set_remote(node, &offers, Duration::from_secs(30), provider.handler());
        let taken: Vec<String> = bus
            .entries()
            .into_iter()
            .filter(|e| e.node == node)
            .map(|e| e.name)
            .collect();
        assert_eq!(taken, vec!["market.list"]);
        let own_send = crate::bus::InboundCall {
            capability: "chat.send".into(),
            caller: bus.node_id(),
            ..call(json!({}))
        };
        assert_eq!(
            bus.call(own_send).err().map(|e| e.code),
            Some(ErrorCode::NotFound)
        );
        assert_eq!(provider.served(), 0, "the owner's message never left");
    }

    #[test]
    fn a_bad_declaration_names_its_service_and_registers_nothing() {
        struct Broken;
        impl Service for Broken {
            fn name(&self) -> &'static str {
                "broken"
            }
            fn capabilities(self: Arc<Self>) -> Vec<Capability> {
                let good = CapabilityDescriptor::new("experimental.good", json!({}));
                let bad = CapabilityDescriptor {
                    request_schema: json!({"type": 12}),
                    ..CapabilityDescriptor::new("experimental.bad", json!({}))
                };
                let serve = |_: Arc<Self>, _: Call| async { Ok(json!({})) };
                vec![
                    Capability::new(good, &self, serve),
                    Capability::new(bad, &self, serve),
                ]
            }
        }
        let bus = Bus::new(
            DeviceKey::generate().node_id(),
            BusSettings::default(),
            Arc::new(Metrics::new()),
        );
        let err = bus
            .register(Arc::new(Broken))
            .expect_err("an invalid schema was registered")
            .to_string();
        assert!(
            err.starts_with(
                "cannot register the broken service: capability `experimental.bad`: request_schema:"
            ),
            "{err}"
        );
        assert_eq!(bus.capability_count(), 0);
    }
}
