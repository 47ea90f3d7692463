//! Vectors through the bus: `embed.text@1.0` on whichever node offers it
//! (this one or a neighbour), never a model linked in here (M05 §4.1).
//! What comes back is checked like any neighbour's answer.

use std::time::Duration;

use hearthnet_base::{ErrorCode, TrustLevel};
use hearthnet_bus::{Bus, CallError, InboundCall, Version};
use serde_json::{Value, json};
use tokio::time::Instant;

pub const EMBED_TEXT: &str = "embed.text";
/// Texts per call: well under the contract's 256, so one call stays short.
const BATCH: usize = 32;
/// Dimensions we accept from a provider.
const MAX_DIM: usize = 4096;

pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub model: String,
}

fn bad_answer(what: impl std::fmt::Display) -> CallError {
    CallError::new(
        ErrorCode::Partition,
        format!("the embedding provider's answer is unusable: {what}"),
    )
}

/// Vectors of `texts` by `model` (any model when `None`, then the one the
/// first answer names for the rest), before `deadline`.
pub async fn embed(
    bus: &Bus,
    texts: &[String],
    model: Option<&str>,
    deadline: Instant,
) -> Result<Embedded, CallError> {
    let mut model = model.map(str::to_owned);
    let mut vectors = Vec::with_capacity(texts.len());
    let mut dim = None;
    for batch in texts.chunks(BATCH) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(50) {
            return Err(CallError::new(
                ErrorCode::Timeout,
                "no time left to embed the text",
            ));
        }
        let params = match &model {
            Some(m) => json!({"model": m}),
            None => json!({}),
        };
        let call = InboundCall {
            timeout: Some(left),
            ..InboundCall::new(
                EMBED_TEXT,
                Version::new(1, 0),
                json!({"params": params, "input": {"texts": batch, "normalize": true}}),
                bus.node_id(),
                // The node's own call, as the other services make theirs.
                TrustLevel::Anchor,
            )
        };
        let answer = bus.call(call)?.outcome().await?;
        let named = answer["meta"]["model"]
            .as_str()
            .filter(|m| !m.is_empty() && m.len() <= crate::MAX_MODEL_NAME)
            .ok_or_else(|| bad_answer("meta.model is missing"))?;
        match &model {
            Some(m) if m != named => {
                return Err(bad_answer(format!("asked for {m}, answered by {named}")));
            }
            Some(_) => {}
            None => model = Some(named.to_owned()),
        }
        let got = parse_vectors(&answer["output"]["embeddings"], batch.len())?;
        for v in got {
            if *dim.get_or_insert(v.len()) != v.len() {
                return Err(bad_answer("vectors of different lengths"));
            }
            vectors.push(v);
        }
    }
    Ok(Embedded {
        vectors,
        model: model.unwrap_or_default(),
    })
}

fn parse_vectors(value: &Value, expected: usize) -> Result<Vec<Vec<f32>>, CallError> {
    let rows = value
        .as_array()
        .filter(|rows| rows.len() == expected)
        .ok_or_else(|| bad_answer(format!("not {expected} vectors")))?;
    rows.iter()
        .map(|row| {
            let row = row
                .as_array()
                .filter(|r| !r.is_empty() && r.len() <= MAX_DIM)
                .ok_or_else(|| bad_answer(format!("a vector is not 1 to {MAX_DIM} numbers")))?;
            row.iter()
                .map(|x| {
                    x.as_f64()
                        .map(|x| x as f32)
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| bad_answer("a vector holds something not a number"))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        assert_eq!(
            parse_vectors(&json!([[1.0, 2], [0.5, -1]]), 2).unwrap(),
            [vec![1.0, 2.0], vec![0.5, -1.0]]
        );
        for bad in [
            json!([[1.0]]),
            json!([[1.0], "x"]),
            json!([[], [1.0]]),
            json!([[1.0], [null]]),
            json!([[1e300], [1.0]]),
            json!({"0": [1.0]}),
        ] {
            assert!(parse_vectors(&bad, 2).is_err(), "{bad}");
        }
    }
}
