//! X02: the community's event log.
//!
//! Owns the SQLite database of signed events (`<state_dir>/events.sqlite`),
//! the validation every event passes before it is stored (signature,
//! community, type and data shape, size, clocks, and whether its author may
//! write it at that point of history), the Lamport clock (§7.3), replay in
//! `(lamport, event_id)` order into the community view (§7.4), snapshots
//! (§7.5), and the set-reconciliation side of sync ([`sync`]).
//!
//! Architecture invariant: nothing reaches the database except through the
//! log's own thread, and nothing is stored that failed validation.

mod history;
mod limits;
pub mod log;
pub mod market;
mod reject;
pub mod snapshot;
pub mod sync;
pub mod types;
pub mod view;

pub use limits::{DayQuota, Limits};
pub use log::{
    AppendReport, EventLog, EventLogError, JudgedOut, LogPaths, Query, Selection, StoredEvent,
    read_stored,
};
pub use reject::{Reject, RejectCode};
pub use view::{CommunityView, Position, Tally, cosigned_payload};

/// A materialised view: state built by folding events in replay order
/// (§7.4). The community view is one; each service keeps its own.
pub trait Fold {
    /// Whether this view cares about events of `event_type`.
    fn wants(&self, event_type: &str) -> bool;
    /// Fold one event in; events arrive in `(lamport, event_id)` order.
    fn apply(&mut self, event: &hearthnet_base::event::Event);
}

impl Fold for CommunityView {
    fn wants(&self, event_type: &str) -> bool {
        event_type.starts_with("community.")
    }

    fn apply(&mut self, event: &hearthnet_base::event::Event) {
        CommunityView::apply(self, event);
    }
}
