//! A client of a running node's local HTTP API (SYSTEM.md item 4): every
//! request signed with the device key as Contract §5.1 says, errors decoded
//! into the contract's codes, streams read frame by frame. What a request
//! carries beyond the signed v1 envelope (query string, timeout, target
//! node) is covered by a second signature (`request::Extras`).
//!
//! Blocking on purpose: the CLI starts in a millisecond and exits, and a
//! thread waiting on a socket is all it needs. The node itself uses an
//! async stack; this crate must never depend on it.

mod sse;

use std::io::BufReader;
use std::net::SocketAddr;
use std::time::Duration;

use hearthnet_base::request::{self, Extras, SignedHeaders};
use hearthnet_base::{CommunityId, DeviceKey, ErrorCode};
use hearthnet_config::LoadedConfig;
use hearthnet_config::runtime::RuntimeInfo;
use hearthnet_identity::{KeyError, KeyStore};
use hearthnet_wire::DecodeError;
use hearthnet_wire::local::{self, names};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use sse::{Frame, FrameReader};

/// A wire error as the node reported it (Contract §5.4).
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u64>,
    pub body: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no HearthNet node is running at {addr}; start one with `hearthnet run`")]
    NotRunning { addr: SocketAddr },
    #[error("{}: {}", .0.code, .0.message)]
    Wire(WireError),
    #[error("the node at {addr} gave an unusable response: {reason}")]
    BadResponse { addr: SocketAddr, reason: String },
    /// JSON, but not the document asked for: names the field.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("this node has no community yet; run `hearthnet init`")]
    NoCommunity,
    #[error("cannot sign the request: {0}")]
    Sign(#[from] hearthnet_base::SignatureError),
}

/// How long a plain endpoint may take to start answering.
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct LocalClient {
    addr: SocketAddr,
    key: DeviceKey,
    community: CommunityId,
    agent: ureq::Agent,
    /// Calls go to this node only (see `request::TARGET_NODE`).
    target: Option<String>,
    /// Calls continue this conversation (see `request::SESSION`).
    session: Option<String>,
}

/// A call's answer: one JSON document, or a stream of frames.
pub enum CallReply {
    Json(Value),
    Stream(FrameReader<Box<dyn std::io::BufRead + Send>>),
}

impl LocalClient {
    /// The node this configuration describes: its address from the runtime
    /// file of a running node, else the configured API port.
    pub fn for_config(loaded: &LoadedConfig) -> Result<Self, ClientError> {
        let paths = loaded.paths();
        let key = KeyStore::new(&paths.keys_dir).load()?;
        let community = loaded
            .config
            .community_id()
            .ok_or(ClientError::NoCommunity)?;
        let addr = RuntimeInfo::read(&paths.runtime_dir).map_or_else(
            || {
                let t = &loaded.config.transport;
                SocketAddr::new(t.api_host, t.api_port)
            },
            |info| info.api,
        );
        Ok(Self::new(addr, key, community))
    }

    pub fn new(addr: SocketAddr, key: DeviceKey, community: CommunityId) -> Self {
        // A request the node does not answer in time is not waited on
        // forever; capability calls set their own deadline instead.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_recv_response(Some(DEFAULT_RESPONSE_TIMEOUT))
            .build()
            .into();
        Self {
            addr,
            key,
            community,
            agent,
            target: None,
            session: None,
        }
    }

    /// Have every call served by `node` (its full NodeID) or not at all.
    pub fn with_target(mut self, node: String) -> Self {
        self.target = Some(node);
        self
    }

    /// Have every call continue the conversation `session`: served by the
    /// provider of its last call while that one can.
    pub fn with_session(mut self, session: String) -> Self {
        self.session = Some(session);
        self
    }

