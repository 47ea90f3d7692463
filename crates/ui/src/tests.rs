//! The gate and the pages driven through the router, without sockets:
//! what a browser, a local program or another site's page would send.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use hearthnet_base::TrustLevel;
use hearthnet_transport::LocalApi;
use serde_json::Value;
use tower::ServiceExt;

use super::*;

mod ask_files;

pub(crate) const PORT: u16 = 7860;
pub(crate) const HOST: &str = "127.0.0.1:7860";

struct Fake;

impl NodeView for Fake {
    fn node_manifest(&self) -> Value {
        Value::Null
    }
    fn community_manifest(&self) -> Value {
        let id = |n| hearthnet_wire::local::samples::node_id(n).full();
        let members: Vec<Value> = (1..=4)
            .map(|n| serde_json::json!({"node_id": id(n)}))
            .collect();
        serde_json::json!({"members": members, "revoked": [{"node_id": id(4)}]})
    }
    fn level_of(&self, _: &hearthnet_base::NodeId) -> TrustLevel {
        TrustLevel::Unknown
    }
    fn is_revoked(&self, _: &hearthnet_base::NodeId) -> bool {
        false
    }
    fn readiness(&self) -> (bool, Value) {
        (true, Value::Null)
    }
    fn status(&self) -> Value {
        serde_json::to_value(hearthnet_wire::local::samples::status(
            ([127, 0, 0, 1], 7080).into(),
        ))
        .unwrap()
    }
}

pub(crate) fn ui() -> Ui {
    let metrics = Arc::new(hearthnet_observability::metrics::Metrics::new());
    let id = hearthnet_wire::local::samples::node_id(1);
    ui_on(Arc::new(Bus::new(id, Default::default(), metrics)))
}

pub(crate) fn ui_on(bus: Arc<Bus>) -> Ui {
    ui_with(bus, None, None)
}

/// A UI whose Settings manage the gateway key in `file`.
pub(crate) fn ui_with_key(file: hearthnet_identity::ApiKeyFile) -> Ui {
    let metrics = Arc::new(hearthnet_observability::metrics::Metrics::new());
    let id = hearthnet_wire::local::samples::node_id(1);
    ui_with(
        Arc::new(Bus::new(id, Default::default(), metrics)),
        Some(file),
        None,
    )
}

/// A UI that took over the sessions of a device's join page.
pub(crate) fn ui_with_access(bus: Arc<Bus>, access: Arc<crate::access::Access>) -> Ui {
    ui_with(bus, None, Some(access))
}

fn ui_with(
    bus: Arc<Bus>,
    api_key: Option<hearthnet_identity::ApiKeyFile>,
    access: Option<Arc<crate::access::Access>>,
) -> Ui {
    Ui::new(Parts {
        bus,
        view: Arc::new(Fake),
        emergency: None,
        log: None,
        addr: ([127, 0, 0, 1], PORT).into(),
        stop: CancellationToken::new(),
        lan: None,
        api_key,
        access,
    })
}

/// What the helpers drive: the full UI, or the join page of a device
/// that is not a member yet.
pub(crate) trait Served {
    fn router(&self) -> axum::Router;
    fn login_link(&self) -> hearthnet_wire::local::UiLink;
}

impl Served for Ui {
    fn router(&self) -> axum::Router {
        Ui::router(self)
    }
    fn login_link(&self) -> hearthnet_wire::local::UiLink {
        Ui::login_link(self)
    }
}

impl Served for Joining {
    fn router(&self) -> axum::Router {
        Joining::router(self)
    }
    fn login_link(&self) -> hearthnet_wire::local::UiLink {
        Joining::login_link(self)
    }
}

pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

pub(crate) async fn send(ui: &impl Served, mut req: Request<Body>) -> Answer {
    req.extensions_mut().insert(LocalApi { port: PORT });
    answer_of(ui.router().oneshot(req).await.unwrap()).await
}

