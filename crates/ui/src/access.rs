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
//! Another device of the household (a phone) comes in over the LAN only
//! when `ui.lan_enabled` says so, through a listener of its own: HTTPS with
//! the UI's certificate, marked [`OnLan`]. There the `Host` must be an IP
//! address or a `.local` name with that port (a rebinding attacker's name
//! is neither), the login link does not work, and a **pairing code** (from
//! `hearthnet ui pair`, typed on the device, used once, ten minutes, and
//! every outstanding code void after [`MAX_PAIRING_FAILURES`] wrong ones)
//! opens a session whose cookie is also `Secure`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hearthnet_transport::LocalApi;
use hearthnet_transport::http::{BodyBudget, names_loopback, read_bytes};
use parking_lot::Mutex;
use rand_core::{OsRng, RngCore};

use crate::UiState;
use crate::text::TEXT;

/// What the gate guards: the full UI ([`crate::UiState`]) and the join
/// page of a device that is not a member yet ([`crate::joining`]), one
/// gate for both.
pub(crate) trait Guarded: Send + Sync + 'static {
    fn access(&self) -> &Access;
    /// What the session's form bodies in flight may hold together.
    fn budget(&self) -> &Arc<BodyBudget>;
    /// What the open pairing form's bodies in flight may hold together.
    fn pairing_budget(&self) -> &Arc<BodyBudget>;
    /// For a route whose body its handler reads as it arrives (an
    /// upload), the most that body may hold; `None` for a form, which
    /// the gate reads within [`crate::MAX_BODY_BYTES`].
    fn upload_limit(&self, path: &str) -> Option<u64>;
}

/// How long a login link may be used.
pub const LOGIN_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How long a session lasts from its login; then a new link is needed.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Unused login links kept at once: asking for more drops the oldest.
const MAX_LOGIN_TOKENS: usize = 16;
/// Sessions kept at once: a new one beyond ends the oldest.
const MAX_SESSIONS: usize = 32;
/// Live streams one session may hold open at once (each tab's `/events`
/// and the calls it follows as they run): many tabs are fine, a script
/// opening streams in a loop does not hold the node's tasks and memory.
pub const MAX_STREAMS_PER_SESSION: usize = 8;

/// How long a pairing code may be used.
pub const PAIRING_CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Wrong pairing codes tried since the last code was issued before every
/// outstanding code is void: ten guesses at a 50-bit code.
pub const MAX_PAIRING_FAILURES: u32 = 10;
/// Unused pairing codes kept at once.
const MAX_PAIRING_CODES: usize = 4;
/// The pairing code's letters: Crockford's base 32, no I, L, O or U, so
/// what is read aloud or off a screen is typed right.
const PAIRING_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

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

/// The login tokens, pairing codes and sessions, in memory only: a
/// restart logs every browser out, which is the safe side.
#[derive(Default)]
pub struct Access {
    tokens: Mutex<HashMap<Digest, Instant>>,
    pairing: Mutex<Pairing>,
    sessions: Mutex<HashMap<Digest, Kept>>,
    /// Open live streams per session.
    streams: Mutex<HashMap<Digest, usize>>,
}

#[derive(Default)]
struct Pairing {
    codes: HashMap<Digest, Instant>,
    failures: u32,
}

/// A pairing code as kept: upper case, no separators, the letters a
/// person may confuse read as the digits they look like.
fn normalised_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect()
}

/// Keep at most `most - 1` unexpired entries of `map`, dropping the
/// oldest, so one more fits.
fn make_room<V>(
    map: &mut HashMap<Digest, V>,
    most: usize,
    now: Instant,
    expiry: impl Fn(&V) -> Instant,
) {
    map.retain(|_, v| expiry(v) > now);
    while map.len() >= most {
        let Some(oldest) = map.iter().min_by_key(|(_, v)| expiry(v)).map(|(d, _)| *d) else {
            break;
        };
        map.remove(&oldest);
    }
}

impl Access {
    /// A fresh one-time login token.
    pub fn issue_login_token(&self) -> String {
        let token = random_secret();
        let now = Instant::now();
        let mut tokens = self.tokens.lock();
        make_room(&mut tokens, MAX_LOGIN_TOKENS, now, |e| *e);
        tokens.insert(digest(&token), now + LOGIN_TOKEN_LIFETIME);
        token
    }

