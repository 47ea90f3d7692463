//! `hearthnet ask [--corpus NAME] [--model NAME] [--k N] QUESTION`:
//! retrieval-augmented answers. `rag.query` finds passages, `llm.chat`
//! answers from them alone, citing them by number, and the numbered
//! sources follow the answer so a reader can check it.
//!
//! When retrieval finds nothing that matches, the model is not asked at
//! all: a small model handed unrelated passages answers anyway, and an
//! invented answer with citations is worse than none. "Matches" for a
//! hybrid query means found by both keyword (BM25) and meaning (vector)
//! search; see [`relevant`].

use std::path::Path;

use anyhow::anyhow;
use hearthnet_client::{CallReply, LocalClient};
use hearthnet_config::Env;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{call, node_client, rag};
use crate::cli::AskArgs;
use crate::exit::{CliError, CliResult, ExitStatus};

/// The node's bound on `rag.query`'s `input.query` (M05).
const MAX_QUESTION_CHARS: usize = 2048;
/// Of each passage, at most this much goes into the prompt: chunks are
/// about 180 tokens, and twenty of these stay far below `llm.chat`'s
/// message limit whatever the index holds.
const MAX_PASSAGE_CHARS: usize = 2400;
/// RRF scores are normalised so 1.0 is first place in every ranked list.
/// A chunk only one of the two lists found scores at most 0.5 (first
/// place in it); one both found scores above 0.55 (ranks ≤ 50 in each).
/// Vector search always returns its nearest chunks, however far, so in a
/// hybrid query only chunks above this floor share words with the
/// question and count as relevant.
const HYBRID_FLOOR: f64 = 0.5;

const INSTRUCTION: &str = "Answer the question using only the numbered sources below. \
Cite the sources you use by their number in brackets, like [1]. \
If the sources do not contain the answer, say that you do not know.";

#[derive(Debug, Deserialize)]
struct Found {
    chunks: Vec<Passage>,
}

#[derive(Debug, Deserialize)]
struct Passage {
    score: f64,
    #[serde(default)]
    text: String,
    metadata: PassageSource,
}

#[derive(Debug, Deserialize)]
struct PassageSource {
    doc_cid: String,
    doc_title: String,
    page: Option<u32>,
}

pub fn run(config: Option<&Path>, env: &Env, args: AskArgs) -> CliResult {
    let question = args.question.trim();
    if question.is_empty() || question.chars().count() > MAX_QUESTION_CHARS {
        return Err(CliError::new(
            ExitStatus::Usage,
            anyhow!("the question must be 1 to {MAX_QUESTION_CHARS} characters"),
        ));
    }
    if let Some(corpus) = &args.corpus {
        rag::checked_corpus(corpus)?;
    }
    let client = node_client::connect(config, env)?;
    let corpus = match args.corpus {
        Some(corpus) => corpus,
        None => only_corpus(&client)?,
    };
    let (passages, retrieval) = retrieve(&client, &corpus, question, args.k)?;
    let passages = relevant(passages, &retrieval);
    if passages.is_empty() {
        println!("Nothing in corpus `{corpus}` matches the question; the model was not asked.");
        return Ok(ExitStatus::Success);
    }
    let model = match args.model {
        Some(model) => model,
        None => default_model(&client)?,
    };
    let body = json!({
        "params": {"model": model},
        "input": {
            "messages": [
                {"role": "system", "content": INSTRUCTION},
                {"role": "user", "content": prompt(&passages, question)}
            ],
            "max_tokens": args.max_tokens,
            // Answers come from the sources: no need for variety.
            "temperature": 0
        }
    });
    let status = match client
        .call("llm.chat", "1.0", &body, true, None)
        .map_err(CliError::from_client)?
    {
        CallReply::Stream(frames) => call::print_stream(frames)?,
        CallReply::Json(answer) => {
            let text = answer["output"]["message"]["content"]
                .as_str()
                .unwrap_or_default();
            println!("{text}");
            ExitStatus::Success
        }
    };
    println!();
    println!("Sources:");
    for (i, p) in passages.iter().enumerate() {
        println!("{}", source_line(i + 1, &p.metadata));
    }
    Ok(status)
}

/// Without `--corpus`: the node's only corpus; with several, guessing
/// would answer from the wrong documents, so the user chooses.
fn only_corpus(client: &LocalClient) -> Result<String, CliError> {
    let mut corpora = rag::corpora(client)?;
    match corpora.len() {
        0 => Err(CliError::new(
            ExitStatus::NotFound,
            anyhow!(
                "this node holds no corpus yet; add documents with `hearthnet rag ingest PATH --corpus NAME`"
            ),
        )),
        1 => Ok(corpora.remove(0).name),
        _ => {
            let names: Vec<&str> = corpora.iter().map(|c| c.name.as_str()).collect();
            Err(CliError::new(
                ExitStatus::Usage,
                anyhow!(
                    "this node holds several corpora ({}); choose one with --corpus",
                    names.join(", ")
                ),
            ))
        }
    }
}