    /// The same client, giving up on any answer after `timeout` (for
    /// diagnostics, which must not hang on a wedged or foreign listener).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_recv_body(Some(timeout))
            .build()
            .into();
        self
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A signed GET of a plain endpoint returning JSON (`path` without
    /// query string).
    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ClientError> {
        let resp = self.signed_get(path, query)?;
        self.json_reply(resp)
    }

    /// A signed GET of a local API document, decoded as `T` (`document`
    /// names it in errors).
    pub fn get_document<T: DeserializeOwned>(
        &self,
        document: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        Ok(hearthnet_wire::from_value(
            document,
            self.get(path, query)?,
        )?)
    }

    /// `GET /local/v1/status` (own key only).
    pub fn status(&self) -> Result<local::Status, ClientError> {
        self.get_document(names::STATUS, "/local/v1/status", &[])
    }

    /// `GET /local/v1/caps` (own key only).
    pub fn caps(&self) -> Result<local::Caps, ClientError> {
        self.get_document(names::CAPS, "/local/v1/caps", &[])
    }

    /// `GET /trace/recent`: the newest `n` calls, of `capability` only if
    /// given, oldest first.
    pub fn traces(&self, n: usize, capability: Option<&str>) -> Result<local::Traces, ClientError> {
        let mut query = vec![("n", n.to_string())];
        if let Some(c) = capability {
            query.push(("capability", c.to_owned()));
        }
        self.get_document(names::TRACES, "/trace/recent", &query)
    }

    /// `POST /local/v1/ui/link` (own key only): a fresh one-time login
    /// link to the web UI.
    pub fn ui_link(&self) -> Result<local::UiLink, ClientError> {
        let answer = self.post("/local/v1/ui/link", &Value::Object(Default::default()))?;
        Ok(hearthnet_wire::from_value(names::UI_LINK, answer)?)
    }

    /// `POST /local/v1/ui/pair` (own key only): a pairing code for a
    /// device on the LAN.
    pub fn ui_pairing(&self) -> Result<local::UiPairing, ClientError> {
        let answer = self.post("/local/v1/ui/pair", &Value::Object(Default::default()))?;
        Ok(hearthnet_wire::from_value(names::UI_PAIRING, answer)?)
    }

    /// `POST /local/v1/sync`: one sync round now.
    pub fn sync_round(
        &self,
        request: &hearthnet_wire::peer::SyncNow,
    ) -> Result<local::SyncRound, ClientError> {
        let body = serde_json::to_value(request).map_err(|e| self.bad(e.to_string()))?;
        let answer = self.post("/local/v1/sync", &body)?;
        Ok(hearthnet_wire::from_value(names::SYNC_ROUND, answer)?)
    }

    /// `GET /health` (unsigned).
    pub fn health(&self) -> Result<local::Health, ClientError> {
        let (_, body) = self.get_unsigned("/health")?;
        Ok(hearthnet_wire::from_value(names::HEALTH, body)?)
    }

    /// `GET /ready` (unsigned): the HTTP status (200 ready, 503 not) and
    /// the details.
    pub fn readiness(&self) -> Result<(u16, local::Readiness), ClientError> {
        let (status, body) = self.get_unsigned("/ready")?;
        Ok((status, hearthnet_wire::from_value(names::READY, body)?))
    }

    /// A signed GET of an endpoint returning text (`/metrics`).
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let resp = self.signed_get(path, &[])?;
        let status = resp.status().as_u16();
        if status != 200 {
            return self.json_reply(resp).map(|v| v.to_string());
        }
        resp.into_body()
            .read_to_string()
            .map_err(|e| self.bad(format!("reading the body: {e}")))
    }