/// A response, its body read whole.
async fn answer_of(resp: axum::response::Response) -> Answer {
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub(crate) fn get(path: &str) -> axum::http::request::Builder {
    Request::get(path).header(header::HOST, HOST)
}

/// Log in through a fresh link; the session cookie to send.
pub(crate) async fn logged_in(ui: &impl Served) -> String {
    let link = ui.login_link();
    let path = link.url.strip_prefix("http://127.0.0.1:7860").unwrap();
    let answer = send(ui, get(path).body(Body::empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let cookie = answer.headers[header::SET_COOKIE].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    cookie.split(';').next().unwrap().to_owned()
}

/// The session's CSRF token, as the page carries it.
pub(crate) async fn csrf(ui: &impl Served, cookie: &str) -> String {
    let page = send(
        ui,
        get("/")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let at = page.body.find(r#"name="csrf" value=""#).unwrap() + 19;
    page.body[at..at + 43].to_owned()
}

#[tokio::test]
async fn a_login_link_works_once_and_opens_the_pages() {
    let ui = ui();
    let link = ui.login_link();
    assert!(link.url.starts_with("http://127.0.0.1:7860/login?token="));
    let path = link.url.strip_prefix("http://127.0.0.1:7860").unwrap();
    let cookie = logged_in(&ui).await;
    let home = send(
        &ui,
        get("/")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(home.status, StatusCode::OK);
    let id = hearthnet_wire::local::samples::status(([127, 0, 0, 1], 7080).into())
        .node
        .id
        .full();
    assert!(home.body.contains(&id), "{}", home.body);
    assert!(
        home.body.contains(r#"data-mode="degraded""#),
        "the sample is degraded"
    );
    // The link that was not used yet works once; then never again.
    let first = send(&ui, get(path).body(Body::empty()).unwrap()).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let again = send(&ui, get(path).body(Body::empty()).unwrap()).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(again.headers.get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn without_a_session_nothing_but_the_login_answers() {
    let ui = ui();
    for path in [
        "/",
        "/emergency",
        "/events",
        "/assets/app.css",
        "/assets/htmx.min.js",
        "/nowhere",
    ] {
        let answer = send(&ui, get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        let forged = send(
            &ui,
            get(path)
                .header(header::COOKIE, "hearthnet_session=forged")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn a_foreign_host_is_refused_before_anything_even_with_a_session() {
    let ui = ui();
    let cookie = logged_in(&ui).await;
    for host in ["evil.example:7860", "127.0.0.1:7861", "192.168.1.5:7860"] {
        let answer = send(
            &ui,
            Request::get("/")
                .header(header::HOST, host)
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{host}");
        assert!(!answer.body.contains("Node ID"));
    }
    let token = ui
        .login_link()
        .url
        .split("token=")
        .nth(1)
        .unwrap()
        .to_owned();
    let login = send(
        &ui,
        Request::get(format!("/login?token={token}"))
            .header(header::HOST, "rebound.example:7860")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_post_needs_our_origin_and_the_sessions_csrf_token() {
    let ui = ui();
    let cookie = logged_in(&ui).await;
    let token = csrf(&ui, &cookie).await;
    let post = |origin: Option<&str>, body: String| {
        let mut req = Request::post("/logout")
            .header(header::HOST, HOST)
            .header(header::COOKIE, &cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        req.body(Body::from(body)).unwrap()
    };
    let refused = [
        (Some("http://evil.example"), format!("csrf={token}")),
        (Some("http://127.0.0.1:8000"), format!("csrf={token}")),
        (None, format!("csrf={token}")),
        (Some("http://127.0.0.1:7860"), "csrf=wrong".to_owned()),
        (Some("http://127.0.0.1:7860"), String::new()),
    ];
    for (origin, body) in refused {
        let answer = send(&ui, post(origin, body.clone())).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{origin:?} {body}");
    }
    let big = format!("csrf={token}&x={}", "a".repeat(MAX_BODY_BYTES));
    let answer = send(&ui, post(Some("http://127.0.0.1:7860"), big)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Still logged in: nothing above did anything.
    let ok = send(
        &ui,
        post(Some("http://127.0.0.1:7860"), format!("csrf={token}")),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let after = send(
        &ui,
        get("/")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "logged out");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let ui = ui();
    let cookie = logged_in(&ui).await;
    let answers = [
        send(&ui, get("/").body(Body::empty()).unwrap()).await,
        send(
            &ui,
            get("/")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await,
        send(
            &ui,
            Request::get("/")
                .header(header::HOST, "evil.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await,
    ];
    for a in answers {
        let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"));
        assert_eq!(a.headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(a.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(a.headers[header::REFERRER_POLICY], "no-referrer");
    }
}

#[tokio::test]
async fn the_first_page_with_its_assets_is_small_and_has_no_inline_script() {
    let ui = ui();
    let cookie = logged_in(&ui).await;
    let mut total = 0;
    for path in [
        "/",
        "/assets/app.css",
        "/assets/htmx.min.js",
        "/assets/sse.min.js",
    ] {
        let a = send(
            &ui,
            get(path)
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        total += a.body.len();
        if path == "/" {
            assert!(!a.body.contains("<script>"), "no inline script");
            assert!(!a.body.contains("style="), "no inline style");
        }
    }
    assert!(total < 150 * 1024, "{total} bytes");
}

/// Answers who called it; own-only, as `chat.send` and `market.post` are.
struct WhoAmI;

impl hearthnet_bus::Service for WhoAmI {
    fn name(&self) -> &'static str {
        "whoami"
    }

    fn capabilities(self: Arc<Self>) -> Vec<hearthnet_bus::Capability> {
        let descriptor = hearthnet_bus::CapabilityDescriptor {
            trust: hearthnet_bus::Trust::SelfOnly,
            ..hearthnet_bus::CapabilityDescriptor::new(
                "experimental.local.whoami",
                serde_json::json!({"type": "object"}),
            )
        };
        vec![hearthnet_bus::Capability::new(
            descriptor,
            &self,
            |_, call: hearthnet_bus::Call| async move {
                match call.input["fail"].as_bool() {
                    Some(true) => Err(hearthnet_bus::CallError::new(
                        hearthnet_base::ErrorCode::CapacityExceeded,
                        "all slots taken",
                    )),
                    _ => Ok(serde_json::json!({"caller": call.caller.full()})),
                }
            },
        )]
    }
}

#[tokio::test]
async fn a_page_calls_a_service_as_the_node_itself_and_a_failure_reads_as_advice() {
    let metrics = Arc::new(hearthnet_observability::metrics::Metrics::new());
    let id = hearthnet_wire::local::samples::node_id(1);
    let bus = Arc::new(Bus::new(id, Default::default(), metrics));
    bus.register(Arc::new(WhoAmI)).unwrap();
    let ui = ui_on(bus);
    let state = &ui.state;

    let answer = state
        .call(
            "experimental.local.whoami",
            serde_json::json!({"params": {}, "input": {}}),
        )
        .await
        .unwrap();
    assert_eq!(
        answer["caller"],
        id.full(),
        "an own-only call is let through"
    );

    let failure = state
        .call(
            "experimental.local.whoami",
            serde_json::json!({"params": {}, "input": {"fail": true}}),
        )
        .await
        .unwrap_err();
    let html = failure.fragment();
    assert!(
        html.contains(crate::text::TEXT.error_for(hearthnet_base::ErrorCode::CapacityExceeded)),
        "{html}"
    );
    assert!(html.contains("all slots taken"), "{html}");
}

/// A UI with a LAN listener on 7861.
pub(crate) fn ui_with_lan() -> Ui {
    let metrics = Arc::new(hearthnet_observability::metrics::Metrics::new());
    let id = hearthnet_wire::local::samples::node_id(1);
    Ui::new(Parts {
        bus: Arc::new(Bus::new(id, Default::default(), metrics)),
        view: Arc::new(Fake),
        emergency: None,
        log: None,
        addr: ([127, 0, 0, 1], PORT).into(),
        stop: CancellationToken::new(),
        api_key: None,
        lan: Some(Lan {
            port: 7861,
            origins: vec!["https://192.168.1.20:7861".into()],
            certificate_sha256: "AB:CD".into(),
        }),
        access: None,
    })
}

/// As a request reaches the LAN listener (no loopback mark).
async fn send_lan(ui: &Ui, req: Request<Body>) -> Answer {
    answer_of(ui.lan_router().unwrap().oneshot(req).await.unwrap()).await
}

fn pair_post(host: &str, origin: &str, code: &str) -> Request<Body> {
    Request::post("/pair")
        .header(header::HOST, host)
        .header(header::ORIGIN, origin)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("code={code}")))
        .unwrap()
}

#[tokio::test]
async fn on_the_lan_only_a_pairing_code_opens_a_session_and_the_host_must_be_an_address() {
    assert!(ui().pairing().is_none(), "no LAN listener, no code");
    assert!(ui().lan_router().is_none());
    let ui = ui_with_lan();
    let lan = "192.168.1.20:7861";
    let origin = "https://192.168.1.20:7861";
    let lan_get = |path: &str, host: &str| {
        Request::get(path)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    };

    // A rebinding attacker's name is refused before anything.
    let rebound = send_lan(&ui, lan_get("/pair", "attacker.example:7861")).await;
    assert_eq!(rebound.status, StatusCode::FORBIDDEN);
    // The pairing form is open; everything else needs a session, and the
    // loopback login link does not work here.
    assert_eq!(
        send_lan(&ui, lan_get("/pair", lan)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send_lan(&ui, lan_get("/", lan)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let link = ui.login_link();
    let path = link.url.strip_prefix("http://127.0.0.1:7860").unwrap();
    assert_eq!(
        send_lan(&ui, lan_get(path, lan)).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Nor does the pairing form on loopback.
    let on_loopback = send(&ui, get("/pair").body(Body::empty()).unwrap()).await;
    assert_eq!(on_loopback.status, StatusCode::UNAUTHORIZED);

    let pairing = ui.pairing().unwrap();
    assert_eq!(pairing.urls, ["https://192.168.1.20:7861/pair"]);
    assert_eq!(pairing.certificate_sha256, "AB:CD");
    // Another site's page cannot pair a browser, even with the code.
    let forged = send_lan(
        &ui,
        pair_post(lan, "https://attacker.example", &pairing.code),
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let plain_http = send_lan(
        &ui,
        pair_post(lan, "http://192.168.1.20:7861", &pairing.code),
    )
    .await;
    assert_eq!(plain_http.status, StatusCode::FORBIDDEN);
    // A pairing body is read within its own small bound.
    let mut padded = pair_post(lan, origin, &"A".repeat(crate::access::MAX_PAIR_BODY_BYTES));
    *padded.body_mut() = Body::from(format!(
        "code={}",
        "A".repeat(crate::access::MAX_PAIR_BODY_BYTES)
    ));
    padded.headers_mut().insert(
        header::CONTENT_LENGTH,
        (crate::access::MAX_PAIR_BODY_BYTES + 5).into(),
    );
    assert_eq!(
        send_lan(&ui, padded).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let wrong = send_lan(&ui, pair_post(lan, origin, "AAAAA-AAAAA")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("role=\"alert\""), "{}", wrong.body);

    let paired = send_lan(&ui, pair_post(lan, origin, &pairing.code)).await;
    assert_eq!(paired.status, StatusCode::SEE_OTHER, "{}", paired.body);
    let cookie = paired.headers[header::SET_COOKIE].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    let cookie = cookie.split(';').next().unwrap();
    let home = send_lan(
        &ui,
        Request::get("/")
            .header(header::HOST, lan)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(home.status, StatusCode::OK);
    let again = send_lan(&ui, pair_post(lan, origin, &pairing.code)).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "a code works once");
}

// Market and Messages: what they refuse before calling any service.

/// GET `path` with the session `cookie`.
pub(crate) async fn open_page(ui: &impl Served, cookie: &str, path: &str) -> Answer {
    send(
        ui,
        get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// A POST to `path` from our own page with the session `cookie`, without
/// the CSRF header (a plain form, or a request that forgot it).
pub(crate) fn page_post(path: &str, cookie: &str) -> axum::http::request::Builder {
    Request::post(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, "http://127.0.0.1:7860")
        .header(header::COOKIE, cookie)
}

/// A POST to `path` as our own page sends it: our origin, the session
/// `cookie` and its `csrf` token in the header htmx sets.
pub(crate) fn post_request(path: &str, cookie: &str, csrf: &str) -> axum::http::request::Builder {
    page_post(path, cookie).header(crate::access::CSRF_HEADER, csrf)
}

/// `builder` carrying `body` as a form.
pub(crate) fn with_form(builder: axum::http::request::Builder, body: &str) -> Request<Body> {
    builder
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// [`post_request`] with `body` as a form.
pub(crate) fn form_request(path: &str, cookie: &str, csrf: &str, body: &str) -> Request<Body> {
    with_form(post_request(path, cookie, csrf), body)
}

/// POST `body` (a form) to `path` from our origin with the session's token.
pub(crate) async fn post_form(ui: &impl Served, cookie: &str, path: &str, body: &str) -> Answer {
    let token = csrf(ui, cookie).await;
    send(ui, form_request(path, cookie, &token, body)).await
}

#[tokio::test]
async fn the_market_refuses_a_filter_or_a_post_it_cannot_take_in_plain_words() {
    let ui = ui();
    let cookie = logged_in(&ui).await;
    let market = &crate::text::TEXT.market;
    for (path, words) in [
        ("/market?category=bargain", market.refused_category),
        ("/market?tag=two%20words", market.refused_tag),
        ("/market/posts?category=bargain", market.refused_category),
    ] {
        let answer = open_page(&ui, &cookie, path).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(answer.body.contains(words), "{path}: {}", answer.body);
    }
    let long = format!("/market?q={}", "x".repeat(1025));
    let answer = open_page(&ui, &cookie, &long).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    // Without a market service the page still opens and says so.
    let open = open_page(&ui, &cookie, "/market").await;
    assert_eq!(open.status, StatusCode::OK);
    assert!(open.body.contains(r#"sse-swap="market""#), "{}", open.body);
    assert!(
        open.body
            .contains(crate::text::TEXT.error_for(hearthnet_base::ErrorCode::NotFound)),
        "{}",
        open.body
    );

    // A title too long is refused here, the form kept as entered.
    let title = "t".repeat(201);
    let answer = post_form(
        &ui,
        &cookie,
        "/market/post",
        &format!("client_id=c1&title={title}&category=offer&days=7"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "htmx swaps it in");
    assert!(answer.body.contains(market.bad_title), "{}", answer.body);
    assert!(answer.body.contains(&title), "kept as entered");
    assert!(
        answer.body.contains(r#"name="client_id" value="c1""#),
        "a retry is the same post: {}",
        answer.body
    );
    let answer = post_form(
        &ui,
        &cookie,
        "/market/post",
        "client_id=c1&title=Ladder&category=bargain&days=7",
    )
    .await;
    assert!(answer.body.contains(market.bad_category), "{}", answer.body);
    let answer = post_form(&ui, &cookie, "/market/expire", "event_id=").await;
    assert!(answer.body.contains(market.bad_form), "{}", answer.body);
}

#[tokio::test]
async fn messages_open_only_a_member_by_node_id_and_refuse_an_empty_message() {
    let ui = ui();
    let cookie = logged_in(&ui).await;
    let messages = &crate::text::TEXT.messages;
    let me = hearthnet_wire::local::samples::node_id(1).full();
    for with in ["bob", "ed25519:abc", &"x".repeat(300), &me] {
        for path in ["/messages", "/messages/conversation"] {
            let answer = open_page(&ui, &cookie, &format!("{path}?with={with}")).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path} {with}");
            assert!(
                answer.body.contains(messages.refused_with),
                "{}",
                answer.body
            );
        }
    }
    // A member to write to is chosen by name: the neighbour in reach.
    let peer = hearthnet_wire::local::samples::node_id(2).full();
    let page = open_page(&ui, &cookie, "/messages").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains(&format!(r#"<option value="{peer}">kitchen ("#)),
        "{}",
        page.body
    );
    // The other members too, by short id: not this node, not the revoked.
    let sample = hearthnet_wire::local::samples::node_id;
    let away = sample(3);
    assert!(
        page.body.contains(&format!(
            r#"<option value="{}">{} ({})"#,
            away.full(),
            away.short(),
            messages.away
        )),
        "{}",
        page.body
    );
    for absent in [sample(1), sample(4)] {
        assert!(!page.body.contains(&format!(r#"value="{}""#, absent.full())));
    }
    let open = open_page(&ui, &cookie, &format!("/messages?with={peer}")).await;
    assert_eq!(open.status, StatusCode::OK);
    assert!(open.body.contains(r#"id="message-send""#), "{}", open.body);

    let answer = post_form(
        &ui,
        &cookie,
        "/messages/send",
        &format!("recipient={peer}&client_id=c1&body=%20%20"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.body.contains(messages.bad_message),
        "{}",
        answer.body
    );
    let answer = post_form(
        &ui,
        &cookie,
        "/messages/send",
        "recipient=bob&client_id=c1&body=hi",
    )
    .await;
    assert!(
        answer.body.contains(messages.bad_recipient),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_session_holds_a_bounded_number_of_live_streams() {
    let ui = ui();
    let (a, b) = (logged_in(&ui).await, logged_in(&ui).await);
    let open = |cookie: &str| {
        let mut req = get("/events?page=home")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(LocalApi { port: PORT });
        ui.router().oneshot(req)
    };
    // Each response's body is the stream: it holds its slot while kept.
    let mut streams = Vec::new();
    for _ in 0..access::MAX_STREAMS_PER_SESSION {
        let resp = open(&a).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        streams.push(resp);
    }
    let refused = open(&a).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = axum::body::to_bytes(refused.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("Close some tabs"));
    // Another browser is not held back by this one.
    assert_eq!(open(&b).await.unwrap().status(), StatusCode::OK);
    // A closed tab gives its slot back.
    streams.pop();
    assert_eq!(open(&a).await.unwrap().status(), StatusCode::OK);
}