    /// A fresh pairing code, `XXXXX-XXXXX` (50 random bits); issuing one
    /// also gives the wrong guesses a fresh budget.
    pub fn issue_pairing_code(&self) -> String {
        let mut bytes = [0u8; 10];
        OsRng.fill_bytes(&mut bytes);
        let letters: String = bytes
            .iter()
            .map(|b| char::from(PAIRING_ALPHABET[usize::from(b % 32)]))
            .collect();
        let now = Instant::now();
        let mut pairing = self.pairing.lock();
        make_room(&mut pairing.codes, MAX_PAIRING_CODES, now, |e| *e);
        pairing
            .codes
            .insert(digest(&letters), now + PAIRING_CODE_LIFETIME);
        pairing.failures = 0;
        format!("{}-{}", &letters[..5], &letters[5..])
    }

    /// Spend the pairing code a person typed: a new session's cookie value
    /// if it was issued, unused and not expired. A wrong code counts
    /// against [`MAX_PAIRING_FAILURES`]; past it no code works until a
    /// new one is issued.
    pub fn pair(&self, typed: &str) -> Option<String> {
        let now = Instant::now();
        let mut pairing = self.pairing.lock();
        if pairing.failures >= MAX_PAIRING_FAILURES {
            return None;
        }
        match pairing.codes.remove(&digest(&normalised_code(typed))) {
            Some(expires) if expires > now => {
                drop(pairing);
                Some(self.open_session(now))
            }
            _ => {
                pairing.failures += 1;
                if pairing.failures >= MAX_PAIRING_FAILURES {
                    pairing.codes.clear();
                }
                None
            }
        }
    }

    /// Spend `token`: a new session's cookie value if it was issued, unused
    /// and not expired. Spent whatever the outcome, so it never works twice.
    pub fn redeem(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let expires = self.tokens.lock().remove(&digest(token))?;
        if expires <= now {
            return None;
        }
        Some(self.open_session(now))
    }

