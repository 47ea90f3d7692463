//! Sticky sessions (M03 §5.6): the calls of one multi-turn conversation
//! go to the provider that served its last turn while that provider can
//! serve them, so a model that keeps the conversation's context (a prompt
//! cache, a KV cache) keeps getting it. The binding is a preference, never
//! a promise: a provider that left, is quarantined or full loses the
//! session to the one routing picks instead, and the session follows it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hearthnet_base::NodeId;
use hearthnet_base::request::SessionId;
use tokio::time::Instant;

use super::entry::Entry;

/// A session unused this long is forgotten (M03 §5.6).
pub const SESSION_IDLE: Duration = Duration::from_secs(10 * 60);
/// At most this many sessions are remembered. Any local caller can name
/// sessions, so the table is bounded; past it the least recently used
/// session is forgotten, which costs that conversation its preference,
/// nothing more.
const MAX_SESSIONS: usize = 4096;
struct Binding {
    node: NodeId,
    last_used: Instant,
}

/// Which node serves each (capability, session).
#[derive(Default)]
pub(super) struct Sessions {
    bound: HashMap<(String, SessionId), Binding>,
}

impl Sessions {
    /// `ranked` with the session's provider moved to the front, if it is
    /// among them and the session was used within [`SESSION_IDLE`].
    pub(super) fn prefer_bound<'a>(
        &self,
        capability: &str,
        session: &SessionId,
        mut ranked: Vec<&'a Arc<Entry>>,
        now: Instant,
    ) -> Vec<&'a Arc<Entry>> {
        if let Some(node) = self.node_for(capability, session, now)
            && let Some(at) = ranked.iter().position(|e| e.node_id == node)
        {
            let entry = ranked.remove(at);
            ranked.insert(0, entry);
        }
        ranked
    }

    /// The node the session is bound to, unless it has been idle too long.
    fn node_for(&self, capability: &str, session: &SessionId, now: Instant) -> Option<NodeId> {
        self.bound
            .get(&(capability.to_owned(), session.clone()))
            .filter(|b| now.duration_since(b.last_used) < SESSION_IDLE)
            .map(|b| b.node)
    }

    /// The session's calls go to `node` from now on.
    pub(super) fn bind(
        &mut self,
        capability: &str,
        session: &SessionId,
        node: NodeId,
        now: Instant,
    ) {
        let key = (capability.to_owned(), session.clone());
        if !self.bound.contains_key(&key) && self.bound.len() >= MAX_SESSIONS {
            self.bound
                .retain(|_, b| now.duration_since(b.last_used) < SESSION_IDLE);
            if self.bound.len() >= MAX_SESSIONS
                && let Some(oldest) = self
                    .bound
                    .iter()
                    .min_by_key(|(_, b)| b.last_used)
                    .map(|(k, _)| k.clone())
            {
                self.bound.remove(&oldest);
            }
        }
        self.bound.insert(
            key,
            Binding {
                node,
                last_used: now,
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.bound.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_is_forgotten_and_each_capability_has_its_own() {
        let mut sessions = Sessions::default();
        let node = hearthnet_base::DeviceKey::generate().node_id();
        let id = SessionId::parse("chat-1").unwrap();
        sessions.bind("llm.chat", &id, node, Instant::now());
        assert_eq!(sessions.node_for("llm.complete", &id, Instant::now()), None);
        tokio::time::advance(SESSION_IDLE - Duration::from_millis(1)).await;
        assert_eq!(
            sessions.node_for("llm.chat", &id, Instant::now()),
            Some(node)
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(sessions.node_for("llm.chat", &id, Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded_and_forgets_the_least_recently_used() {
        let mut sessions = Sessions::default();
        let node = hearthnet_base::DeviceKey::generate().node_id();
        let first = SessionId::parse("s0").unwrap();
        sessions.bind("llm.chat", &first, node, Instant::now());
        for i in 1..MAX_SESSIONS + 10 {
            tokio::time::advance(Duration::from_millis(1)).await;
            let id = SessionId::parse(&format!("s{i}")).unwrap();
            sessions.bind("llm.chat", &id, node, Instant::now());
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        let key = ("llm.chat".to_owned(), first);
        assert!(!sessions.bound.contains_key(&key), "the oldest went first");
    }
}