/// The passages `rag.query` ranks best, and how it ranked them.
fn retrieve(
    client: &LocalClient,
    corpus: &str,
    question: &str,
    k: u8,
) -> Result<(Vec<Passage>, String), CliError> {
    let body = json!({"params": {"corpus": corpus}, "input": {"query": question, "k": k}});
    let mut answer = match client
        .call("rag.query", "1.0", &body, false, None)
        .map_err(CliError::from_client)?
    {
        CallReply::Json(v) => v,
        CallReply::Stream(_) => {
            return Err(CliError::new(
                ExitStatus::Failure,
                anyhow!("rag.query answered with a stream"),
            ));
        }
    };
    let retrieval = answer["meta"]["retrieval"]
        .as_str()
        .unwrap_or("hybrid")
        .to_owned();
    let found: Found = super::file::decoded("rag.query", answer["output"].take())?;
    let mut chunks = found.chunks;
    chunks.truncate(usize::from(k));
    Ok((chunks, retrieval))
}

/// The passages worth showing the model. A BM25 hit shares words with
/// the question, so every one counts; in a hybrid ranking only those
/// above [`HYBRID_FLOOR`] do.
fn relevant(passages: Vec<Passage>, retrieval: &str) -> Vec<Passage> {
    let floor = match retrieval {
        "bm25" => f64::NEG_INFINITY,
        _ => HYBRID_FLOOR,
    };
    passages.into_iter().filter(|p| p.score > floor).collect()
}

fn prompt(passages: &[Passage], question: &str) -> String {
    let mut text = String::from("Sources:\n");
    for (i, p) in passages.iter().enumerate() {
        let passage: String = p.text.chars().take(MAX_PASSAGE_CHARS).collect();
        text.push_str(&format!(
            "[{}] ({}) {}\n\n",
            i + 1,
            p.metadata.doc_title,
            passage.trim()
        ));
    }
    text.push_str(&format!("Question: {question}"));
    text
}

fn source_line(n: usize, source: &PassageSource) -> String {
    let short = source
        .doc_cid
        .strip_prefix("blake3:")
        .and_then(|hex| hex.get(..12))
        .unwrap_or(&source.doc_cid);
    let page = source
        .page
        .map(|p| format!(", page {p}"))
        .unwrap_or_default();
    format!("[{n}] {} (blake3:{short}…{page})", source.doc_title)
}

/// The model of the first `llm.chat` offer the node can reach.
fn default_model(client: &LocalClient) -> Result<String, CliError> {
    let caps = client.caps().map_err(CliError::from_client)?;
    caps.capabilities
        .iter()
        .filter(|c| c.name == "llm.chat")
        .find_map(|c| c.params.get("model").and_then(Value::as_str))
        .map(str::to_owned)
        .ok_or_else(|| {
            CliError::new(
                ExitStatus::NotFound,
                anyhow!(
                    "no node in reach serves llm.chat, so nothing can answer; see `hearthnet caps`"
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(score: f64, text: &str) -> Passage {
        Passage {
            score,
            text: text.into(),
            metadata: PassageSource {
                doc_cid: format!("blake3:{}", "ab".repeat(32)),
                doc_title: "Water".into(),
                page: Some(2),
            },
        }
    }

    #[test]
    fn hybrid_hits_found_by_one_method_only_are_not_relevant() {
        let hybrid = relevant(vec![passage(0.5, "a"), passage(0.9, "b")], "hybrid");
        assert_eq!(hybrid.len(), 1);
        assert_eq!(hybrid[0].text, "b");
        assert_eq!(relevant(vec![passage(0.2, "a")], "bm25").len(), 1);
    }

    #[test]
    fn the_prompt_numbers_bounded_passages_and_sources_match() {
        let long = "w".repeat(MAX_PASSAGE_CHARS * 2);
        let text = prompt(&[passage(1.0, "boil it"), passage(0.9, &long)], "How long?");
        assert!(text.starts_with("Sources:\n[1] (Water) boil it\n\n[2] (Water) "));
        assert!(text.ends_with("Question: How long?"));
        assert!(text.len() < MAX_PASSAGE_CHARS + 100);
        assert_eq!(
            source_line(1, &passage(1.0, "").metadata),
            "[1] Water (blake3:abababababab…, page 2)"
        );
    }
}
