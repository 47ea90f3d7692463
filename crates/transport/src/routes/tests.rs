//! The router without sockets: requests go straight into the `Router` as a
//! tower service, against a fake node.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures_util::future::BoxFuture;
use hearthnet_base::request::{ENDPOINT_VERSION, Extras, SignedHeaders};
use hearthnet_base::{CommunityId, DeviceKey, NodeId, TrustLevel};
use hearthnet_bus::{Bus, BusSettings, CallError};
use hearthnet_observability::metrics::Metrics;
use hearthnet_wire::peer::{ChunksRequest, EventsReport, Heads, Redeemed};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::{BlobEndpoints, NodeView, SyncEndpoints, bulk};

const MAX_BODY: usize = 4096;

/// A node whose members are `members` (and itself).
struct FakeView {
    members: Vec<NodeId>,
}

impl NodeView for FakeView {
    fn node_manifest(&self) -> Value {
        json!({"manifest": "node"})
    }
    fn community_manifest(&self) -> Value {
        json!({"manifest": "community"})
    }
    fn level_of(&self, node: &NodeId) -> TrustLevel {
        if self.members.contains(node) {
            TrustLevel::Member
        } else {
            TrustLevel::Unknown
        }
    }
    fn is_revoked(&self, _: &NodeId) -> bool {
        false
    }
    fn readiness(&self) -> (bool, Value) {
        (true, json!({}))
    }
    fn status(&self) -> Value {
        json!({"status": "fine"})
    }
}

/// An event log that answers fetches with one event per hash, and
/// redemptions with who redeemed (as their one event).
struct FakeSync;

impl SyncEndpoints for FakeSync {
    fn heads(&self) -> BoxFuture<'static, Heads> {
        unimplemented!("not asked in these tests")
    }
    fn receive(&self, _: Vec<Value>) -> BoxFuture<'static, Result<EventsReport, CallError>> {
        unimplemented!("not asked in these tests")
    }
    fn reconcile(&self, message: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, CallError>> {
        Box::pin(async move { Ok(message.into_iter().rev().collect()) })
    }
    fn fetch(&self, hashes: Vec<Vec<u8>>) -> BoxFuture<'static, Result<Vec<Value>, CallError>> {
        Box::pin(async move {
            Ok(hashes
                .iter()
                .map(|h| json!({"hash_len": h.len()}))
                .collect())
        })
    }
    fn subscribe(
        &self,
        _: NodeId,
        topic: String,
        last_seq: i64,
        _: Duration,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        Box::pin(async move { Ok(json!({"topic": topic, "last_seq": last_seq})) })
    }
    fn redeem(
        &self,
        from: NodeId,
        invite: String,
        _: Value,
    ) -> BoxFuture<'static, Result<Redeemed, CallError>> {
        Box::pin(async move {
            Ok(Redeemed {
                community_id: CommunityId::of_root(from),
                genesis_manifest: json!({}),
                events: vec![json!({"redeemed_by": from, "invite": invite})],
            })
        })
    }
    fn sync_now(
        &self,
        peer: String,
        _: Option<String>,
    ) -> BoxFuture<'static, Result<Value, CallError>> {
        Box::pin(async move { Ok(json!({"peer": peer})) })
    }
}

/// Refuses every chunk request with the contract's `not_found`, after
/// the body decoded.
struct NoChunks;

impl BlobEndpoints for NoChunks {
    fn chunks(
        &self,
        _: NodeId,
        request: ChunksRequest,
    ) -> BoxFuture<'static, Result<bulk::ServedChunks, CallError>> {
        Box::pin(async move {
            Err(CallError::new(
                ErrorCode::NotFound,
                format!("no {}", request.cid),
            ))
        })
    }
}

struct Node {
    /// The peer port's router.
    router: Router,
    /// The local API's, with the OpenAI-compatible gateway.
    local: Router,
    /// The gateway's key, in a directory that lives as long as the node.
    api_key: hearthnet_identity::ApiKey,
    _keys: tempfile::TempDir,
    state: Arc<ApiState>,
    bus: Arc<Bus>,
    own: DeviceKey,
    member: DeviceKey,
    community: CommunityId,
}

fn node() -> Node {
    node_with_max(MAX_BODY)
}

/// A node whose configured body limit is `max_body`.
fn node_with_max(max_body: usize) -> Node {
    node_with_budget(max_body, None)
}

/// A node whose configured body limit is `max_body`, reading bodies
/// within `budget` if given.
fn node_with_budget(max_body: usize, budget: Option<Arc<http::BodyBudget>>) -> Node {
    let own = DeviceKey::generate();
    let member = DeviceKey::generate();
    let community = CommunityId::of_root(own.node_id());
    let metrics = Arc::new(Metrics::new());
    let bus = Arc::new(Bus::new(
        own.node_id(),
        BusSettings::default(),
        metrics.clone(),
    ));
    let view = Arc::new(FakeView {
        members: vec![own.node_id(), member.node_id()],
    });
    let state = ApiState::new(
        bus.clone(),
        view,
        metrics,
        own.clone(),
        community,
        max_body,
        Duration::from_secs(60),
    )
    .with_sync(Arc::new(FakeSync))
    .with_blobs(Arc::new(NoChunks));
    let state = match budget {
        Some(budget) => state.with_body_budget(budget),
        None => state,
    };
    let keys = tempfile::tempdir().unwrap();
    let key_file = hearthnet_identity::ApiKeyFile::in_dir(keys.path());
    let (api_key, _) = key_file.load_or_create().unwrap();
    let state =
        Arc::new(state.with_api_key(Arc::new(hearthnet_identity::ApiKeyCheck::new(key_file))));
    Node {
        router: router(state.clone()),
        local: local_router(state.clone()),
        api_key,
        _keys: keys,
        state,
        bus,
        own,
        member,
        community,
    }
}

