//! OpenAI's documents ⇄ the contract's (§4.1 `llm.chat`, §4.3
//! `embed.text`), as pure functions: no IO, no bus, no clock (the caller
//! hands in ids and times).
//!
//! Requests are read field by field, each bounded and named when refused.
//! Fields that would change the answer in a way the contract cannot
//! honour (tools, `n` > 1, log-probabilities, penalties, JSON mode,
//! token-id input) are refused rather than ignored; fields that change
//! nothing here (`user`, `metadata`, `store`, `service_tier`, …) are
//! ignored, as OpenAI-compatible servers do.

use hearthnet_base::request::SessionId;
use hearthnet_wire::local::CapabilityEntry;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::GatewayError;

pub const LLM_CHAT: &str = "llm.chat";
pub const EMBED_TEXT: &str = "embed.text";

/// The longest model id read: ids are names, not documents.
pub const MAX_MODEL_CHARS: usize = 256;
/// Most messages in a conversation: more than any context holds.
pub const MAX_MESSAGES: usize = 1024;
/// Most content parts in one message.
pub const MAX_PARTS: usize = 256;
/// Most stop sequences: OpenAI's own limit.
pub const MAX_STOP: usize = 4;
/// Most inputs in one embeddings request: OpenAI's own limit.
pub const MAX_EMBED_INPUTS: usize = 2048;
/// Most texts in one `embed.text` call (Contract §4.3): a larger request
/// is sent as several calls.
pub const EMBED_BATCH: usize = 256;

/// A chat completion request, translated.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatCall {
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    /// The contract body, `{"params": {"model"}, "input": {…}}`.
    pub body: Value,
    /// The conversation's sticky session ([`conversation_session`]).
    pub session: Option<SessionId>,
}

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<Value>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<Value>,
    seed: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<u64>,
    tools: Option<Vec<Value>>,
    functions: Option<Vec<Value>>,
    response_format: Option<ResponseFormat>,
    logprobs: Option<bool>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    logit_bias: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
}

/// Decode `value` as `T`, a refusal naming the field.
fn decode<T: serde::de::DeserializeOwned>(
    document: &'static str,
    value: Value,
) -> Result<T, GatewayError> {
    hearthnet_wire::from_value(document, value).map_err(|e| GatewayError::malformed(e.to_string()))
}

/// `POST /v1/chat/completions`' body as an `llm.chat` call.
pub fn chat_call(request: Value) -> Result<ChatCall, GatewayError> {
    let r: ChatRequest = decode("the chat completion request", request)?;
    let model = model_id(r.model)?;
    if r.n.is_some_and(|n| n != 1) {
        return Err(GatewayError::invalid(
            "n",
            "n must be 1: this gateway makes one choice per request (send several requests for more)",
        ));
    }
    if r.tools.is_some_and(|t| !t.is_empty()) || r.functions.is_some_and(|f| !f.is_empty()) {
        return Err(GatewayError::invalid(
            "tools",
            "tools and functions are not supported: the community's models answer in text only",
        ));
    }
    if let Some(format) = r.response_format.filter(|f| f.kind != "text") {
        return Err(GatewayError::invalid(
            "response_format",
            format!(
                "response_format `{}` is not supported: only `text`",
                format.kind
            ),
        ));
    }
    if r.logprobs == Some(true) {
        return Err(GatewayError::invalid(
            "logprobs",
            "logprobs are not supported: leave logprobs unset or false",
        ));
    }
    for (name, penalty) in [
        ("frequency_penalty", r.frequency_penalty),
        ("presence_penalty", r.presence_penalty),
    ] {
        if penalty.is_some_and(|p| p != 0.0) {
            return Err(GatewayError::invalid(
                name,
                format!("{name} is not supported: leave it unset or 0"),
            ));
        }
    }
    if r.logit_bias.is_some_and(|b| !b.is_empty()) {
        return Err(GatewayError::invalid(
            "logit_bias",
            "logit_bias is not supported: leave it unset or empty",
        ));
    }
    if r.messages.is_empty() || r.messages.len() > MAX_MESSAGES {
        return Err(GatewayError::invalid(
            "messages",
            format!(
                "messages must hold 1 to {MAX_MESSAGES} messages, not {}",
                r.messages.len()
            ),
        ));
    }
    let messages = r
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;

    let session = conversation_session(&model, &messages);
    let mut input = Map::new();
    input.insert("messages".into(), Value::Array(messages));
    // The newer name wins, as in OpenAI's API.
    if let Some(n) = r.max_completion_tokens.or(r.max_tokens) {
        input.insert("max_tokens".into(), json!(n));
    }
    if let Some(t) = r.temperature {
        input.insert("temperature".into(), json!(t));
    }
    if let Some(p) = r.top_p {
        input.insert("top_p".into(), json!(p));
    }
    if let Some(stop) = r.stop.map(stop_sequences).transpose()?
        && !stop.is_empty()
    {
        input.insert("stop".into(), json!(stop));
    }
    if let Some(seed) = r.seed {
        input.insert("seed".into(), json!(seed));
    }
    Ok(ChatCall {
        session,
        body: json!({"params": {"model": model}, "input": input}),
        model,
        stream: r.stream.unwrap_or(false),
        include_usage: r.stream_options.and_then(|o| o.include_usage) == Some(true),
    })
}

