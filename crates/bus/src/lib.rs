//! M03: the capability bus.
//!
//! Owns the registry of capability entries, routing (local first, then the
//! best-scored provider), admission (trust level, `max_concurrent` answered
//! with `capacity_exceeded` and `retry_after_ms`, never a queue), deadlines,
//! cancellation (dropping a [`CallStream`] stops the provider), health with
//! quarantine, and the trace ring buffer. Services implement [`Service`].
//!
//! Architecture invariant: the bus knows no wire format and no service's
//! internals; the transport turns HTTP into [`InboundCall`]s and
//! [`Item`]s back into bodies and frames.

pub mod bus;
pub mod descriptor;
pub mod health;
pub mod service;
pub mod trace;
pub mod version;

pub use bus::{Bus, BusSettings, CallStream, EntryInfo, InboundCall};
pub use descriptor::{CapabilityDescriptor, Trust};
pub use service::{Call, CallError, Frame, FrameSink, Gone, Item, Service};
pub use trace::TraceRecord;
pub use version::Version;