/// A request to `path` signed by `key` for `signed_for` (the path, or the
/// capability of a call), with `body` (`None`: a GET).
fn signed(
    key: &DeviceKey,
    community: CommunityId,
    signed_for: &str,
    path: &str,
    body: Option<Value>,
) -> Request<Body> {
    let empty = json!({});
    let headers = SignedHeaders::sign(
        key,
        community,
        signed_for,
        ENDPOINT_VERSION,
        body.as_ref().unwrap_or(&empty),
    )
    .unwrap();
    let method = if body.is_some() {
        Method::POST
    } else {
        Method::GET
    };
    // A query string is covered as a client covers it.
    let extras = Extras {
        query: path.split_once('?').map(|(_, q)| q),
        ..Extras::default()
    };
    let covers = extras.covers(key, &headers).unwrap();
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in headers.to_pairs().into_iter().chain(covers) {
        req = req.header(name, value);
    }
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    req.body(Body::from(bytes)).unwrap()
}

async fn answer(router: &Router, req: Request<Body>) -> (StatusCode, Value, Option<String>) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let id = resp
        .headers()
        .get(request::REQUEST_ID)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body, id)
}

#[tokio::test]
async fn an_unknown_path_is_the_contracts_not_found() {
    let node = node();
    let req = Request::get("/nothing/here").body(Body::empty()).unwrap();
    let (status, body, _) = answer(&node.router, req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn a_signed_request_of_a_member_gets_its_typed_answer() {
    let node = node();
    let body = json!({"hashes": ["00ff", "abcd12"]});
    let req = signed(
        &node.member,
        node.community,
        "/sync/v2/fetch",
        "/sync/v2/fetch",
        Some(body),
    );
    let (status, body, _) = answer(&node.router, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"events": [{"hash_len": 2}, {"hash_len": 3}]}));

    let req = signed(
        &node.member,
        node.community,
        "/sync/v2/reconcile",
        "/sync/v2/reconcile",
        Some(json!({"message": "0102"})),
    );
    let (status, body, _) = answer(&node.router, req).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"message": "0201"})));
}

#[tokio::test]
async fn an_unsigned_request_is_unauthorized_with_its_request_id_echoed() {
    let node = node();
    let req = Request::post("/sync/v2/fetch")
        .header(request::REQUEST_ID, "01UNSIGNED")
        .body(Body::from(r#"{"hashes": []}"#))
        .unwrap();
    let (status, body, id) = answer(&node.router, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(
        id.as_deref(),
        Some("01UNSIGNED"),
        "§5.4: the request id comes back"
    );
    let req = Request::get("/local/v1/caps").body(Body::empty()).unwrap();
    assert_eq!(answer(&node.router, req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_anything_else() {
    let node = node();
    let hashes = vec!["00"; MAX_BODY];
    let req = signed(
        &node.member,
        node.community,
        "/sync/v2/fetch",
        "/sync/v2/fetch",
        Some(json!({"hashes": hashes})),
    );
    let (status, body, _) = answer(&node.router, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "bad_request");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&format!("larger than {MAX_BODY} bytes"))
    );
}

#[tokio::test]
async fn a_malformed_body_is_a_bad_request_naming_the_field() {
    let node = node();
    for (path, body, field) in [
        (
            "/sync/v2/fetch",
            json!({"hashes": ["00", "not hex"]}),
            "`hashes[1]`",
        ),
        ("/sync/v2/reconcile", json!({"message": 7}), "`message`"),
        ("/sync/v1/events", json!({"events": {}}), "`events`"),
        (
            bulk::CHUNKS_PATH,
            json!({"cid": "blake3:00", "chunks": [0]}),
            "`cid`",
        ),
    ] {
        let req = signed(&node.member, node.community, path, path, Some(body));
        let (status, body, _) = answer(&node.router, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{path}: {message}");
    }
}

#[tokio::test]
async fn a_signature_for_another_path_is_refused() {
    let node = node();
    let req = signed(
        &node.member,
        node.community,
        "/sync/v2/reconcile",
        "/sync/v2/fetch",
        Some(json!({"hashes": []})),
    );
    let (status, body, _) = answer(&node.router, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_signature");
}

#[tokio::test]
async fn each_route_admits_the_access_it_declares() {
    let node = node();
    let stranger = DeviceKey::generate();
    let get = |key: &DeviceKey, path: &str| signed(key, node.community, path, path, None);

    // Own key only.
    let (status, body, _) = answer(&node.router, get(&node.member, "/local/v1/status")).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
    );
    let (status, body, _) = answer(&node.router, get(&node.own, "/local/v1/status")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "fine"})));

    // Members.
    let (status, _, _) = answer(&node.router, get(&stranger, "/community/manifest")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body, _) = answer(&node.router, get(&node.member, "/community/manifest")).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"manifest": "community"}))
    );

    // Invitees: a stranger may redeem, and is who redeemed.
    let path = "/onboarding/v1/redeem";
    let redeem = json!({"invite": "hearthnet://v1/x", "joined": {}});
    let req = signed(&stranger, node.community, path, path, Some(redeem));
    let (status, body, _) = answer(&node.router, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"][0]["redeemed_by"], json!(stranger.node_id()));
}

