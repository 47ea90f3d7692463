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
use serde_json::{Value, json};

use super::{call, node_client, rag};
use crate::cli::AskArgs;
use crate::exit::{CliError, CliResult, ExitStatus};

use hearthnet_wire::rag::{Found, MAX_QUESTION_CHARS, Passage, PassageSource};

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
    let passages = retrieve(&client, &corpus, question, args.k)?;
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
            "messages": hearthnet_wire::rag::messages(&passages, question),
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

/// The passages `rag.query` ranks best that are relevant
/// ([`hearthnet_wire::rag::relevant`]).
fn retrieve(
    client: &LocalClient,
    corpus: &str,
    question: &str,
    k: u8,
) -> Result<Vec<Passage>, CliError> {
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
    let found: Found = super::file::decoded("rag.query", answer["output"].take())?;
    let mut chunks = found.chunks;
    chunks.truncate(usize::from(k));
    Ok(hearthnet_wire::rag::relevant(
        chunks,
        answer["meta"]["retrieval"].as_str(),
    ))
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

    #[test]
    fn a_source_line_names_the_document_its_cid_and_page() {
        let source = PassageSource {
            doc_cid: format!("blake3:{}", "ab".repeat(32)),
            doc_title: "Water".into(),
            page: Some(2),
        };
        assert_eq!(
            source_line(1, &source),
            "[1] Water (blake3:abababababab…, page 2)"
        );
    }
}
