//! M03: the capability bus.
//!
//! Owns the registry of capability entries, routing (local first, then the
//! best-scored provider), admission (trust level, `max_concurrent` answered
//! with `capacity_exceeded` and `retry_after_ms`, never a queue), deadlines,
//! cancellation (dropping a [`CallStream`] stops the provider), health with
//! quarantine, and the trace ring buffer. Services implement [`Service`]:
//! each declares its capabilities once ([`CapabilityDescriptor`], with the
//! request schema the bus enforces before a handler runs) together with the
//! handler that serves each ([`Capability`]). Our own capabilities can be
//! withdrawn and restored (emergency mode); every change of the registry is
//! published locally as a [`RegistryEvent`]. [`LoadedOnFirstUse`] holds what a service
//! loads on its first call (a model), never at start.
//!
//! Architecture invariant: the bus knows no wire format and no service's
//! internals; the transport turns HTTP into [`InboundCall`]s and
//! [`Item`]s back into bodies and frames.

pub mod bus;
pub mod descriptor;
pub mod health;
pub mod lazy;
pub mod service;
pub mod trace;
pub mod version;

pub use bus::{
    Bus, BusSettings, CallStream, CapabilityKey, InboundCall, RegisterError, RegistryEvent,
    SESSION_IDLE,
};
pub use descriptor::{CapabilityDescriptor, Trust, body_schema};
pub use lazy::LoadedOnFirstUse;
pub use service::{Call, CallError, Capability, Frame, FrameSink, Gone, Handler, Item, Service};
pub use version::Version;