    /// A new session; its cookie value.
    fn open_session(&self, now: Instant) -> String {
        let cookie = random_secret();
        let mut sessions = self.sessions.lock();
        make_room(&mut sessions, MAX_SESSIONS, now, |s| s.expires);
        sessions.insert(
            digest(&cookie),
            Kept {
                csrf: random_secret(),
                expires: now + SESSION_LIFETIME,
            },
        );
        cookie
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

    fn close_stream(&self, session: &Digest) {
        let mut streams = self.streams.lock();
        if let Some(open) = streams.get_mut(session) {
            *open -= 1;
            if *open == 0 {
                streams.remove(session);
            }
        }
    }
}

/// One of the live streams `session` may hold open; given back when the
/// stream ends (the browser went away or the node stops).
pub(crate) struct StreamSlot {
    ui: Arc<UiState>,
    session: Digest,
}

impl StreamSlot {
    /// A slot for another stream of `session`, refused once it holds
    /// [`MAX_STREAMS_PER_SESSION`].
    pub(crate) fn take(ui: &Arc<UiState>, session: &Session) -> Result<Self, Refusal> {
        let mut streams = ui.access.streams.lock();
        let open = streams.entry(session.id).or_default();
        if *open >= MAX_STREAMS_PER_SESSION {
            return Err(Refusal::TooManyStreams);
        }
        *open += 1;
        Ok(Self {
            ui: Arc::clone(ui),
            session: session.id,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.ui.access.close_stream(&self.session);
    }
}

/// The `Set-Cookie` of a new session; `Secure` over HTTPS (the LAN).
pub fn session_cookie(value: &str, door: &Door) -> String {
    let secure = if door.lan { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
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
    TooManyStreams,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Self::NoSession => StatusCode::UNAUTHORIZED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
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
            Self::TooManyStreams => TEXT.refused_streams,
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
pub(crate) async fn gate<S: Guarded>(
    State(ui): State<Arc<S>>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = match admit(ui.as_ref(), req).await {
        Ok(req) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    };
    secure(resp.headers_mut());
    resp
}

/// Marks a request that came in on the LAN listener (port `port`); the
/// LAN router puts it on every request (`Ui::lan_router`).
#[derive(Debug, Clone, Copy)]
pub struct OnLan {
    pub port: u16,
}

/// Which door a request came in by, as its `Host` named it: the handlers
/// get it in the request's extensions.
#[derive(Debug, Clone)]
pub struct Door {
    pub host: String,
    /// The LAN listener (HTTPS, paired devices) rather than loopback.
    pub lan: bool,
}

impl Door {
    fn of(req: &Request) -> Result<Self, Refusal> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        // No mark known (the router served by something else): refuse all.
        let door = match (
            req.extensions().get::<OnLan>(),
            req.extensions().get::<LocalApi>(),
        ) {
            (Some(lan), _) => host.filter(|h| names_lan(h, lan.port)).map(|h| Self {
                host: h.to_owned(),
                lan: true,
            }),
            (None, Some(local)) => host
                .filter(|h| names_loopback(h, local.port))
                .map(|h| Self {
                    host: h.to_owned(),
                    lan: false,
                }),
            (None, None) => None,
        };
        door.ok_or(Refusal::Host)
    }

    /// `scheme://host` as the browser addressed this UI.
    pub fn origin(&self) -> String {
        let scheme = if self.lan { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }

    /// Whether `req` may go on without a session: the login link on
    /// loopback, the pairing form on the LAN.
    fn open(&self, req: &Request) -> bool {
        let path = req.uri().path();
        match self.lan {
            false => path == crate::pages::LOGIN_PATH && req.method() == Method::GET,
            true => {
                path == crate::pages::PAIR_PATH
                    && matches!(*req.method(), Method::GET | Method::POST)
            }
        }
    }
}

/// A `Host` the LAN listener answers: an IP address or a `.local` name
/// (what a phone types or mDNS resolves), with the listener's port. A DNS
/// rebinding attack names its own domain, which is neither.
fn names_lan(host: &str, port: u16) -> bool {
    let (name, given_port) = match host.rsplit_once(':') {
        Some((name, p))
            if !name.ends_with(':') && (host.starts_with('[') || !name.contains(':')) =>
        {
            (name, p.parse::<u16>().ok())
        }
        _ => (host, None),
    };
    let ip = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => name.parse::<std::net::Ipv4Addr>().is_ok(),
    };
    let local_name = name.len() <= 253
        && name.to_ascii_lowercase().ends_with(".local")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    given_port == Some(port) && (ip || local_name)
}

async fn admit(ui: &impl Guarded, mut req: Request) -> Result<Request, Refusal> {
    let door = Door::of(&req)?;
    if door.open(&req) {
        if req.method() == Method::POST {
            // No session yet, so no CSRF token: the origin check alone
            // keeps another site from pairing a browser to this node.
            same_origin(req.headers(), &door)?;
            req = bounded_body(ui, req, Reader::Pairing).await?.0;
        }
        req.extensions_mut().insert(door);
        return Ok(req);
    }
    let session = cookie_value(req.headers())
        .and_then(|c| ui.access().session(c))
        .ok_or(Refusal::NoSession)?;
    let mut req = if matches!(*req.method(), Method::GET | Method::HEAD) {
        req
    } else {
        same_origin(req.headers(), &door)?;
        match ui.upload_limit(req.uri().path()) {
            Some(limit) => checked_upload(req, &session.csrf, limit)?,
            None => checked_body(ui, req, &session.csrf).await?,
        }
    };
    req.extensions_mut().insert(session);
    req.extensions_mut().insert(door);
    Ok(req)
}

/// `Origin` must be exactly this UI's origin as the browser addressed it.
/// A browser that sends none, or `null` (a plain form's POST under our
/// `Referrer-Policy: no-referrer`), must say `Sec-Fetch-Site:
/// same-origin`, which no page can forge. Anything else is another site's
/// page.
fn same_origin(headers: &HeaderMap, door: &Door) -> Result<(), Refusal> {
    let origin = headers
        .get(header::ORIGIN)
        .filter(|o| o.as_bytes() != b"null");
    match origin {
        Some(origin) => (origin.as_bytes() == door.origin().as_bytes())
            .then_some(())
            .ok_or(Refusal::CrossOrigin),
        None => (headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"same-origin"))
        .then_some(())
        .ok_or(Refusal::CrossOrigin),
    }
}

/// The most a pairing form's body may hold: the code field (at most 64
/// characters) with room for its encoding.
pub const MAX_PAIR_BODY_BYTES: usize = 256;

/// Whose bytes a body is read against: the sessions' forms share the UI's
/// budget; the open pairing form, which a stranger on the LAN reaches,
/// has a small budget of its own, so stalled pairing posts cannot take
/// the owner's.
#[derive(Clone, Copy)]
enum Reader {
    Session,
    Pairing,
}

/// Read the body within its bound and budget ([`Reader`]); the request
/// with the bytes read, and the bytes.
async fn bounded_body(
    ui: &impl Guarded,
    req: Request,
    reader: Reader,
) -> Result<(Request, axum::body::Bytes), Refusal> {
    let (limit, budget) = match reader {
        Reader::Session => (crate::MAX_BODY_BYTES, ui.budget()),
        Reader::Pairing => (MAX_PAIR_BODY_BYTES, ui.pairing_budget()),
    };
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refusal::BodyTooLarge);
    }
    let mut reservation = budget
        .reserve(declared.map_or(0, |n| n as usize))
        .map_err(|_| Refusal::BodyTooLarge)?;
    let bytes = read_bytes(body, limit, &mut reservation)
        .await
        .map_err(|_| Refusal::BodyTooLarge)?;
    Ok((Request::from_parts(parts, Body::from(bytes.clone())), bytes))
}

/// Read the body bounded ([`bounded_body`]) and check the CSRF token
/// (header, else the form's `csrf` field).
async fn checked_body(ui: &impl Guarded, req: Request, csrf: &str) -> Result<Request, Refusal> {
    let (req, bytes) = bounded_body(ui, req, Reader::Session).await?;
    let presented = match req.headers().get(CSRF_HEADER) {
        Some(v) => v.to_str().ok().map(str::to_owned),
        None => form_urlencoded::parse(&bytes)
            .find(|(name, _)| name == CSRF_FIELD)
            .map(|(_, value)| value.into_owned()),
    };
    if !presented.is_some_and(|p| same_secret(&p, csrf)) {
        return Err(Refusal::Csrf);
    }
    Ok(req)
}

/// An upload's body is a file, up to `limit` (e.g.
/// [`crate::pages::MAX_UPLOAD_BYTES`]): too much to hold in memory, so it
/// is handed on unread for its handler to read as it arrives, bounded
/// there too (a body without a length, or one longer than it said, is cut
/// off at the bound). The CSRF token must be in the header, since the
/// body is not read here; a declared length over the bound is refused
/// before a byte is read.
fn checked_upload(req: Request, csrf: &str, limit: u64) -> Result<Request, Refusal> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
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
        let door = Door {
            host: "127.0.0.1:7860".into(),
            lan: false,
        };
        let with = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            same_origin(&h, &door)
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
        let mut null_from_our_form = HeaderMap::new();
        null_from_our_form.insert("origin", HeaderValue::from_static("null"));
        null_from_our_form.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert_eq!(same_origin(&null_from_our_form, &door), Ok(()));
        null_from_our_form.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert_eq!(
            same_origin(&null_from_our_form, &door),
            Err(Refusal::CrossOrigin),
            "a sandboxed frame of another site sends null too"
        );
        assert_eq!(with("sec-fetch-site", "same-origin"), Ok(()));
        assert_eq!(
            with("sec-fetch-site", "same-site"),
            Err(Refusal::CrossOrigin)
        );
        assert_eq!(
            same_origin(&HeaderMap::new(), &door),
            Err(Refusal::CrossOrigin)
        );
        let lan = Door {
            host: "192.168.1.20:7861".into(),
            lan: true,
        };
        let mut h = HeaderMap::new();
        h.insert(
            "origin",
            HeaderValue::from_static("https://192.168.1.20:7861"),
        );
        assert_eq!(same_origin(&h, &lan), Ok(()));
        h.insert(
            "origin",
            HeaderValue::from_static("http://192.168.1.20:7861"),
        );
        assert_eq!(
            same_origin(&h, &lan),
            Err(Refusal::CrossOrigin),
            "the LAN is HTTPS"
        );
    }

    #[test]
    fn the_lan_door_answers_addresses_and_local_names_with_its_port_only() {
        for ok in [
            "192.168.1.20:7861",
            "[fe80::1]:7861",
            "[2001:db8::7]:7861",
            "den.local:7861",
            "Den-Laptop.LOCAL:7861",
        ] {
            assert!(names_lan(ok, 7861), "{ok}");
        }
        for refused in [
            "192.168.1.20",
            "192.168.1.20:7860",
            "attacker.example:7861",
            "localhost.attacker.example:7861",
            "evil.local.attacker.example:7861",
            "fe80::1:7861",
            "den.local:7861:7861",
            "den .local:7861",
            "",
        ] {
            assert!(!names_lan(refused, 7861), "{refused}");
        }
    }

    #[test]
    fn a_pairing_code_works_once_typed_loosely_and_guessing_burns_every_code() {
        let access = Access::default();
        let code = access.issue_pairing_code();
        assert_eq!(code.len(), 11);
        assert_eq!(&code[5..6], "-");
        let typed = code.to_lowercase().replace('-', " ");
        assert!(
            access.pair(&typed).is_some(),
            "case and separators do not matter"
        );
        assert!(access.pair(&code).is_none(), "a code works once");

        let code = access.issue_pairing_code();
        for _ in 0..MAX_PAIRING_FAILURES {
            assert!(access.pair("AAAAA-AAAAA").is_none());
        }
        assert!(
            access.pair(&code).is_none(),
            "after too many wrong guesses no outstanding code works"
        );
        let fresh = access.issue_pairing_code();
        assert!(
            access.pair(&fresh).is_some(),
            "a new code gets a new budget"
        );
    }

    #[test]
    fn a_code_is_read_as_its_look_alike_digits() {
        assert_eq!(normalised_code("o1l-iO 2"), "011102");
    }
}
