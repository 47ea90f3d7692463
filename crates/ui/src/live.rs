//! Live updates: `GET /events?page=NAME`, a stream of server-sent events
//! that htmx's SSE extension swaps into the page. It sends the banner
//! (`banner`) and the fragments of the page that opened it
//! ([`page_fragments`]) at once and again whenever something they show may
//! have changed: the emergency detector's status, the bus's offers (a
//! neighbour came or went), the event log (a post, a message), and on the
//! pages that show calls ([`shows_calls`]) a call. Bursts are coalesced:
//! one update per [`COALESCE`] at most.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hearthnet_transport::http::{ApiError, Query};
use hearthnet_wire::local::Status;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use crate::UiState;
use crate::access::{Session, StreamSlot};
use crate::pages::{
    self, Banner, BannerFragment, EmergencyFragment, EmergencyView, MembersFragment, Neighbourhood,
    NeighbourhoodFragment, Page,
};
use crate::text::TEXT;

/// A comment sent when nothing changed for this long, so a connection
/// whose browser has gone is noticed by a failing write.
const KEEPALIVE: Duration = Duration::from_secs(25);
/// After a change, wait this long for more before rendering: a sync that
/// brings a thousand events costs one update, not a thousand.
const COALESCE: Duration = Duration::from_millis(200);

pub(crate) fn routes() -> Router<Arc<UiState>> {
    Router::new().route("/events", get(events))
}

#[derive(Deserialize)]
struct Which {
    page: Option<String>,
}

/// One SSE event: every line of `html` as a `data:` line (the browser
/// joins them with newlines). A line ends at CR as well as LF, as the
/// browser reads it: a lone CR in a member's text must not end the
/// `data:` line and start a field of its own (`event:`, `id:`).
pub(crate) fn event(name: &str, html: &str) -> String {
    let mut out = format!("event: {name}\n");
    for line in html.split(['\r', '\n']) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The fragments `page` shows live besides the banner, as `(SSE event
/// name, HTML)`: each is swapped into the element of the page whose
/// `sse-swap` names it.
async fn page_fragments(
    ui: &UiState,
    page: Page,
    status: &Status,
) -> Result<Vec<(&'static str, String)>, askama::Error> {
    Ok(match page {
        Page::Home => vec![(
            "home",
            NeighbourhoodFragment {
                t: &TEXT,
                n: Neighbourhood::of(ui, status),
            }
            .render()?,
        )],
        Page::Market => vec![("market", pages::market_fragment(ui, status).await?)],
        Page::Messages => vec![("messages", pages::conversations_fragment(ui, status).await?)],
        // What they show changes by the person's own actions, which
        // update it themselves.
        Page::Ask | Page::Files => Vec::new(),
        Page::Emergency => vec![(
            "emergency",
            EmergencyFragment {
                t: &TEXT,
                e: EmergencyView::of(status, ui.bus.withdrawn_names()),
            }
            .render()?,
        )],
        Page::Settings => vec![(
            "settings-members",
            MembersFragment {
                t: &TEXT,
                m: pages::Members::of(ui, status),
            }
            .render()?,
        )],
        Page::Join => Vec::new(),
    })
}

/// The banner and `page`'s fragments now, as SSE events.
async fn fragments(ui: &UiState, page: Option<Page>) -> Option<String> {
    let status = match pages::status(ui).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no live update: the status failed");
            return None;
        }
    };
    let banner = BannerFragment {
        t: &TEXT,
        banner: Banner::of(&status),
    }
    .render()
    .ok()?;
    let mut out = event("banner", &banner);
    if let Some(page) = page {
        match page_fragments(ui, page, &status).await {
            Ok(parts) => {
                for (name, html) in parts {
                    out.push_str(&event(name, &html));
                }
            }
            Err(e) => tracing::warn!(error = %e, ?page, "no live update of the page"),
        }
    }
    Some(out)
}

struct Follow {
    ui: Arc<UiState>,
    page: Option<Page>,
    emergency: Option<watch::Receiver<hearthnet_emergency::Status>>,
    log: Option<watch::Receiver<i64>>,
    calls: Option<watch::Receiver<u64>>,
    registry: broadcast::Receiver<hearthnet_bus::RegistryEvent>,
    first: bool,
    _slot: StreamSlot,
}

/// Whether `page` shows the recent calls: only its stream follows them,
/// since a busy node records many a second.
fn shows_calls(page: Option<Page>) -> bool {
    page == Some(Page::Home)
}

impl Follow {
    /// Wait until something shown may have changed; `false` once the node
    /// stops.
    async fn changed(&mut self) -> Option<bool> {
        let changed = tokio::select! {
            () = self.ui.stop.cancelled() => None,
            alive = changed(self.emergency.as_mut()) => alive.then_some(true),
            alive = changed(self.log.as_mut()) => alive.then_some(true),
            alive = changed(self.calls.as_mut()) => alive.then_some(true),
            r = self.registry.recv() => match r {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Some(true),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            () = tokio::time::sleep(KEEPALIVE) => Some(false),
        };
        if changed == Some(true) {
            tokio::select! {
                () = self.ui.stop.cancelled() => return None,
                () = tokio::time::sleep(COALESCE) => {}
            }
            // What changed meanwhile is in the update about to be rendered.
            if let Some(rx) = self.log.as_mut() {
                rx.borrow_and_update();
            }
            if let Some(rx) = self.calls.as_mut() {
                rx.borrow_and_update();
            }
            if let Some(rx) = self.emergency.as_mut() {
                rx.borrow_and_update();
            }
            while self.registry.try_recv().is_ok() {}
        }
        changed
    }
}

/// Whether `rx` changed (false once its sender is gone); never, without
/// one.
async fn changed<T>(rx: Option<&mut watch::Receiver<T>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn events(
    State(ui): State<Arc<UiState>>,
    Extension(session): Extension<Session>,
    which: Result<Query<Which>, ApiError>,
) -> Response {
    let slot = match StreamSlot::take(&ui, &session) {
        Ok(slot) => slot,
        Err(refusal) => return refusal.into_response(),
    };
    let page = which
        .ok()
        .and_then(|Query(w)| w.page)
        .and_then(|name| Page::by_live_name(&name));
    let follow = Follow {
        page,
        emergency: ui.emergency.clone(),
        log: ui.log.clone(),
        calls: shows_calls(page).then(|| ui.bus.calls()),
        registry: ui.bus.changes(),
        ui,
        first: true,
        _slot: slot,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let update = if std::mem::take(&mut f.first) {
            true
        } else {
            f.changed().await?
        };
        let text = match update {
            true => fragments(&f.ui, f.page).await.unwrap_or_default(),
            false => String::new(),
        };
        // An empty update is a keepalive comment.
        let text = if text.is_empty() {
            ": \n\n".to_owned()
        } else {
            text
        };
        Some((Ok::<_, std::convert::Infallible>(text), f))
    });
    let mut resp = Response::new(Body::from_stream(stream));
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
    fn a_carriage_return_cannot_start_a_field_of_its_own() {
        let forged = event("messages", "hi\r\revent: banner\rdata: fake");
        let fields: Vec<&str> = forged
            .split(['\r', '\n'])
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(
            fields,
            [
                "event: messages",
                "data: hi",
                "data: ",
                "data: event: banner",
                "data: data: fake"
            ]
        );
    }

    #[test]
    fn every_line_of_a_fragment_is_a_data_line() {
        assert_eq!(
            event("banner", "<p>a</p>\n<p>b</p>"),
            "event: banner\ndata: <p>a</p>\ndata: <p>b</p>\n\n"
        );
    }
}
