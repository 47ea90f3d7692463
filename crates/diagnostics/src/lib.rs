//! The diagnostic capabilities every node offers unless
//! `observability.diagnostics = false`: [`Echo`] and [`EventAppend`].
//!
//! `experimental.echo@1.0` echoes its input,
//! or streams it back as N `token` frames. It exists so a node with no
//! services configured still has something real to call (CLI tests,
//! benchmarks, `hearthnet call` as a smoke test); it is not a feature.
//!
//! Input: `text` (string, required, at most 64 KiB), `repeat` (frames,
//! default 1, at most 10 000), `interval_ms` (pause between frames,
//! default 0, at most 60 000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearthnet_bus::{Call, CallError, Capability, CapabilityDescriptor, Service, Trust};
use serde_json::{Value, json};

pub const ECHO: &str = "experimental.echo";
const MAX_TEXT_BYTES: usize = 64 * 1024;
const MAX_REPEAT: u64 = 10_000;
const MAX_INTERVAL_MS: u64 = 60_000;
/// Enough for 64 concurrent callers (the load benchmark).
const MAX_CONCURRENT: u32 = 64;

pub struct Echo {
    /// Named in every answer, so a caller sees which node served it.
    pub node: hearthnet_base::NodeId,
}

struct EchoInput {
    text: String,
    repeat: u64,
    interval: Duration,
}

fn parse(input: &Value) -> Result<EchoInput, CallError> {
    let text = input
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| CallError::bad_request("input.text (a string) is required"))?;
    if text.len() > MAX_TEXT_BYTES {
        return Err(CallError::bad_request(format!(
            "input.text is over {MAX_TEXT_BYTES} bytes"
        )));
    }
    let number = |key: &str, default: u64, max: u64| -> Result<u64, CallError> {
        match input.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_u64().filter(|n| *n <= max).ok_or_else(|| {
                CallError::bad_request(format!("input.{key} must be an integer from 0 to {max}"))
            }),
        }
    };
    Ok(EchoInput {
        text: text.to_owned(),
        repeat: number("repeat", 1, MAX_REPEAT)?,
        interval: Duration::from_millis(number("interval_ms", 0, MAX_INTERVAL_MS)?),
    })
}

impl Service for Echo {
    fn name(&self) -> &'static str {
        "diagnostics"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let descriptor = CapabilityDescriptor {
            response_schema: Some(json!({
                "type": "object",
                "properties": {"output": {"type": "object", "properties": {"text": {"type": "string"}}}}
            })),
            stream_schema: Some(json!({
                "type": "object",
                "properties": {"text": {"type": "string"}}
            })),
            max_concurrent: MAX_CONCURRENT,
            ..CapabilityDescriptor::new(
                ECHO,
                json!({
                    "type": "object",
                    "required": ["text"],
                    "properties": {
                        "text": {"type": "string", "maxLength": MAX_TEXT_BYTES},
                        "repeat": {"type": "integer", "minimum": 0, "maximum": MAX_REPEAT},
                        "interval_ms": {"type": "integer", "minimum": 0, "maximum": MAX_INTERVAL_MS}
                    }
                }),
            )
        };
        vec![Capability::new(descriptor, &self, Self::echo)]
    }
}

impl Echo {
    async fn echo(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let started = Instant::now();
        let input = parse(&call.input)?;
        let mut sent = 0;
        for i in 0..input.repeat {
            if i > 0 && !input.interval.is_zero() {
                tokio::time::sleep(input.interval).await;
            }
            if call.stream {
                call.frames
                    .send("token", json!({"text": input.text}))
                    .await
                    .map_err(|_| {
                        CallError::new(hearthnet_base::ErrorCode::Partition, "caller gone")
                    })?;
            }
            sent += 1;
        }
        let ms = started.elapsed().as_millis() as u64;
        if call.stream {
            return Ok(json!({"frames": sent, "ms": ms, "node": self.node.short()}));
        }
        let text = input.text.repeat(sent as usize);
        Ok(json!({"output": {"text": text}, "meta": {"ms": ms, "node": self.node.short()}}))
    }
}

/// `experimental.event.append@1.0`, diagnostic: append an event of a known
/// type with the given `data`, authored by this node. Only the node's own
/// key may call it (tests, benchmarks, operators checking sync); services
/// write their own events.
pub const EVENT_APPEND: &str = "experimental.event.append";

pub struct EventAppend {
    pub log: hearthnet_events::EventLog,
    pub key: hearthnet_base::DeviceKey,
}

impl Service for EventAppend {
    fn name(&self) -> &'static str {
        "diagnostics"
    }

    fn capabilities(self: Arc<Self>) -> Vec<Capability> {
        let descriptor = CapabilityDescriptor {
            max_concurrent: 16,
            trust: Trust::SelfOnly,
            idempotent: false,
            ..CapabilityDescriptor::new(
                EVENT_APPEND,
                json!({"type": "object", "required": ["event_type", "data"],
                    "properties": {"event_type": {"type": "string"}, "data": {"type": "object"}}}),
            )
        };
        vec![Capability::new(descriptor, &self, Self::append)]
    }
}

impl EventAppend {
    async fn append(self: Arc<Self>, call: Call) -> Result<Value, CallError> {
        let event_type = call.input["event_type"]
            .as_str()
            .ok_or_else(|| CallError::bad_request("input.event_type (a string) is required"))?
            .to_owned();
        let data = call.input.get("data").cloned().unwrap_or(Value::Null);
        let e = self
            .log
            .append_local(&event_type, data, &self.key)
            .await
            .map_err(|e| CallError::new(e.error_code(), e.to_string()))?;
        Ok(json!({"output": {"event_id": e.event_id, "lamport": e.lamport}, "meta": {}}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_checked() {
        assert!(parse(&json!({"text": "hi"})).is_ok());
        assert!(parse(&json!({})).is_err());
        assert!(parse(&json!({"text": "hi", "repeat": -1})).is_err());
        assert!(parse(&json!({"text": "hi", "repeat": "3"})).is_err());
        assert!(parse(&json!({"text": "hi", "interval_ms": 60_001})).is_err());
        assert!(parse(&json!({"text": "x".repeat(MAX_TEXT_BYTES + 1)})).is_err());
        let echo = Arc::new(Echo {
            node: hearthnet_base::DeviceKey::generate().node_id(),
        });
        for capability in echo.capabilities() {
            capability.descriptor.validate().unwrap();
        }
    }
}
