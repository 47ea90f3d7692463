//! `rag.query`'s answer, and the recipe of a grounded answer that
//! `hearthnet ask` and the web UI's Ask page share: which passages count
//! as relevant, and the messages that ask `llm.chat` to answer from them
//! alone, citing them by number.
//!
//! When nothing relevant is found the model is not asked at all: a small
//! model handed unrelated passages answers anyway, and an invented answer
//! with citations is worse than none.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The node's bound on `rag.query`'s `input.query` (M05).
pub const MAX_QUESTION_CHARS: usize = 2048;
/// Of each passage, at most this much goes into the prompt: chunks are
/// about 180 tokens, and twenty of these stay far below `llm.chat`'s
/// message limit whatever the index holds.
pub const MAX_PASSAGE_CHARS: usize = 2400;
/// RRF scores are normalised so 1.0 is first place in every ranked list.
/// A chunk only one of the two lists found scores at most 0.5 (first
/// place in it); one both found scores above 0.55 (ranks ≤ 50 in each).
/// Vector search always returns its nearest chunks, however far, so in a
/// hybrid query only chunks above this floor share words with the
/// question and count as relevant.
const HYBRID_FLOOR: f64 = 0.5;

/// The system message of a grounded answer.
pub const INSTRUCTION: &str = "Answer the question using only the numbered sources below. \
Cite the sources you use by their number in brackets, like [1]. \
If the sources do not contain the answer, say that you do not know.";

/// `rag.query`'s `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Found {
    pub chunks: Vec<Passage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    pub score: f64,
    #[serde(default)]
    pub text: String,
    pub metadata: PassageSource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassageSource {
    pub doc_cid: String,
    pub doc_title: String,
    pub page: Option<u32>,
}

/// The passages worth showing the model, of those ranked by `retrieval`
/// (`rag.query`'s `meta.retrieval`). A BM25 hit shares words with the
/// question, so every one counts; in a hybrid ranking only those above
/// the floor do.
pub fn relevant(passages: Vec<Passage>, retrieval: Option<&str>) -> Vec<Passage> {
    let floor = match retrieval {
        Some("bm25") => f64::NEG_INFINITY,
        _ => HYBRID_FLOOR,
    };
    passages.into_iter().filter(|p| p.score > floor).collect()
}

/// The user message: the numbered, bounded sources, then the question.
pub fn prompt(passages: &[Passage], question: &str) -> String {
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

/// `llm.chat`'s `input.messages` for a grounded answer.
pub fn messages(passages: &[Passage], question: &str) -> Value {
    json!([
        {"role": "system", "content": INSTRUCTION},
        {"role": "user", "content": prompt(passages, question)}
    ])
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
        let hybrid = relevant(vec![passage(0.5, "a"), passage(0.9, "b")], Some("hybrid"));
        assert_eq!(hybrid.len(), 1);
        assert_eq!(hybrid[0].text, "b");
        assert_eq!(relevant(vec![passage(0.2, "a")], Some("bm25")).len(), 1);
        assert_eq!(relevant(vec![passage(0.2, "a")], None).len(), 0);
    }

    #[test]
    fn the_prompt_numbers_bounded_passages() {
        let long = "w".repeat(MAX_PASSAGE_CHARS * 2);
        let text = prompt(&[passage(1.0, "boil it"), passage(0.9, &long)], "How long?");
        assert!(text.starts_with("Sources:\n[1] (Water) boil it\n\n[2] (Water) "));
        assert!(text.contains(&format!("[2] (Water) {}\n", "w".repeat(MAX_PASSAGE_CHARS))));
        assert!(text.ends_with("Question: How long?"));
        let m = messages(&[passage(1.0, "boil it")], "How long?");
        assert_eq!(m[0]["content"], INSTRUCTION);
        assert_eq!(m[1]["role"], "user");
    }
}
