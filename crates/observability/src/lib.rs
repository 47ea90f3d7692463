//! X03: how a node tells people what it is doing and what is wrong.
//!
//! Today: the doctor, a list of self-diagnostics that need no running node
//! ([`doctor::COLD_CHECKS`]); later components extend the list by adding an
//! entry. Structured logs, metrics and the trace ring buffer arrive with
//! the running node.
//!
//! Architecture invariant: checks only *look*. A check never creates,
//! repairs or deletes anything the node owns; the only file it writes is
//! its own probe, removed at once.

pub mod doctor;
pub mod metrics;
pub mod sockets;