#[tokio::test]
async fn a_query_is_read_after_the_signature_and_typed() {
    let node = node();
    let path = "/pubsub/v1/subscribe";
    let req = signed(
        &node.member,
        node.community,
        path,
        &format!("{path}?topic=t&last_seq=4"),
        None,
    );
    let (status, body, _) = answer(&node.router, req).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"topic": "t", "last_seq": 4}))
    );

    let req = signed(
        &node.member,
        node.community,
        path,
        &format!("{path}?last_seq=x"),
        None,
    );
    let (status, body, _) = answer(&node.router, req).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("bad_request"))
    );
    let unsigned = Request::get(format!("{path}?last_seq=x"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        answer(&node.router, unsigned).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_capability_call_keeps_the_bus_answer_and_the_request_id() {
    let node = node();
    let req = signed(
        &node.member,
        node.community,
        "experimental.nobody",
        "/bus/v1/call",
        Some(json!({"params": {}, "input": {}})),
    );
    let sent_id = req.headers()[request::REQUEST_ID]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, body, id) = answer(&node.router, req).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found");
    assert_eq!(id, Some(sent_id));
}

#[tokio::test]
async fn errors_of_the_handler_reach_the_caller_as_the_contract_body() {
    let node = node();
    let path = bulk::CHUNKS_PATH;
    let cid = format!("blake3:{}", "0".repeat(64));
    let req = signed(
        &node.member,
        node.community,
        path,
        path,
        Some(json!({"cid": cid})),
    );
    let (status, body, _) = answer(&node.router, req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "not_found", "message": format!("no {cid}")})
    );
}

#[tokio::test]
async fn over_tls_only_members_get_through_and_only_as_themselves() {
    let node = node();
    let stranger = DeviceKey::generate();
    let over = |mut req: Request<Body>, key: &DeviceKey| {
        req.extensions_mut().insert(PeerIdentity(key.node_id()));
        req
    };
    let health = || Request::get("/health").body(Body::empty()).unwrap();
    assert_eq!(
        answer(&node.router, over(health(), &stranger)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        answer(&node.router, over(health(), &node.member)).await.0,
        StatusCode::OK
    );

    // Signed by one member over the connection of another.
    let path = "/community/manifest";
    let req = signed(&node.member, node.community, path, path, None);
    let (status, body, _) = answer(&node.router, over(req, &node.own)).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
    );

    // A stranger's redemption passes, signed by the connection's key.
    let path = "/onboarding/v1/redeem";
    let redeem = json!({"invite": "hearthnet://v1/x", "joined": {}});
    let req = signed(&stranger, node.community, path, path, Some(redeem));
    assert_eq!(
        answer(&node.router, over(req, &stranger)).await.0,
        StatusCode::OK
    );
}

/// `experimental.write` mutates, `experimental.read` does not; both take
/// `input.n`, an integer.
struct Ledger;

impl hearthnet_bus::Service for Ledger {
    fn name(&self) -> &'static str {
        "ledger"
    }

    fn capabilities(self: Arc<Self>) -> Vec<hearthnet_bus::Capability> {
        use hearthnet_bus::{Capability, CapabilityDescriptor};
        let input =
            json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}});
        let serve = |_: Arc<Self>, call: hearthnet_bus::Call| async move {
            Ok(json!({"output": {"n": call.input["n"]}}))
        };
        vec![
            Capability::new(
                CapabilityDescriptor {
                    mutating: true,
                    ..CapabilityDescriptor::new("experimental.write", input.clone())
                },
                &self,
                serve,
            ),
            Capability::new(
                CapabilityDescriptor::new("experimental.read", input),
                &self,
                serve,
            ),
        ]
    }
}