/// The sticky session of a conversation (M03 §5.6). OpenAI's clients
/// send the whole conversation with every turn and no id for it, so its
/// opening names it: the model and the messages up to the first user
/// message. Every turn then goes to the provider of the turn before,
/// which may still hold the conversation's context.
pub fn conversation_session(model: &str, messages: &[Value]) -> Option<SessionId> {
    let opening = messages
        .iter()
        .position(|m| m["role"] == "user")
        .map_or(messages, |first_user| &messages[..=first_user]);
    let mut hash = blake3::Hasher::new();
    hash.update(model.as_bytes());
    hash.update(&[0]);
    hash.update(Value::from(opening.to_vec()).to_string().as_bytes());
    let digest = hash.finalize().to_hex();
    SessionId::parse(&format!("oai-{}", &digest[..32])).ok()
}

fn model_id(model: String) -> Result<String, GatewayError> {
    if model.is_empty() || model.chars().count() > MAX_MODEL_CHARS {
        return Err(GatewayError::invalid(
            "model",
            format!("model must be 1 to {MAX_MODEL_CHARS} characters: one of `GET /v1/models`"),
        ));
    }
    Ok(model)
}

/// One message as the contract has it: `{"role", "content"}` with text
/// content. OpenAI's `developer` role is its newer name for `system`.
fn message(i: usize, m: &Value) -> Result<Value, GatewayError> {
    let param = format!("messages[{i}]");
    let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
        GatewayError::invalid(&param, format!("{param}.role (a string) is required"))
    })?;
    let role = match role {
        "system" | "developer" => "system",
        "user" => "user",
        "assistant" => "assistant",
        "tool" | "function" => {
            return Err(GatewayError::invalid(
                &param,
                format!("{param}: the role `{role}` is not supported: this gateway has no tools"),
            ));
        }
        other => {
            return Err(GatewayError::invalid(
                &param,
                format!(
                    "{param}: the role `{other}` is not one of system, developer, user, assistant"
                ),
            ));
        }
    };
    let content = match m.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => text_parts(&param, parts)?,
        None | Some(Value::Null) => {
            return Err(GatewayError::invalid(
                &param,
                format!("{param}.content is missing: every message needs text"),
            ));
        }
        Some(_) => {
            return Err(GatewayError::invalid(
                &param,
                format!("{param}.content must be a string or an array of text parts"),
            ));
        }
    };
    Ok(json!({"role": role, "content": content}))
}

