//! X03: how a node tells people what it is doing and what is wrong.
//!
//! The doctor, a list of self-diagnostics ([`doctor::COLD_CHECKS`]) that
//! later components extend by adding an entry; structured JSON logs in
//! daily files ([`logging`]); Prometheus metrics ([`metrics`]). The trace
//! ring buffer lives with the bus, which records every call.
//!
//! Architecture invariant: checks only *look*. A check never creates,
//! repairs or deletes anything the node owns; the only file it writes is
//! its own probe, removed at once.

pub mod doctor;
pub mod logging;
pub mod metrics;
pub mod sockets;