#[tokio::test]
async fn answers_of_mutating_capabilities_are_signed_by_the_node() {
    let node = node();
    node.bus.register(Arc::new(Ledger)).unwrap();
    for (capability, signed_answer) in [("experimental.write", true), ("experimental.read", false)]
    {
        let req = signed(
            &node.member,
            node.community,
            capability,
            "/bus/v1/call",
            Some(json!({"input": {"n": 7}})),
        );
        let request_id = req.headers()[request::REQUEST_ID]
            .to_str()
            .unwrap()
            .to_owned();
        let resp = node.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (signature, timestamp) = (header(request::SIGNATURE), header(request::TIMESTAMP));
        assert_eq!(signature.is_some(), signed_answer, "{capability}");
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["output"]["n"], 7);
        if let (Some(signature), Some(timestamp)) = (signature, timestamp) {
            let envelope = json!({
                "request_id": request_id,
                "from": node.own.node_id(),
                "timestamp": timestamp,
                "body": body,
            });
            hearthnet_base::crypto::verify_canonical(&envelope, &signature, &node.own.node_id())
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_call_whose_body_breaks_the_schema_is_a_400_schema_mismatch() {
    let node = node();
    node.bus.register(Arc::new(Ledger)).unwrap();
    let req = signed(
        &node.member,
        node.community,
        "experimental.read",
        "/bus/v1/call",
        Some(json!({"input": {"n": "seven"}})),
    );
    let (status, body, _) = answer(&node.router, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "schema_mismatch");
    assert!(
        body["message"].as_str().unwrap().contains("`/input/n`"),
        "{body}"
    );
    assert!(
        body["schema_hash_expected"]
            .as_str()
            .unwrap()
            .starts_with("blake3:")
    );
}

#[tokio::test]
async fn a_known_path_with_another_method_is_the_contracts_not_found() {
    let node = node();
    // A GET of a POST endpoint, signed as a member signs one.
    let path = "/sync/v2/fetch";
    let req = signed(&node.member, node.community, path, path, None);
    let sent_id = req.headers()[request::REQUEST_ID]
        .to_str()
        .unwrap()
        .to_owned();
    let resp = node.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let header = |name| {
        resp.headers()
            .get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header(request::REQUEST_ID), Some(sent_id));
    assert_eq!(header(header::ALLOW.as_str()).as_deref(), Some("POST"));
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        body,
        json!({"error": "not_found", "message": "no such endpoint for this method"})
    );
    // And a POST to an unsigned GET endpoint.
    let req = Request::post("/health").body(Body::empty()).unwrap();
    let (status, body, _) = answer(&node.router, req).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
}

#[tokio::test]
async fn over_tls_a_stranger_reaches_only_the_routes_that_admit_invitees() {
    let node = node();
    let stranger = DeviceKey::generate();
    let over = |mut req: Request<Body>| {
        req.extensions_mut()
            .insert(PeerIdentity(stranger.node_id()));
        req
    };
    let refused = |(status, body, _): (StatusCode, Value, Option<String>), what: &str| {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(body["error"], "unauthorized", "{what}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("is not a member"),
            "{what}: {body}"
        );
    };
    let unsigned = |method: Method, path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap()
    };
    for (method, path) in [
        (Method::GET, "/health"),
        (Method::GET, "/ready"),
        (Method::GET, "/manifest"),
        (Method::GET, "/nothing/here"),
        (Method::GET, "/onboarding/v1/redeem"),
    ] {
        let req = over(unsigned(method.clone(), path));
        refused(answer(&node.router, req).await, path);
    }
    // Signed as itself, to routes of members.
    let path = "/community/manifest";
    let req = signed(&stranger, node.community, path, path, None);
    refused(answer(&node.router, over(req)).await, path);
    let path = "/sync/v2/fetch";
    let req = signed(
        &stranger,
        node.community,
        path,
        path,
        Some(json!({"hashes": []})),
    );
    refused(answer(&node.router, over(req)).await, path);
    // Refused before its body is read: an oversized one is not a 400.
    let hashes = vec!["00"; MAX_BODY];
    let req = signed(
        &stranger,
        node.community,
        path,
        path,
        Some(json!({"hashes": hashes})),
    );
    refused(answer(&node.router, over(req)).await, "an oversized body");
    let req = signed(
        &stranger,
        node.community,
        "experimental.echo",
        "/bus/v1/call",
        Some(json!({"input": {}})),
    );
    refused(answer(&node.router, over(req)).await, "a capability call");

    // Redemption is answered, a malformed one as a bad request naming the
    // field (the invitee is authenticated by then).
    let path = "/onboarding/v1/redeem";
    let redeem = json!({"invite": "hearthnet://v1/x", "joined": {}});
    let req = signed(&stranger, node.community, path, path, Some(redeem));
    let (status, body, _) = answer(&node.router, over(req)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let req = signed(
        &stranger,
        node.community,
        path,
        path,
        Some(json!({"joined": {}})),
    );
    let (status, body, _) = answer(&node.router, over(req)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`invite`"),
        "{body}"
    );

    // On loopback (no TLS identity) the unsigned endpoints answer anyone.
    let (status, _, _) = answer(&node.router, unsigned(Method::GET, "/health")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn over_tls_a_route_that_declares_no_access_is_closed_to_strangers() {
    // A route whose handler declares nothing (no extractor): the gate
    // refuses a stranger's answer all the same, and lets members through.
    let node = node();
    let router = Router::new()
        .route("/undeclared", get(|| async { "open" }))
        .layer(axum::middleware::from_fn_with_state(
            node.state.clone(),
            gate,
        ))
        .with_state(node.state.clone());
    let over = |key: &DeviceKey| {
        let mut req = Request::get("/undeclared").body(Body::empty()).unwrap();
        req.extensions_mut().insert(PeerIdentity(key.node_id()));
        req
    };
    let (status, body, _) = answer(&router, over(&DeviceKey::generate())).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
    );
    let (status, _, _) = answer(&router, over(&node.member)).await;
    assert_eq!(status, StatusCode::OK);
}

/// A body that notes whether anyone started reading it.
fn watched(body: Value) -> (Body, Arc<std::sync::atomic::AtomicBool>) {
    let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = read.clone();
    let stream = futures_util::stream::once(async move {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok::<_, std::io::Error>(axum::body::Bytes::from(body.to_string()))
    });
    (Body::from_stream(stream), read)
}

#[tokio::test]
async fn what_needs_no_body_is_refused_before_a_byte_of_the_body_is_read() {
    let node = node();
    let stranger = DeviceKey::generate();
    let fetch = json!({"hashes": []});
    let post = |key: &DeviceKey, community: CommunityId, signed_for: &str, path: &str| {
        signed(key, community, signed_for, path, Some(fetch.clone())).into_parts()
    };
    let used = {
        let (parts, _) = post(
            &node.member,
            node.community,
            "/sync/v2/fetch",
            "/sync/v2/fetch",
        );
        let (body, _) = watched(fetch.clone());
        let (status, _, _) = answer(&node.router, Request::from_parts(parts.clone(), body)).await;
        assert_eq!(status, StatusCode::OK, "the id is used once");
        parts
    };
    let mut huge = post(
        &node.member,
        node.community,
        "/sync/v2/fetch",
        "/sync/v2/fetch",
    )
    .0;
    huge.headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(1u64 << 30));
    let mut stale = post(
        &node.member,
        node.community,
        "/sync/v2/fetch",
        "/sync/v2/fetch",
    )
    .0;
    stale.headers.insert(
        request::TIMESTAMP,
        HeaderValue::from_static("2001-01-01T00:00:00Z"),
    );
    let unsigned = Request::post("/sync/v2/fetch")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let other = CommunityId::of_root(stranger.node_id());
    let cases = [
        ("a declared length over the limit", huge, "bad_request"),
        ("no signature", unsigned, "unauthorized"),
        (
            "a stranger",
            post(
                &stranger,
                node.community,
                "/sync/v2/fetch",
                "/sync/v2/fetch",
            )
            .0,
            "unauthorized",
        ),
        (
            "a stranger's capability call",
            post(&stranger, node.community, "echo.v1", "/bus/v1/call").0,
            "unauthorized",
        ),
        (
            "another community",
            post(&node.member, other, "/sync/v2/fetch", "/sync/v2/fetch").0,
            "unauthorized",
        ),
        (
            "another path",
            post(
                &node.member,
                node.community,
                "/sync/v2/reconcile",
                "/sync/v2/fetch",
            )
            .0,
            "invalid_signature",
        ),
        ("a stale timestamp", stale, "expired"),
        ("a used request id", used, "unauthorized"),
        (
            "not the node's own key",
            post(
                &node.member,
                node.community,
                "/local/v1/sync",
                "/local/v1/sync",
            )
            .0,
            "unauthorized",
        ),
    ];
    for (what, parts, code) in cases {
        let (body, read) = watched(fetch.clone());
        let (_, answer, _) = answer(&node.router, Request::from_parts(parts, body)).await;
        assert_eq!(answer["error"], code, "{what}: {answer}");
        assert!(
            !read.load(std::sync::atomic::Ordering::SeqCst),
            "{what}: the body was read"
        );
    }
}

#[tokio::test]
async fn each_route_reads_bodies_up_to_its_own_limit_under_the_configured_one() {
    const CONFIGURED: usize = 16 << 20;
    let node = node_with_max(CONFIGURED);
    let padded = |n: usize| "x".repeat(n);
    let hashes = |n: usize| vec!["00"; n / 5];
    let cases = [
        (
            "/onboarding/v1/redeem",
            json!({"invite": padded(65 << 10), "joined": {}}),
            Some(64 << 10),
        ),
        (
            "/local/v1/sync",
            json!({"peer": padded(65 << 10)}),
            Some(64 << 10),
        ),
        (
            bulk::CHUNKS_PATH,
            json!({"cid": padded(65 << 10)}),
            Some(64 << 10),
        ),
        (
            "/sync/v2/fetch",
            json!({"hashes": hashes(257 << 10)}),
            Some(256 << 10),
        ),
        (
            "/sync/v2/reconcile",
            json!({"message": padded(257 << 10)}),
            Some(256 << 10),
        ),
        (
            "/sync/v1/events",
            json!({"events": [], "pad": padded(4 << 20)}),
            Some(4 << 20),
        ),
        ("/sync/v2/fetch", json!({"hashes": hashes(200 << 10)}), None),
        ("/bus/v1/call", json!({"pad": padded(5 << 20)}), None),
    ];
    for (path, body, limit) in cases {
        let signed_for = if path == "/bus/v1/call" {
            "echo.v1"
        } else {
            path
        };
        let req = signed(&node.own, node.community, signed_for, path, Some(body));
        let (status, answer, _) = answer(&node.router, req).await;
        let too_large = status == StatusCode::BAD_REQUEST
            && answer["message"]
                .as_str()
                .is_some_and(|m| m.contains("larger than"));
        match limit {
            Some(limit) => assert!(
                too_large
                    && answer["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(&format!("larger than {limit} bytes"))),
                "{path}: {status} {answer}"
            ),
            None => assert!(!too_large, "{path}: {status} {answer}"),
        }
    }
}

/// Serve `node` on a real listener on 127.0.0.1; its address.
async fn listening(node: &Node) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
    listening_as(node, crate::server::Serving::local()).await
}

/// Serve `node` as `serving` says on a real listener on 127.0.0.1.
async fn listening_as(
    node: &Node,
    serving: crate::server::Serving,
) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
    let listener = crate::server::Listener::bind(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(crate::server::serve(
        listener,
        node.router.clone(),
        stop.clone(),
        serving,
    ));
    (addr, stop)
}

/// The request head of `req` as HTTP/1.1 text, declaring `length` bytes
/// of body.
fn head_of(req: &Request<Body>, length: usize) -> String {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: 127.0.0.1\r\n",
        req.method(),
        req.uri()
    );
    for (name, value) in req.headers() {
        head += &format!("{name}: {}\r\n", value.to_str().unwrap());
    }
    head + &format!("content-length: {length}\r\n\r\n")
}