/// The text of content parts, joined by newlines (as OpenAI-compatible
/// servers do); a part of another type is refused.
fn text_parts(param: &str, parts: &[Value]) -> Result<String, GatewayError> {
    if parts.len() > MAX_PARTS {
        return Err(GatewayError::invalid(
            param,
            format!("{param}.content has more than {MAX_PARTS} parts"),
        ));
    }
    let texts = parts
        .iter()
        .enumerate()
        .map(|(j, part)| {
            let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
            match (kind, part.get("text").and_then(Value::as_str)) {
                ("text", Some(text)) => Ok(text),
                ("text", None) => Err(GatewayError::invalid(
                    param,
                    format!("{param}.content[{j}].text (a string) is required"),
                )),
                _ => Err(GatewayError::invalid(
                    param,
                    format!(
                        "{param}.content[{j}] is of type `{kind}`: only text parts are supported"
                    ),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(texts.join("\n"))
}

fn stop_sequences(stop: Value) -> Result<Vec<String>, GatewayError> {
    let refusal = || {
        GatewayError::invalid(
            "stop",
            format!("stop must be a string or an array of at most {MAX_STOP} strings"),
        )
    };
    match stop {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) if items.len() <= MAX_STOP => items
            .into_iter()
            .map(|s| match s {
                Value::String(s) => Ok(s),
                _ => Err(refusal()),
            })
            .collect(),
        _ => Err(refusal()),
    }
}

/// OpenAI's `finish_reason` for the contract's `meta.stop_reason`: only
/// running out of tokens is `length`; the end of the answer, a stop
/// sequence and a cancellation all stopped the text where it is.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        _ => "stop",
    }
}

/// The contract's `meta` of a chat answer (or a stream's `done` frame).
#[derive(Debug, Default, Deserialize)]
struct ChatMeta {
    #[serde(default)]
    tokens_in: u64,
    #[serde(default)]
    tokens_out: u64,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChatAnswer {
    output: ChatOutput,
    #[serde(default)]
    meta: ChatMeta,
}

#[derive(Deserialize)]
struct ChatOutput {
    message: AnswerMessage,
}

#[derive(Deserialize)]
struct AnswerMessage {
    content: String,
}

fn chat_answer(answer: &Value) -> Result<ChatAnswer, GatewayError> {
    ChatAnswer::deserialize(answer).map_err(|e| {
        GatewayError::bad_answer(format!(
            "the provider's llm.chat answer is not the contract's: {e}"
        ))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    fn of(meta: &ChatMeta) -> Self {
        Self {
            prompt_tokens: meta.tokens_in,
            completion_tokens: meta.tokens_out,
            total_tokens: meta.tokens_in + meta.tokens_out,
        }
    }
}

/// What identifies one completion in every document about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// `chatcmpl-` and the call's trace id.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    pub model: String,
}

impl Completion {
    /// The `chat.completion` for a non-stream `llm.chat` answer.
    pub fn answer(&self, answer: &Value) -> Result<Value, GatewayError> {
        let a = chat_answer(answer)?;
        Ok(json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": a.output.message.content},
                "logprobs": null,
                "finish_reason": finish_reason(a.meta.stop_reason.as_deref()),
            }],
            "usage": Usage::of(&a.meta),
        }))
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    /// The first chunk of a stream: the role, before any text.
    pub fn first_chunk(&self) -> Value {
        self.chunk(json!({"role": "assistant", "content": ""}), None)
    }

    /// A chunk for one `token` frame's data, if it carries text.
    pub fn token_chunk(&self, frame: &Value) -> Option<Value> {
        let text = frame.get("text").and_then(Value::as_str)?;
        Some(self.chunk(json!({"content": text}), None))
    }

    /// The chunks that end a stream, from the call's outcome: the
    /// `done` frame's meta when the provider streamed (`streamed`), else
    /// its whole answer, whose text becomes one chunk. Then the
    /// `finish_reason`, and with `include_usage` a chunk of the usage
    /// alone, as OpenAI sends it.
    pub fn last_chunks(
        &self,
        outcome: &Value,
        streamed: bool,
        include_usage: bool,
    ) -> Result<Vec<Value>, GatewayError> {
        let mut chunks = Vec::new();
        let meta = if streamed {
            ChatMeta::deserialize(outcome).map_err(|e| {
                GatewayError::bad_answer(format!(
                    "the provider's llm.chat done frame is not the contract's: {e}"
                ))
            })?
        } else {
            let a = chat_answer(outcome)?;
            chunks.push(self.chunk(json!({"content": a.output.message.content}), None));
            a.meta
        };
        chunks.push(self.chunk(json!({}), Some(finish_reason(meta.stop_reason.as_deref()))));
        if include_usage {
            let mut usage = self.chunk(json!({}), None);
            usage["choices"] = json!([]);
            usage["usage"] = json!(Usage::of(&meta));
            chunks.push(usage);
        }
        Ok(chunks)
    }
}

/// How embeddings are sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON numbers.
    Float,
    /// Base64 of the vector's little-endian f32 bytes, as OpenAI sends it
    /// (its Python client asks for this by default).
    Base64,
}

/// An embeddings request, translated.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedCall {
    pub model: String,
    pub texts: Vec<String>,
    pub encoding: Encoding,
    /// `dimensions`: the model's own dimension is the only one served.
    pub dimensions: Option<u64>,
}

#[derive(Deserialize)]
struct EmbedRequest {
    model: String,
    input: Value,
    encoding_format: Option<String>,
    dimensions: Option<u64>,
}

/// `POST /v1/embeddings`' body.
pub fn embed_call(request: Value) -> Result<EmbedCall, GatewayError> {
    let r: EmbedRequest = decode("the embeddings request", request)?;
    let model = model_id(r.model)?;
    let encoding = match r.encoding_format.as_deref() {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(GatewayError::invalid(
                "encoding_format",
                format!("encoding_format `{other}` is not one of float, base64"),
            ));
        }
    };
    let token_ids = || {
        GatewayError::invalid(
            "input",
            "input as token ids is not supported: send the text itself (LangChain: OpenAIEmbeddings(check_embedding_ctx_length=False))",
        )
    };
    let texts = match r.input {
        Value::String(text) => vec![text],
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_EMBED_INPUTS {
                return Err(GatewayError::invalid(
                    "input",
                    format!(
                        "input must hold 1 to {MAX_EMBED_INPUTS} texts, not {}",
                        items.len()
                    ),
                ));
            }
            items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text),
                    Value::Number(_) | Value::Array(_) => Err(token_ids()),
                    _ => Err(GatewayError::invalid(
                        "input",
                        "input must be a string or an array of strings",
                    )),
                })
                .collect::<Result<_, _>>()?
        }
        _ => {
            return Err(GatewayError::invalid(
                "input",
                "input must be a string or an array of strings",
            ));
        }
    };
    Ok(EmbedCall {
        model,
        texts,
        encoding,
        dimensions: r.dimensions,
    })
}

