//! Who may use the UI (SECURITY.md, "The web UI"). Being local is not a
//! login: any local user and any web page the owner's browser opens can
//! reach the UI's port. So:
//!
//! - a **one-time login link** (a random 256-bit token, valid for
//!   [`LOGIN_TOKEN_LIFETIME`], used once), printed by `hearthnet run` and
//!   `hearthnet ui link`, whose holder can read the node's key anyway,
//!   becomes a **session**: a random 256-bit cookie (`HttpOnly`,
//!   `SameSite=Strict`, `Path=/`) kept in memory with its expiry, never on
//!   disk;
//! - the **`Host`** must name loopback and the UI's port, checked before
//!   anything else (DNS rebinding);
//! - every request but the login needs the session;
//! - a request other than GET and HEAD needs a same-origin `Origin` (or,
//!   without one, `Sec-Fetch-Site: same-origin`) and the session's CSRF
//!   token (header `X-HearthNet-CSRF`, or a `csrf` form field), and its
//!   body is read here, bounded, before any handler sees it;
//! - every answer carries strict security headers.
//!
//! Pairing a phone from the LAN goes here later: a setting that binds a
//! LAN listener with TLS, its own pairing code in place of the login
//! link, and that address in the allow-lists. Until then the UI answers
//! only requests addressed to loopback.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hearthnet_transport::LocalApi;
use hearthnet_transport::http::{names_loopback, read_bytes};
use parking_lot::Mutex;
use rand_core::{OsRng, RngCore};

use crate::UiState;
use crate::text::TEXT;

/// How long a login link may be used.
pub const LOGIN_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How long a session lasts from its login; then a new link is needed.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Unused login links kept at once: asking for more drops the oldest.
const MAX_LOGIN_TOKENS: usize = 16;
/// Sessions kept at once: a new one beyond ends the oldest.
const MAX_SESSIONS: usize = 32;

pub const SESSION_COOKIE: &str = "hearthnet_session";
pub const CSRF_HEADER: &str = "x-hearthnet-csrf";
pub const CSRF_FIELD: &str = "csrf";

/// Secrets are kept by their BLAKE3 digest: what is looked up is not the
/// secret, so neither a map's comparisons nor a memory dump reveal one.
type Digest = [u8; 32];

fn digest(secret: &str) -> Digest {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// 256 random bits, as unpadded Base64url (43 characters).
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    data_encoding::BASE64URL_NOPAD.encode(&bytes)
}

/// The logged-in browser a request came from; the gate puts it in the
/// request's extensions for the handlers.
#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    id: Digest,
}

struct Kept {
    csrf: String,
    expires: Instant,
}

/// The login tokens and sessions, in memory only: a restart logs every
/// browser out, which is the safe side.
#[derive(Default)]
pub struct Access {
    tokens: Mutex<HashMap<Digest, Instant>>,
    sessions: Mutex<HashMap<Digest, Kept>>,
}

impl Access {
    /// A fresh one-time login token.
    pub fn issue_login_token(&self) -> String {
        let token = random_secret();
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, expires| *expires > now);
        while tokens.len() >= MAX_LOGIN_TOKENS {
            let Some(oldest) = tokens.iter().min_by_key(|(_, e)| **e).map(|(d, _)| *d) else {
                break;
            };
            tokens.remove(&oldest);
        }
        tokens.insert(digest(&token), now + LOGIN_TOKEN_LIFETIME);
        token
    }

    /// Spend `token`: a new session's cookie value if it was issued, unused
    /// and not expired. Spent whatever the outcome, so it never works twice.
    pub fn redeem(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let expires = self.tokens.lock().remove(&digest(token))?;
        if expires <= now {
            return None;
        }
        let cookie = random_secret();
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| s.expires > now);
        while sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(d, _)| *d)
            else {
                break;
            };
            sessions.remove(&oldest);
        }
        sessions.insert(
            digest(&cookie),
            Kept {
                csrf: random_secret(),
                expires: now + SESSION_LIFETIME,
            },
        );
        Some(cookie)
    }

    /// The live session whose cookie value is `cookie`.
    pub fn session(&self, cookie: &str) -> Option<Session> {
        let id = digest(cookie);
        let mut sessions = self.sessions.lock();
        match sessions.get(&id) {
            Some(kept) if kept.expires > Instant::now() => Some(Session {
                csrf: kept.csrf.clone(),
                id,
            }),
            Some(_) => {
                sessions.remove(&id);
                None
            }
            None => None,
        }
    }

    /// Log `session` out.
    pub fn end(&self, session: &Session) {
        self.sessions.lock().remove(&session.id);
    }
}