// The clock is paused and jumps ahead whenever every task waits, so the
// test does not sit through the timeout.
#[tokio::test(start_paused = true)]
async fn a_body_that_dribbles_in_is_cut_off_with_a_timeout_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = node();
    let (addr, stop) = listening(&node).await;
    let body = json!({"hashes": []}).to_string();
    let path = "/sync/v2/fetch";
    let req = signed(
        &node.member,
        node.community,
        path,
        path,
        Some(json!({"hashes": []})),
    );
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = tokio::time::Instant::now();
    conn.write_all(head_of(&req, body.len()).as_bytes())
        .await
        .unwrap();
    conn.write_all(&body.as_bytes()[..3]).await.unwrap();
    let mut answer = Vec::new();
    let waited = crate::http::BODY_READ_TIMEOUT * 2;
    tokio::time::timeout(waited, conn.read_to_end(&mut answer))
        .await
        .expect("the server cut the body off")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""error":"timeout""#), "{answer}");
    assert!(started.elapsed() >= crate::http::BODY_READ_TIMEOUT);
    stop.cancel();
}

#[tokio::test]
async fn the_local_api_answers_only_requests_addressed_to_loopback() {
    let node = node();
    let port = 7080;
    let ask = |path: &str, host: Option<&str>, local: bool| {
        let mut req = Request::get(path);
        if let Some(host) = host {
            req = req.header(header::HOST, host);
        }
        let mut req = req.body(Body::empty()).unwrap();
        if local {
            req.extensions_mut()
                .insert(crate::server::LocalApi { port });
        }
        req
    };
    let allowed = [
        "127.0.0.1:7080",
        "127.0.0.1",
        "localhost:7080",
        "LOCALHOST",
        "[::1]:7080",
        "[::1]",
        "127.0.0.2:7080",
    ];
    let refused = [
        None,
        Some("evil.example:7080"),
        Some("evil.example"),
        Some("127.0.0.1:7081"),
        Some("localhost:80"),
        Some("[::1]:8080"),
        Some("10.0.0.1:7080"),
        Some("localhost.evil.example:7080"),
        Some("127.0.0.1.nip.io:7080"),
        Some("::1"),
        Some("[::1]x"),
        Some("127.0.0.1:"),
        Some("localhost:7080:7080"),
    ];
    for path in ["/health", "/ready", "/manifest"] {
        for host in allowed {
            let (status, body, _) = answer(&node.router, ask(path, Some(host), true)).await;
            assert_eq!(status, StatusCode::OK, "{path} {host}: {body}");
        }
        for host in refused {
            let (status, body, _) = answer(&node.router, ask(path, host, true)).await;
            assert_eq!(
                (status, &body["error"]),
                (StatusCode::UNAUTHORIZED, &json!("unauthorized")),
                "{path} {host:?}"
            );
        }
        // The peer port names the node by whatever address reached it.
        let (status, _, _) = answer(&node.router, ask(path, Some("evil.example"), false)).await;
        assert_eq!(status, StatusCode::OK, "{path} on the peer port");
    }
    // Signed requests too, before anything else, with the request id.
    let mut req = signed(
        &node.own,
        node.community,
        "/local/v1/caps",
        "/local/v1/caps",
        None,
    );
    req.headers_mut()
        .insert(header::HOST, HeaderValue::from_static("evil.example:7080"));
    req.extensions_mut()
        .insert(crate::server::LocalApi { port });
    let (status, body, id) = answer(&node.router, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["message"].as_str().unwrap().contains("Host"), "{body}");
    assert!(id.is_some(), "the request id comes back");
}