/// `dimensions`, if asked, against what the model makes.
pub fn dimensions_fit(asked: Option<u64>, model: &str, dim: u64) -> Result<(), GatewayError> {
    match asked {
        Some(asked) if asked != dim => Err(GatewayError::invalid(
            "dimensions",
            format!(
                "the model `{model}` makes vectors of {dim} dimensions: leave dimensions unset or {dim}"
            ),
        )),
        _ => Ok(()),
    }
}

/// The contract body of one `embed.text` call.
pub fn embed_body(model: &str, texts: &[String]) -> Value {
    json!({"params": {"model": model}, "input": {"texts": texts}})
}

#[derive(Deserialize)]
struct EmbedAnswer {
    output: EmbedOutput,
    #[serde(default)]
    meta: EmbedMeta,
}

#[derive(Deserialize)]
struct EmbedOutput {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Default, Deserialize)]
struct EmbedMeta {
    /// Not in the contract's `embed.text` meta; counted where a provider
    /// reports it.
    #[serde(default)]
    tokens_in: u64,
}

/// The vectors of an `embed.text` answer for `texts` texts, and the input
/// tokens its provider reports (0 if it reports none).
pub fn embed_answer(answer: &Value, texts: usize) -> Result<(Vec<Vec<f32>>, u64), GatewayError> {
    let a = EmbedAnswer::deserialize(answer).map_err(|e| {
        GatewayError::bad_answer(format!(
            "the provider's embed.text answer is not the contract's: {e}"
        ))
    })?;
    if a.output.embeddings.len() != texts {
        return Err(GatewayError::bad_answer(format!(
            "the provider's embed.text answer has {} vectors for {texts} texts",
            a.output.embeddings.len()
        )));
    }
    Ok((a.output.embeddings, a.meta.tokens_in))
}

/// OpenAI's embedding list.
pub fn embedding_list(model: &str, vectors: &[Vec<f32>], encoding: Encoding, tokens: u64) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = match encoding {
                Encoding::Float => json!(v),
                Encoding::Base64 => {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(data_encoding::BASE64.encode(&bytes))
                }
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
}

/// The model ids an entry offers: its `params.model` and every entry of
/// `params.models` (Contract §4.1's catalogue).
fn models_of(entry: &CapabilityEntry) -> impl Iterator<Item = &str> {
    let one = entry.params.get("model").and_then(Value::as_str);
    let many = entry
        .params
        .get("models")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    one.into_iter().chain(many)
}

/// Entries of `capability` at major version 1, the version the gateway
/// calls.
fn offers<'a>(
    entries: &'a [CapabilityEntry],
    capability: &'static str,
) -> impl Iterator<Item = &'a CapabilityEntry> {
    entries
        .iter()
        .filter(move |e| e.name == capability && e.version.split('.').next() == Some("1"))
}

/// `GET /v1/models`: every model offered for chat or embeddings, here or
/// by a neighbour, once, sorted. `created` is 0: a model's date is not
/// known on the bus.
pub fn model_list(entries: &[CapabilityEntry]) -> Value {
    let data: Vec<Value> = model_ids(entries).into_iter().map(model_object).collect();
    json!({"object": "list", "data": data})
}

/// The ids of every model offered for chat or embeddings, once, sorted.
pub fn model_ids(entries: &[CapabilityEntry]) -> Vec<&str> {
    let mut ids: Vec<&str> = offers(entries, LLM_CHAT)
        .chain(offers(entries, EMBED_TEXT))
        .flat_map(models_of)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// One entry of the model list.
pub fn model_object(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "hearthnet"})
}

/// The params of an entry offering `model` for `capability`, or
/// `model_not_found` naming those that are offered.
pub fn find_offer<'a>(
    entries: &'a [CapabilityEntry],
    capability: &'static str,
    model: &str,
) -> Result<&'a Value, GatewayError> {
    if let Some(entry) = offers(entries, capability).find(|e| models_of(e).any(|m| m == model)) {
        return Ok(&entry.params);
    }
    let mut offered: Vec<&str> = offers(entries, capability).flat_map(models_of).collect();
    offered.sort_unstable();
    offered.dedup();
    let what = if capability == LLM_CHAT {
        "chat completions"
    } else {
        "embeddings"
    };
    let offered = if offered.is_empty() {
        "none now".to_owned()
    } else {
        offered.join(", ")
    };
    Err(GatewayError::model_not_found(format!(
        "no member of the community serves the model `{model}` for {what}; those that do: {offered}"
    )))
}

#[cfg(test)]
mod tests;