/// The `Set-Cookie` of a new session.
pub fn session_cookie(value: &str) -> String {
    format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` that makes the browser forget its session.
pub fn cleared_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// The session cookie's value among the request's cookies.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Whether two secrets are equal, in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    digest(a) == digest(b)
}

/// Why the gate refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Host,
    NoSession,
    CrossOrigin,
    Csrf,
    BodyTooLarge,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Self::NoSession => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Host | Self::CrossOrigin | Self::Csrf => StatusCode::FORBIDDEN,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Host => TEXT.refused_host,
            Self::NoSession => TEXT.refused_no_session,
            Self::CrossOrigin => TEXT.refused_cross_origin,
            Self::Csrf => TEXT.refused_csrf,
            Self::BodyTooLarge => TEXT.refused_body,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        crate::pages::plain_page(self.status(), TEXT.refused_title, self.message())
    }
}

/// Every request passes here before its route (see the module's doc); every
/// answer, refusals included, leaves with the security headers.
pub(crate) async fn gate(State(ui): State<Arc<UiState>>, req: Request, next: Next) -> Response {
    let mut resp = match admit(&ui, req).await {
        Ok(req) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    };
    secure(resp.headers_mut());
    resp
}

async fn admit(ui: &UiState, req: Request) -> Result<Request, Refusal> {
    // No port known (the router served by something else): refuse all.
    let port = req
        .extensions()
        .get::<LocalApi>()
        .map(|l| l.port)
        .ok_or(Refusal::Host)?;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| names_loopback(h, port))
        .ok_or(Refusal::Host)?
        .to_owned();
    if req.uri().path() == crate::pages::LOGIN_PATH && req.method() == Method::GET {
        return Ok(req);
    }
    let session = cookie_value(req.headers())
        .and_then(|c| ui.access.session(c))
        .ok_or(Refusal::NoSession)?;
    let mut req = if matches!(*req.method(), Method::GET | Method::HEAD) {
        req
    } else {
        same_origin(req.headers(), &host)?;
        if crate::pages::UPLOAD_PATHS.contains(&req.uri().path()) {
            checked_upload(req, &session.csrf)?
        } else {
            checked_body(ui, req, &session.csrf).await?
        }
    };
    req.extensions_mut().insert(session);
    Ok(req)
}

/// `Origin` must be exactly this UI's origin as the browser addressed it;
/// a browser that sends none (some do not on same-origin POSTs) must say
/// `Sec-Fetch-Site: same-origin`. Anything else is another site's page.
fn same_origin(headers: &HeaderMap, host: &str) -> Result<(), Refusal> {
    match headers.get(header::ORIGIN) {
        Some(origin) => {
            let ours = format!("http://{host}");
            (origin.as_bytes() == ours.as_bytes())
                .then_some(())
                .ok_or(Refusal::CrossOrigin)
        }
        None => (headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"same-origin"))
        .then_some(())
        .ok_or(Refusal::CrossOrigin),
    }
}

/// Read the body within [`crate::MAX_BODY_BYTES`] and the UI's budget,
/// check the CSRF token (header, else the form's `csrf` field), and hand
/// the request on with the bytes read.
async fn checked_body(ui: &UiState, req: Request, csrf: &str) -> Result<Request, Refusal> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > crate::MAX_BODY_BYTES as u64) {
        return Err(Refusal::BodyTooLarge);
    }
    let mut reservation = ui
        .budget
        .reserve(declared.map_or(0, |n| n as usize))
        .map_err(|_| Refusal::BodyTooLarge)?;
    let bytes = read_bytes(body, crate::MAX_BODY_BYTES, &mut reservation)
        .await
        .map_err(|_| Refusal::BodyTooLarge)?;
    let presented = match parts.headers.get(CSRF_HEADER) {
        Some(v) => v.to_str().ok().map(str::to_owned),
        None => form_urlencoded::parse(&bytes)
            .find(|(name, _)| name == CSRF_FIELD)
            .map(|(_, value)| value.into_owned()),
    };
    if !presented.is_some_and(|p| same_secret(&p, csrf)) {
        return Err(Refusal::Csrf);
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// An upload's body is a file, up to [`crate::pages::MAX_UPLOAD_BYTES`]:
/// too much to hold in memory, so it is handed on unread for its handler
/// to write to disk as it arrives, bounded there too (a body without a
/// length, or one longer than it said, is cut off at the bound). The
/// CSRF token must be in the header, since the body is not read here; a
/// declared length over the bound is refused before a byte is read.
fn checked_upload(req: Request, csrf: &str) -> Result<Request, Refusal> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > crate::pages::MAX_UPLOAD_BYTES) {
        return Err(Refusal::BodyTooLarge);
    }
    let presented = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !presented.is_some_and(|p| same_secret(p, csrf)) {
        return Err(Refusal::Csrf);
    }
    Ok(req)
}

/// The headers every answer carries: scripts and styles from this origin
/// only (no inline script, no eval), no framing, no sniffing, no referrer
/// (a login link in a URL must not travel on), and nothing stored unless
/// the route said how to cache it.
fn secure(h: &mut HeaderMap) {
    const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
        img-src 'self' data:; connect-src 'self'; form-action 'self'; \
        frame-ancestors 'none'; base-uri 'none'; object-src 'none'";
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in fixed {
        h.insert(name, HeaderValue::from_static(value));
    }
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_token_opens_one_session_once() {
        let access = Access::default();
        let token = access.issue_login_token();
        assert_eq!(token.len(), 43, "256 bits in Base64url");
        let cookie = access.redeem(&token).unwrap();
        assert!(access.redeem(&token).is_none(), "a token works once");
        let session = access.session(&cookie).unwrap();
        assert_eq!(session.csrf.len(), 43);
        assert!(access.session("forged").is_none());
        access.end(&session);
        assert!(access.session(&cookie).is_none(), "logged out");
    }

    #[test]
    fn an_expired_token_is_refused_and_spent() {
        let access = Access::default();
        let token = access.issue_login_token();
        *access.tokens.lock().get_mut(&digest(&token)).unwrap() = Instant::now();
        assert!(access.redeem(&token).is_none());
        assert!(access.tokens.lock().is_empty());
    }

    #[test]
    fn tokens_and_sessions_are_bounded() {
        let access = Access::default();
        let tokens: Vec<String> = (0..MAX_LOGIN_TOKENS + 3)
            .map(|_| access.issue_login_token())
            .collect();
        assert_eq!(access.tokens.lock().len(), MAX_LOGIN_TOKENS);
        for token in &tokens[3..] {
            assert!(access.redeem(token).is_some());
        }
        for _ in 0..MAX_SESSIONS {
            let t = access.issue_login_token();
            access.redeem(&t).unwrap();
        }
        assert_eq!(access.sessions.lock().len(), MAX_SESSIONS);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("x=y;hearthnet_session=abc; z=1"),
        );
        assert_eq!(cookie_value(&h), Some("abc"));
        assert_eq!(cookie_value(&HeaderMap::new()), None);
    }

    #[test]
    fn only_our_origin_or_a_same_origin_fetch_may_change_state() {
        let host = "127.0.0.1:7860";
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            same_origin(&h, host)
        };
        assert_eq!(with("origin", "http://127.0.0.1:7860"), Ok(()));
        assert_eq!(
            with("origin", "http://evil.example"),
            Err(Refusal::CrossOrigin)
        );
        assert_eq!(
            with("origin", "http://127.0.0.1:8000"),
            Err(Refusal::CrossOrigin),
            "another local port is another origin"
        );
        assert_eq!(with("origin", "null"), Err(Refusal::CrossOrigin));
        assert_eq!(with("sec-fetch-site", "same-origin"), Ok(()));
        assert_eq!(
            with("sec-fetch-site", "same-site"),
            Err(Refusal::CrossOrigin)
        );
        assert_eq!(
            same_origin(&HeaderMap::new(), host),
            Err(Refusal::CrossOrigin)
        );
    }
}