#[tokio::test]
async fn a_request_stamped_before_the_node_started_is_refused_as_expired() {
    let node = node();
    let path = "/sync/v2/fetch";
    let body = json!({"hashes": []});
    // Inside the skew window, but before this node (its authenticator)
    // existed: the replay cache cannot know whether it was used.
    let before = hearthnet_base::Timestamp::now().plus_seconds(-5);
    let headers = SignedHeaders::sign_at(
        &node.member,
        node.community,
        path,
        ENDPOINT_VERSION,
        &body,
        before,
    )
    .unwrap();
    let mut req = Request::post(path);
    for (name, value) in headers.to_pairs() {
        req = req.header(name, value);
    }
    let req = req.body(Body::from(body.to_string())).unwrap();
    let (status, answer, _) = answer(&node.router, req).await;
    assert_eq!(answer["error"], "expired", "{answer}");
    assert_eq!(status, StatusCode::GONE);
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("before this node started"),
        "{answer}"
    );
}

/// `experimental.flood` streams 16 KiB frames for as long as anyone takes
/// them.
struct Flood;

impl hearthnet_bus::Service for Flood {
    fn name(&self) -> &'static str {
        "flood"
    }

    fn capabilities(self: Arc<Self>) -> Vec<hearthnet_bus::Capability> {
        use hearthnet_bus::{Capability, CapabilityDescriptor};
        let descriptor = CapabilityDescriptor {
            stream_schema: Some(json!({"type": "object"})),
            // Far beyond the test: only the stalled write can end the call.
            timeout: Duration::from_secs(3600),
            ..CapabilityDescriptor::new("experimental.flood", json!({"type": "object"}))
        };
        let serve = |_: Arc<Self>, call: hearthnet_bus::Call| async move {
            let filler = "x".repeat(16 * 1024);
            while call
                .frames
                .send("chunk", json!({"filler": filler}))
                .await
                .is_ok()
            {}
            Ok(json!({}))
        };
        vec![Capability::new(descriptor, &self, serve)]
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_a_stream_loses_its_connection_and_its_call() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const STALL: Duration = Duration::from_millis(300);
    let node = node();
    node.bus.register(Arc::new(Flood)).unwrap();
    let serving = crate::server::Serving {
        write_stall: STALL,
        ..crate::server::Serving::local()
    };
    let (addr, stop) = listening_as(&node, serving).await;
    let body = json!({"params": {}, "input": {}});
    let mut req = signed(
        &node.member,
        node.community,
        "experimental.flood",
        "/bus/v1/call",
        Some(body.clone()),
    );
    req.headers_mut().insert(
        axum::http::header::ACCEPT,
        "text/event-stream".parse().unwrap(),
    );
    let body = body.to_string();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(head_of(&req, body.len()).as_bytes())
        .await
        .unwrap();
    conn.write_all(body.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut head))
        .await
        .expect("the stream starts")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert_eq!(node.bus.in_flight_total(), 1, "the call runs");

    // From here on nothing is read: the socket buffers fill, the server's
    // writes stall, and after `STALL` without progress the call ends.
    let stopped_reading = tokio::time::Instant::now();
    let deadline = stopped_reading + Duration::from_secs(20);
    while node.bus.in_flight_total() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled call still holds its slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stopped_reading.elapsed() >= STALL);
    // And the connection was closed: what was buffered drains to its end.
    let mut rest = Vec::new();
    let drained = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
    assert!(drained.is_ok(), "the server closed the connection");
    stop.cancel();
}

