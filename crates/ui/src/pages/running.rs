//! Calls a page started and the browser follows as they run: a form's
//! POST starts the call (`llm.chat` token by token, a fetch's progress)
//! and answers with a fragment that opens `GET /running/ID`, a stream of
//! server-sent events carrying the call's frames as they come, then its
//! outcome (event `end`), then nothing: the fragment closes the stream on
//! `end` (`sse-close`).
//!
//! A started call waits here for its stream at most [`UNCLAIMED`] and is
//! claimed once, by the session that started it; a session keeps at most
//! [`PER_SESSION`] waiting and the node [`AT_MOST`]. A call dropped here
//! (expired, pushed out, its browser gone) is cancelled by its
//! `CallStream`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hearthnet_bus::{CallError, CallStream, Frame, Item};
use parking_lot::Mutex;
use rand_core::{OsRng, RngCore};
use serde_json::Value;

use crate::UiState;
use crate::access::{Session, StreamSlot};
use crate::live::event;
use crate::text::TEXT;

/// How long a started call waits for its browser to follow it.
const UNCLAIMED: Duration = Duration::from_secs(60);
/// Started calls waiting for their stream, per session.
pub const PER_SESSION: usize = 4;
/// ... and on the whole node.
const AT_MOST: usize = 64;

/// What a page shows of its call: each frame as `(SSE event, HTML)`, or
/// nothing; the outcome as the HTML of the `end` event.
pub trait Shown: Send + 'static {
    fn frame(&mut self, frame: &Frame) -> Option<(&'static str, String)>;
    fn end(&mut self, outcome: Result<Value, CallError>) -> String;
}

struct Waiting {
    owner: blake3::Hash,
    since: Instant,
    call: CallStream,
    shown: Box<dyn Shown>,
}

/// The started calls not yet followed.
#[derive(Default)]
pub struct Running {
    waiting: Mutex<HashMap<String, Waiting>>,
}

/// Which session started a call: the digest of its CSRF token, which is
/// per session and random, so the id a page holds is useless to another
/// session.
fn owner(session: &Session) -> blake3::Hash {
    blake3::hash(session.csrf.as_bytes())
}

impl Running {
    /// Keep `call` for `session`'s browser; the path of its stream.
    pub fn keep(&self, session: &Session, call: CallStream, shown: impl Shown) -> String {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        let id = data_encoding::BASE64URL_NOPAD.encode(&bytes);
        let owner = owner(session);
        let now = Instant::now();
        let mut waiting = self.waiting.lock();
        waiting.retain(|_, w| now.duration_since(w.since) < UNCLAIMED);
        let oldest = |waiting: &HashMap<String, Waiting>, mine: bool| {
            waiting
                .iter()
                .filter(|(_, w)| !mine || w.owner == owner)
                .min_by_key(|(_, w)| w.since)
                .map(|(id, _)| id.clone())
        };
        while waiting.values().filter(|w| w.owner == owner).count() >= PER_SESSION {
            let Some(id) = oldest(&waiting, true) else {
                break;
            };
            waiting.remove(&id);
        }
        while waiting.len() >= AT_MOST {
            let Some(id) = oldest(&waiting, false) else {
                break;
            };
            waiting.remove(&id);
        }
        waiting.insert(
            id.clone(),
            Waiting {
                owner,
                since: now,
                call,
                shown: Box::new(shown),
            },
        );
        format!("{STREAM_PATH}/{id}")
    }

    fn claim(&self, session: &Session, id: &str) -> Option<Waiting> {
        let mut waiting = self.waiting.lock();
        let fresh = waiting
            .get(id)
            .is_some_and(|w| w.owner == owner(session) && w.since.elapsed() < UNCLAIMED);
        fresh.then(|| waiting.remove(id)).flatten()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiting.lock().len()
    }
}

pub const STREAM_PATH: &str = "/running";

pub(super) fn routes() -> Router<Arc<UiState>> {
    Router::new().route(&format!("{STREAM_PATH}/{{id}}"), get(follow))
}

async fn follow(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    // Taken before the claim: a refused browser may follow the call once
    // it has closed another stream.
    let slot = match StreamSlot::take(&ui, &session) {
        Ok(slot) => slot,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(waiting) = ui.running.claim(&session, &id) else {
        // Gone or never ours: an `end` that says so, so the page stops
        // waiting instead of reconnecting.
        let body = event("end", &crate::pages::alert(TEXT.ask.stream_gone));
        return sse(Body::from(body));
    };
    let stop = ui.stop.clone();
    let stream = futures_util::stream::unfold(Some((waiting, slot)), move |state| {
        let stop = stop.clone();
        async move {
            let (mut w, slot) = state?;
            loop {
                let item = tokio::select! {
                    () = stop.cancelled() => return None,
                    item = w.call.next() => item,
                };
                let text = match item {
                    Some(Item::Frame(frame)) => match w.shown.frame(&frame) {
                        Some((name, html)) => event(name, &html),
                        None => continue,
                    },
                    Some(Item::Done(value)) => {
                        let html = w.shown.end(Ok(value));
                        return Some((
                            Ok::<_, std::convert::Infallible>(event("end", &html)),
                            None,
                        ));
                    }
                    Some(Item::Failed(e)) => {
                        let html = w.shown.end(Err(e));
                        return Some((Ok(event("end", &html)), None));
                    }
                    None => {
                        let html = w.shown.end(Err(CallError::new(
                            hearthnet_base::ErrorCode::InternalError,
                            "the call ended without an answer",
                        )));
                        return Some((Ok(event("end", &html)), None));
                    }
                };
                return Some((Ok(text), Some((w, slot))));
            }
        }
    });
    sse(Body::from_stream(stream))
}

fn sse(body: Body) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_a_data_line_and_blank_lines_survive() {
        assert_eq!(
            event("token", "<span>a\n\nb</span>"),
            "event: token\ndata: <span>a\ndata: \ndata: b</span>\n\n"
        );
    }
}
