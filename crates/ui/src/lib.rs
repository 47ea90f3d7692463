//! M08: the web UI that `hearthnet run` serves on loopback (default
//! 127.0.0.1:7860), so a household can use its node from a browser.
//!
//! Owns the UI's router and everything a browser meets: who is let in
//! ([`access`]: one-time login links, sessions, the `Host` allow-list,
//! same-origin and CSRF checks on every state-changing request, bounded
//! bodies, strict security headers), the pages (`pages`, server-rendered
//! askama templates checked at compile time, their English text in one
//! table, [`text`]), the live updates (`live`, server-sent events) and the
//! embedded assets (`assets`: one CSS file, htmx and its SSE extension).
//!
//! It is served by `hearthnet_transport::serve` like the local API and
//! reuses the transport's typed layer (`http::names_loopback`, bounded
//! body reads within a [`BodyBudget`], its `Query` extractor). Pages read
//! the node through its [`NodeView`] and call capabilities through its
//! bus in-process, as the node's own key: the browser never holds a key
//! and never signs anything.
//!
//! A device that has a key but no community yet gets [`Joining`] instead:
//! the join page alone, behind the same gate, whose login and session
//! the full UI takes over once the device has joined.
//!
//! Architecture invariant: nothing reaches a handler before the gate
//! (`access::gate`) has checked `Host`, the session and, for anything but
//! GET and HEAD, `Origin` and the CSRF token; the login link is the one
//! route open without a session.

pub mod access;
mod assets;
mod calls;
mod joining;
mod live;
mod pages;
mod picture;
pub mod text;

pub use joining::{Joining, JoiningParts, Redeemer};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use hearthnet_bus::Bus;
use hearthnet_identity::ApiKeyFile;
use hearthnet_transport::NodeView;
use hearthnet_transport::http::BodyBudget;
use hearthnet_wire::local::{UiLink, UiPairing};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::access::{Access, Guarded};

/// The largest request body the UI reads (a form): anything larger is
/// refused before a byte of it is buffered.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// What all the UI's bodies in flight may hold together.
const BODY_BUDGET_BYTES: usize = 1024 * 1024;
/// What the pairing form's bodies may hold together: 64 of them at once.
const PAIRING_BUDGET_BYTES: usize = 64 * access::MAX_PAIR_BODY_BYTES;

/// What the node hands the UI.
pub struct Parts {
    pub bus: Arc<Bus>,
    pub view: Arc<dyn NodeView>,
    /// The emergency detector's status, when it runs: the banner follows it.
    pub emergency: Option<watch::Receiver<hearthnet_emergency::Status>>,
    /// The event log's change signal (`EventLog::changes`): posts,
    /// messages and membership shown live follow it.
    pub log: Option<watch::Receiver<i64>>,
    /// Where the UI's listener is bound.
    pub addr: SocketAddr,
    /// The node's stop: live streams end with it, so shutdown does not
    /// wait for open browser tabs.
    pub stop: CancellationToken,
    /// The OpenAI-compatible gateway's key file, which Settings creates
    /// or rotates; `None` hides that part.
    pub api_key: Option<ApiKeyFile>,
    /// The LAN listener for paired devices, when `ui.lan_enabled`.
    pub lan: Option<Lan>,
    /// The logins and sessions of the join page this device was served
    /// until it joined ([`Joining::access`]): the browser that joined
    /// stays logged in. `None`: none yet.
    pub access: Option<Arc<Access>>,
}

/// The UI's listener on the LAN (HTTPS), for the pairing codes to name.
#[derive(Debug, Clone)]
pub struct Lan {
    pub port: u16,
    /// `https://ADDRESS:PORT` for each address of this machine it is
    /// reachable at.
    pub origins: Vec<String>,
    /// Of the UI's certificate, as browsers show it.
    pub certificate_sha256: String,
}

/// The web UI of one node: its state, shared by the router and by the
/// local API's `/local/v1/ui/link`.
#[derive(Clone)]
pub struct Ui {
    state: Arc<UiState>,
}