/// A call to `experimental.nobody` by `node.member`, its timeout, target
/// and session headers covered as sent; `tamper` changes the request after.
fn covered_call(
    node: &Node,
    session: &str,
    tamper: impl FnOnce(&mut Request<Body>),
) -> Request<Body> {
    let body = json!({"params": {}, "input": {}});
    let headers = SignedHeaders::sign(
        &node.member,
        node.community,
        "experimental.nobody",
        "1.0",
        &body,
    )
    .unwrap();
    let target = node.own.node_id().full();
    let extras = Extras {
        query: None,
        timeout_ms: Some("3000"),
        target_node: Some(&target),
        session: Some(session),
    };
    let mut req = Request::post("/bus/v1/call")
        .header(request::TIMEOUT_MS, "3000")
        .header(request::TARGET_NODE, &target)
        .header(request::SESSION, session);
    for (name, value) in headers
        .to_pairs()
        .into_iter()
        .chain(extras.covers(&node.member, &headers).unwrap())
    {
        req = req.header(name, value);
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    tamper(&mut req);
    req
}

/// The status, error code and message of an answer.
async fn refusal(node: &Node, req: Request<Body>) -> (StatusCode, String, String) {
    let (status, body, _) = answer(&node.router, req).await;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (status, text(&body["error"]), text(&body["message"]))
}

#[tokio::test]
async fn the_query_string_and_our_headers_are_covered_by_the_signature() {
    let node = node();
    // Unchanged: authenticated (the bus then knows no such capability).
    let (status, code, _) = refusal(&node, covered_call(&node, "chat-1", |_| {})).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    // A session id that is signed but not a plain name is refused as such.
    let (status, code, message) = refusal(&node, covered_call(&node, "two words", |_| {})).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{message}"
    );
    assert!(message.contains("x-hearthnet-session"), "{message}");

    let header = |name: &'static str, value: &str| {
        let value = axum::http::HeaderValue::from_str(value).unwrap();
        move |req: &mut Request<Body>| {
            req.headers_mut().insert(name, value);
        }
    };
    let other_node = node.member.node_id().full();
    type Tamper = Box<dyn FnOnce(&mut Request<Body>)>;
    let cases: Vec<(Tamper, &str)> = vec![
        (
            Box::new(header(request::TIMEOUT_MS, "600000")),
            "X-HearthNet-Timeout-Ms was changed after signing",
        ),
        (
            Box::new(header(request::TARGET_NODE, &other_node)),
            "X-HearthNet-Target-Node was changed after signing",
        ),
        (
            Box::new(header(request::SESSION, "chat-2")),
            "X-HearthNet-Session was changed after signing",
        ),
        (
            Box::new(|req: &mut Request<Body>| {
                req.headers_mut().remove(request::TIMEOUT_MS);
            }),
            "X-HearthNet-Timeout-Ms was removed after signing",
        ),
        (
            Box::new(|req: &mut Request<Body>| {
                req.headers_mut().remove(request::COVERS);
            }),
            "X-HearthNet-Timeout-Ms is not covered by a signature",
        ),
        (
            // The covers rewritten to match a changed timeout: its
            // signature no longer matches.
            Box::new(|req: &mut Request<Body>| {
                req.headers_mut()
                    .insert(request::TIMEOUT_MS, "1".parse().unwrap());
                let target = req.headers()[request::TARGET_NODE]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let forged = Extras {
                    query: None,
                    timeout_ms: Some("1"),
                    target_node: Some(&target),
                    session: Some("chat-1"),
                }
                .covers_text()
                .unwrap();
                req.headers_mut()
                    .insert(request::COVERS, forged.parse().unwrap());
            }),
            "were changed after signing",
        ),
    ];
    for (tamper, why) in cases {
        let (status, code, message) = refusal(&node, covered_call(&node, "chat-1", tamper)).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{why}: {message}"
        );
        assert!(message.contains(why), "{why}: {message}");
    }

    // A v1 request, with none of them, passes as before.
    let v1 = signed(
        &node.member,
        node.community,
        "experimental.nobody",
        "/bus/v1/call",
        Some(json!({"params": {}, "input": {}})),
    );
    assert!(!v1.headers().contains_key(request::COVERS));
    let (status, code, _) = refusal(&node, v1).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    // A timeout added to it is not covered.
    let mut v1 = signed(
        &node.member,
        node.community,
        "experimental.nobody",
        "/bus/v1/call",
        Some(json!({"params": {}, "input": {}})),
    );
    header(request::TIMEOUT_MS, "5")(&mut v1);
    let (status, _, message) = refusal(&node, v1).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        message.contains("X-HearthNet-Timeout-Ms is not covered"),
        "{message}"
    );

    // The query string: as signed it is served; changed, or added to a
    // request signed without one, it is refused naming it.
    let path = "/pubsub/v1/subscribe";
    let query = |q: &str| {
        signed(
            &node.member,
            node.community,
            path,
            &format!("{path}?{q}"),
            None,
        )
    };
    let (status, _, _) = refusal(&node, query("topic=t&last_seq=4")).await;
    assert_eq!(status, StatusCode::OK);
    let mut changed = query("topic=t&last_seq=4");
    *changed.uri_mut() = format!("{path}?topic=other&last_seq=4").parse().unwrap();
    let (status, code, message) = refusal(&node, changed).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert!(
        message.contains("the query string was changed after signing"),
        "{message}"
    );
    let mut added = signed(&node.member, node.community, path, path, None);
    *added.uri_mut() = format!("{path}?topic=t").parse().unwrap();
    let (status, _, message) = refusal(&node, added).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        message.contains("the query string is not covered"),
        "{message}"
    );
}

