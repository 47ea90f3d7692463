//! The embedded assets: our stylesheet and script (`page.js`) and the
//! vendored htmx with its SSE extension (`assets/README.md` names their versions). Served
//! behind the session like every page.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub const CSS: &str = include_str!("../assets/app.css");
pub const HTMX: &[u8] = include_bytes!("../assets/htmx.min.js");
pub const HTMX_SSE: &[u8] = include_bytes!("../assets/sse.min.js");
pub const PAGE: &[u8] = include_bytes!("../assets/page.js");

/// The routes of the assets, for the full UI and the join page alike.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", CSS.as_bytes()) }),
        )
        .route(
            "/assets/htmx.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", HTMX) }),
        )
        .route(
            "/assets/sse.min.js",
            get(|| async { asset("text/javascript; charset=utf-8", HTMX_SSE) }),
        )
        .route(
            "/assets/page.js",
            get(|| async { asset("text/javascript; charset=utf-8", PAGE) }),
        )
}

/// They change only with the binary: an hour in the browser's private
/// cache spares reloading them on every page.
fn asset(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    resp
}