pub(crate) struct UiState {
    pub bus: Arc<Bus>,
    pub view: Arc<dyn NodeView>,
    pub emergency: Option<watch::Receiver<hearthnet_emergency::Status>>,
    pub log: Option<watch::Receiver<i64>>,
    pub access: Arc<Access>,
    /// Calls the pages started that the browser follows as they run.
    pub running: pages::Running,
    pub budget: Arc<BodyBudget>,
    /// What the open pairing form's bodies in flight may hold together.
    pub pairing_budget: Arc<BodyBudget>,
    /// One picture of a QR code at a time ([`picture`]).
    pub(crate) pictures: Arc<BodyBudget>,
    pub stop: CancellationToken,
    pub lan: Option<Lan>,
    pub api_key: Option<ApiKeyFile>,
    /// `http://host:port` of the login links.
    pub origin: String,
}

impl Ui {
    pub fn new(parts: Parts) -> Self {
        Self {
            state: Arc::new(UiState {
                bus: parts.bus,
                view: parts.view,
                emergency: parts.emergency,
                log: parts.log,
                access: parts.access.unwrap_or_default(),
                running: pages::Running::default(),
                budget: BodyBudget::new(BODY_BUDGET_BYTES, 0),
                pairing_budget: BodyBudget::new(PAIRING_BUDGET_BYTES, 0),
                pictures: picture::budget(),
                stop: parts.stop,
                lan: parts.lan,
                api_key: parts.api_key,
                origin: origin(parts.addr),
            }),
        }
    }

    /// The router, gate included; serve it with
    /// `hearthnet_transport::Serving::local()`, whose `LocalApi` mark
    /// gives the gate the port the `Host` must name.
    pub fn router(&self) -> Router {
        pages::routes()
            .merge(assets::routes())
            .merge(live::routes())
            .layer(axum::middleware::from_fn_with_state(
                self.state.clone(),
                access::gate,
            ))
            .with_state(self.state.clone())
    }

    /// The router of the LAN listener (serve it with TLS): the same pages
    /// behind the same gate, each request marked [`access::OnLan`] so the
    /// gate applies the LAN's rules. `None` without a LAN listener.
    pub fn lan_router(&self) -> Option<Router> {
        let port = self.state.lan.as_ref()?.port;
        let mark = move |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
            req.extensions_mut().insert(access::OnLan { port });
            next.run(req).await
        };
        Some(self.router().layer(axum::middleware::from_fn(mark)))
    }

    /// A fresh pairing code for a device on the LAN, with where it goes;
    /// `None` without a LAN listener.
    pub fn pairing(&self) -> Option<UiPairing> {
        self.state.pairing()
    }

    /// A fresh one-time login link.
    pub fn login_link(&self) -> UiLink {
        login_link(&self.state.access, &self.state.origin)
    }
}

/// A fresh one-time login link to the UI at `origin`.
fn login_link(access: &Access, origin: &str) -> UiLink {
    UiLink {
        url: format!("{origin}/login?token={}", access.issue_login_token()),
        expires_in_seconds: access::LOGIN_TOKEN_LIFETIME.as_secs(),
    }
}

impl Guarded for UiState {
    fn access(&self) -> &Access {
        &self.access
    }

    fn budget(&self) -> &Arc<BodyBudget> {
        &self.budget
    }

    fn pairing_budget(&self) -> &Arc<BodyBudget> {
        &self.pairing_budget
    }

    fn upload_limit(&self, path: &str) -> Option<u64> {
        if path == pages::CARD_SCAN_PATH {
            return Some(hearthnet_onboarding::qr::MAX_PICTURE_BYTES as u64);
        }
        pages::UPLOAD_PATHS
            .contains(&path)
            .then_some(pages::MAX_UPLOAD_BYTES)
    }
}

impl UiState {
    pub(crate) fn pairing(&self) -> Option<UiPairing> {
        let lan = self.lan.as_ref()?;
        Some(UiPairing {
            code: self.access.issue_pairing_code(),
            urls: lan
                .origins
                .iter()
                .map(|o| format!("{o}{}", pages::PAIR_PATH))
                .collect(),
            certificate_sha256: lan.certificate_sha256.clone(),
            expires_in_seconds: access::PAIRING_CODE_LIFETIME.as_secs(),
        })
    }
}

impl hearthnet_transport::UiLinks for Ui {
    fn login_link(&self) -> UiLink {
        Ui::login_link(self)
    }

    fn pairing(&self) -> Option<UiPairing> {
        Ui::pairing(self)
    }
}

/// The origin the links name: the bound loopback address, or 127.0.0.1
/// when the UI listens on every address or on a LAN address, which the
/// `Host` allow-list refuses until pairing from the LAN exists.
fn origin(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_loopback() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests;