/// A fetch by `node.member` signed for `text` and declaring its length,
/// with `body` as what is actually sent.
fn fetch_with(node: &Node, text: &str, body: Body) -> Request<Body> {
    let value: Value = serde_json::from_str(text).unwrap();
    let (mut parts, _) = signed(
        &node.member,
        node.community,
        "/sync/v2/fetch",
        "/sync/v2/fetch",
        Some(value),
    )
    .into_parts();
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    Request::from_parts(parts, body)
}

/// A fetch of `n` hashes, as JSON text.
fn fetch_of(n: usize) -> String {
    json!({"hashes": vec!["00"; n]}).to_string()
}

#[tokio::test]
async fn bodies_over_the_node_budget_are_refused_before_they_are_read() {
    const FREE: usize = 1024;
    const TOTAL: usize = 8 * 1024;
    let budget = http::BodyBudget::new(TOTAL, FREE);
    let node = node_with_budget(64 * 1024, Some(budget.clone()));

    // One member's body of ~6 KiB is being read (it holds ~5 KiB of 8).
    let big = fetch_of(1200);
    let share = big.len() - FREE;
    // Its body never comes: the read waits until the task is dropped.
    let slow = Body::from_stream(futures_util::stream::pending::<
        Result<axum::body::Bytes, std::io::Error>,
    >());
    let reading = tokio::spawn(node.router.clone().oneshot(fetch_with(&node, &big, slow)));
    common_wait(|| budget.used() == share).await;

    // Another as large is refused at once, its body unread.
    let (body, read) = watched(serde_json::from_str(&big).unwrap());
    let (status, code, message) = refusal(&node, fetch_with(&node, &big, body)).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "capacity_exceeded"),
        "{message}"
    );
    assert!(
        !read.load(std::sync::atomic::Ordering::SeqCst),
        "its body was read"
    );
    // A small one still goes through: the first KiB of a body is free.
    let small = fetch_of(10);
    let (status, _, _) = refusal(&node, fetch_with(&node, &small, Body::from(small.clone()))).await;
    assert_eq!(status, StatusCode::OK);

    // A chunked body (no declared length) is counted as it arrives and
    // refused once it would go over.
    let chunks = futures_util::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 1024]))),
    );
    let mut chunked = fetch_with(&node, &small, Body::from_stream(chunks));
    chunked.headers_mut().remove(header::CONTENT_LENGTH);
    let (status, code, _) = refusal(&node, chunked).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "capacity_exceeded")
    );
    assert_eq!(budget.used(), share, "the refused body gave its share back");

    // Once the first body is gone, its share is back.
    reading.abort();
    let _ = reading.await;
    common_wait(|| budget.used() == 0).await;
    let (status, _, message) =
        refusal(&node, fetch_with(&node, &big, Body::from(big.clone()))).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    assert_eq!(budget.used(), 0);
}

/// Wait (at most 5 s) until `done` holds.
async fn common_wait(mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "not reached in time");
}

mod gateway;
