//! Live updates: `GET /events`, a stream of server-sent events that htmx's
//! SSE extension swaps into the page. It sends the banner (`banner`) and
//! the emergency details (`emergency`) at once and again whenever the
//! emergency detector's status or the bus's offers change, so a page shows
//! the node's state without reloading.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use tokio::sync::broadcast;

use crate::UiState;
use crate::pages::{self, Banner, BannerFragment, EmergencyFragment, EmergencyView};
use crate::text::TEXT;

/// A comment sent when nothing changed for this long, so a connection
/// whose browser has gone is noticed by a failing write.
const KEEPALIVE: Duration = Duration::from_secs(25);

pub(crate) fn routes() -> Router<Arc<UiState>> {
    Router::new().route("/events", get(events))
}

/// One SSE event: every line of `html` as a `data:` line (the browser
/// joins them with newlines).
fn event(name: &str, html: &str) -> String {
    let mut out = format!("event: {name}\n");
    for line in html.lines() {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// The fragments of the node's state now, as SSE events.
async fn fragments(ui: &UiState) -> Option<String> {
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
    let emergency = EmergencyFragment {
        t: &TEXT,
        e: EmergencyView::of(&status, ui.bus.withdrawn_names()),
    }
    .render()
    .ok()?;
    Some(event("banner", &banner) + &event("emergency", &emergency))
}

struct Follow {
    ui: Arc<UiState>,
    emergency: Option<tokio::sync::watch::Receiver<hearthnet_emergency::Status>>,
    registry: broadcast::Receiver<hearthnet_bus::RegistryEvent>,
    first: bool,
}

impl Follow {
    /// Wait until something shown may have changed; `false` once the node
    /// stops.
    async fn changed(&mut self) -> Option<bool> {
        let emergency = async {
            match self.emergency.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = self.ui.stop.cancelled() => None,
            alive = emergency => alive.then_some(true),
            r = self.registry.recv() => match r {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Some(true),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            () = tokio::time::sleep(KEEPALIVE) => Some(false),
        }
    }
}

async fn events(State(ui): State<Arc<UiState>>) -> Response {
    let follow = Follow {
        emergency: ui.emergency.clone(),
        registry: ui.bus.changes(),
        ui,
        first: true,
    };
    let stream = futures_util::stream::unfold(follow, |mut f| async move {
        let update = if std::mem::take(&mut f.first) {
            true
        } else {
            f.changed().await?
        };
        let text = match update {
            true => fragments(&f.ui).await.unwrap_or_default(),
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
    fn every_line_of_a_fragment_is_a_data_line() {
        assert_eq!(
            event("banner", "<p>a</p>\n<p>b</p>"),
            "event: banner\ndata: <p>a</p>\ndata: <p>b</p>\n\n"
        );
    }
}