    fn signed_get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        // Encoded here rather than by the HTTP library, so that what is
        // signed is exactly what goes on the wire.
        let query = encode_query(query);
        let url = match &query {
            Some(q) => format!("{}?{q}", self.url(path)),
            None => self.url(path),
        };
        let req = self.agent.get(url);
        let req = self.signed(
            req,
            path,
            query.as_deref(),
            &Value::Object(Default::default()),
        )?;
        req.call().map_err(|e| self.transport_error(e))
    }

    /// A signed POST of a JSON body to a plain endpoint.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let req = self
            .agent
            .post(self.url(path))
            .header("content-type", "application/json");
        let req = self.signed(req, path, None, body)?;
        let bytes = serde_json::to_vec(body).map_err(|e| self.bad(e.to_string()))?;
        let resp = req.send(&bytes[..]).map_err(|e| self.transport_error(e))?;
        self.json_reply(resp)
    }

    /// Add the §5.1 headers for a plain endpoint (`capability` = path),
    /// and the covers of `query` (as sent) if there is one.
    fn signed<B>(
        &self,
        mut req: ureq::RequestBuilder<B>,
        path: &str,
        query: Option<&str>,
        body: &Value,
    ) -> Result<ureq::RequestBuilder<B>, ClientError> {
        let headers = SignedHeaders::sign(
            &self.key,
            self.community,
            path,
            request::ENDPOINT_VERSION,
            body,
        )?;
        let extras = Extras {
            query,
            ..Extras::default()
        };
        let covers = extras.covers(&self.key, &headers)?;
        for (name, value) in headers.to_pairs().into_iter().chain(covers) {
            req = req.header(name, value);
        }
        Ok(req)
    }

    /// An unsigned GET (`/health`, `/ready`, `/manifest`), returning the
    /// status code and body.
    pub fn get_unsigned(&self, path: &str) -> Result<(u16, Value), ClientError> {
        let resp = self
            .agent
            .get(self.url(path))
            .call()
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status().as_u16();
        let body = self.read_json(resp)?;
        Ok((status, body))
    }

    /// Call `capability@version` through `/bus/v1/call`.
    pub fn call(
        &self,
        capability: &str,
        version: &str,
        body: &Value,
        stream: bool,
        timeout: Option<Duration>,
    ) -> Result<CallReply, ClientError> {
        self.call_signed_by(&self.key, capability, version, body, stream, timeout)
    }

    /// Like [`call`](Self::call), signed by `signer` instead of the device
    /// key (tests of refused callers).
    pub fn call_signed_by(
        &self,
        signer: &DeviceKey,
        capability: &str,
        version: &str,
        body: &Value,
        stream: bool,
        timeout: Option<Duration>,
    ) -> Result<CallReply, ClientError> {
        let headers = SignedHeaders::sign(signer, self.community, capability, version, body)?;
        self.send_call_as(signer, &headers, body, stream, timeout)
    }

    /// Send a call with the given headers as they are (tests of replays);
    /// a timeout or target node is covered with the client's own key.
    pub fn send_call(
        &self,
        headers: &SignedHeaders,
        body: &Value,
        stream: bool,
        timeout: Option<Duration>,
    ) -> Result<CallReply, ClientError> {
        self.send_call_as(&self.key, headers, body, stream, timeout)
    }

    fn send_call_as(
        &self,
        signer: &DeviceKey,
        headers: &SignedHeaders,
        body: &Value,
        stream: bool,
        timeout: Option<Duration>,
    ) -> Result<CallReply, ClientError> {
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        // The capability's deadline (ours or its own) decides, not the
        // client's response timeout; long-polls pass theirs explicitly.
        let mut req = self
            .agent
            .post(self.url("/bus/v1/call"))
            .config()
            .timeout_recv_response(timeout.map(|t| t + Duration::from_secs(5)))
            .build()
            .header("accept", accept)
            .header("content-type", "application/json");
        let timeout_ms = timeout.map(|t| t.as_millis().to_string());
        let extras = Extras {
            query: None,
            timeout_ms: timeout_ms.as_deref(),
            target_node: self.target.as_deref(),
            session: self.session.as_deref(),
        };
        let covers = extras.covers(signer, headers)?;
        for (name, value) in headers.to_pairs().into_iter().chain(covers) {
            req = req.header(name, value);
        }
        if let Some(t) = &timeout_ms {
            req = req.header(request::TIMEOUT_MS, t);
        }
        if let Some(node) = &self.target {
            req = req.header(request::TARGET_NODE, node);
        }
        if let Some(session) = &self.session {
            req = req.header(request::SESSION, session);
        }
        let bytes = serde_json::to_vec(body).map_err(|e| self.bad(e.to_string()))?;
        let resp = req.send(&bytes[..]).map_err(|e| self.transport_error(e))?;
        let is_stream = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if resp.status().as_u16() == 200 && is_stream {
            let reader: Box<dyn std::io::BufRead + Send> =
                Box::new(BufReader::new(resp.into_body().into_reader()));
            return Ok(CallReply::Stream(FrameReader::new(reader)));
        }
        self.json_reply(resp).map(CallReply::Json)
    }

    fn json_reply(&self, resp: ureq::http::Response<ureq::Body>) -> Result<Value, ClientError> {
        let status = resp.status().as_u16();
        let body = self.read_json(resp)?;
        if status == 200 {
            return Ok(body);
        }
        Err(ClientError::Wire(self.wire_error(status, body)?))
    }

    fn read_json(&self, resp: ureq::http::Response<ureq::Body>) -> Result<Value, ClientError> {
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| self.bad(format!("reading the body: {e}")))?;
        serde_json::from_str(&text)
            .map_err(|e| self.bad(format!("not JSON ({e}): {}", snippet(&text))))
    }

    /// The contract error an HTTP error status carries; its code must be
    /// one the contract sends with that status (§5.5).
    fn wire_error(&self, status: u16, body: Value) -> Result<WireError, ClientError> {
        let error = parse_wire_error(&body)
            .ok_or_else(|| self.bad(format!("HTTP {status} without a contract error: {body}")))?;
        if error.code.http_status() != status {
            return Err(self.bad(format!(
                "HTTP {status} with error `{}`, which the contract sends with HTTP {}",
                error.code,
                error.code.http_status()
            )));
        }
        Ok(error)
    }

    fn bad(&self, reason: String) -> ClientError {
        ClientError::BadResponse {
            addr: self.addr,
            reason,
        }
    }

    fn transport_error(&self, e: ureq::Error) -> ClientError {
        match e {
            ureq::Error::Io(ref io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::NotFound
                ) =>
            {
                ClientError::NotRunning { addr: self.addr }
            }
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                ClientError::NotRunning { addr: self.addr }
            }
            other => self.bad(other.to_string()),
        }
    }
}

/// Decode a contract error body (§5.4) or `error` frame.
pub fn parse_wire_error(body: &Value) -> Option<WireError> {
    let code = body.get("error")?.as_str()?.parse().ok()?;
    Some(WireError {
        code,
        message: body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        retry_after_ms: body.get("retry_after_ms").and_then(Value::as_u64),
        body: body.clone(),
    })
}

fn snippet(text: &str) -> String {
    text.chars().take(200).collect()
}

/// `pairs` as a query string (`None` for none): names and values
/// percent-encoded but for RFC 3986's unreserved characters.
fn encode_query(pairs: &[(&str, String)]) -> Option<String> {
    fn encode(text: &str, out: &mut String) {
        for byte in text.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(name, &mut out);
        out.push('=');
        encode(value, &mut out);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_encoded_as_it_is_signed_and_sent() {
        assert_eq!(encode_query(&[]), None);
        let q = encode_query(&[
            ("n", "5".into()),
            ("capability", "llm.chat & more/ü".into()),
        ]);
        assert_eq!(
            q.as_deref(),
            Some("n=5&capability=llm.chat%20%26%20more%2F%C3%BC")
        );
    }
}
