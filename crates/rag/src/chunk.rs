//! Text to overlapping chunks small enough for a sentence model.
//!
//! Sizes are counted in estimated wordpieces ([`estimate_tokens`]), an
//! estimate that errs high, so a chunk of [`TARGET_TOKENS`] stays under
//! the 256 wordpieces all-MiniLM-L6-v2 reads (M05 sizes its chunks for
//! a model with a longer window; ours would be cut off). A chunk ends at a
//! paragraph end where one falls in its last part, else at a sentence end,
//! else between words; the next one starts [`OVERLAP_TOKENS`] back, so a
//! sentence cut at a boundary is whole in one of the two.

use crate::extract::Page;

pub const TARGET_TOKENS: usize = 180;
/// About 15 % of a chunk.
pub const OVERLAP_TOKENS: usize = 28;
/// A "word" longer than this (a URL, a hash, base64) is cut into pieces
/// so no piece alone overflows a chunk.
const MAX_WORD_CHARS: usize = 96;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position in its document, from 0.
    pub ord: u32,
    pub page: Option<u32>,
    pub text: String,
    pub tokens: usize,
}

impl Chunk {
    /// The id callers see (`metadata.chunk_id`): stable for a document,
    /// numbered from 1 like the contract's example.
    pub fn id_of(ord: u32) -> String {
        format!("ch_{:03}", u64::from(ord) + 1)
    }
}

/// A rough wordpiece count: four ASCII letters or digits make a piece
/// (common words are one, rare ones split), every other letter and every
/// punctuation mark one.
pub fn estimate_tokens(word: &str) -> usize {
    let mut tokens = 0;
    let mut ascii_run = 0usize;
    for c in word.chars() {
        if c.is_ascii_alphanumeric() {
            ascii_run += 1;
            continue;
        }
        tokens += ascii_run.div_ceil(4) + 1;
        ascii_run = 0;
    }
    tokens + ascii_run.div_ceil(4)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Break {
    Word,
    Sentence,
    Paragraph,
}

struct Word {
    start: usize,
    end: usize,
    tokens: usize,
    /// The boundary after this word.
    after: Break,
}

/// The words of `text` with their byte ranges (over-long ones cut).
fn words(text: &str) -> Vec<Word> {
    let mut out: Vec<Word> = Vec::new();
    let mut start = None;
    let pieces = |s: usize, e: usize, out: &mut Vec<Word>| {
        let word = &text[s..e];
        let mut piece_start = s;
        for (n, (i, _)) in word.char_indices().enumerate() {
            if n > 0 && n % MAX_WORD_CHARS == 0 {
                push(out, text, piece_start, s + i);
                piece_start = s + i;
            }
        }
        push(out, text, piece_start, e);
    };
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                pieces(s, i, &mut out);
            }
            if c == '\n'
                && let Some(last) = out.last_mut()
                && text[last.end..i].contains('\n')
            {
                last.after = Break::Paragraph;
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        pieces(s, text.len(), &mut out);
    }
    if let Some(last) = out.last_mut() {
        last.after = Break::Paragraph;
    }
    out
}

fn push(out: &mut Vec<Word>, text: &str, start: usize, end: usize) {
    let word = &text[start..end];
    let sentence_end = word
        .trim_end_matches(['"', '\'', ')', ']', '»', '“', '”'])
        .ends_with(['.', '!', '?', ':', ';']);
    out.push(Word {
        start,
        end,
        tokens: estimate_tokens(word).max(1),
        after: if sentence_end {
            Break::Sentence
        } else {
            Break::Word
        },
    });
}

/// `text` cut into chunks of at most `target` estimated tokens (a single
/// word piece may exceed a tiny `target`), each overlapping the one before
/// by about `overlap`: `(text, tokens)`.
pub fn chunk_text(text: &str, target: usize, overlap: usize) -> Vec<(String, usize)> {
    let words = words(text);
    let mut chunks = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let mut end = i;
        let mut sum = 0;
        while end < words.len() && (end == i || sum + words[end].tokens <= target) {
            sum += words[end].tokens;
            end += 1;
        }
        if end < words.len() {
            end = best_cut(&words, i, end, target);
        }
        let tokens = words[i..end].iter().map(|w| w.tokens).sum();
        chunks.push((text[words[i].start..words[end - 1].end].to_owned(), tokens));
        if end == words.len() {
            break;
        }
        // Step back `overlap` tokens, but always move forward.
        let mut next = end;
        let mut back = 0;
        while next > i + 1 && back < overlap {
            next -= 1;
            back += words[next].tokens;
        }
        i = next;
    }
    chunks
}

/// Where to end a chunk of `words[start..end]`: after the strongest
/// boundary in its last 40 %, the latest of equals.
fn best_cut(words: &[Word], start: usize, end: usize, target: usize) -> usize {
    let mut best = end;
    let mut best_break = Break::Word;
    let mut sum = 0;
    for (k, w) in words.iter().enumerate().take(end).skip(start) {
        sum += w.tokens;
        if sum * 10 >= target * 6 && w.after >= best_break {
            best_break = w.after;
            best = k + 1;
        }
    }
    if best_break == Break::Word { end } else { best }
}

/// The chunks of a document: each page chunked on its own (a chunk never
/// spans pages, so its page number is exact), numbered across pages.
pub fn chunk_pages(pages: &[Page]) -> Vec<Chunk> {
    let mut out = Vec::new();
    for page in pages {
        for (text, tokens) in chunk_text(&page.text, TARGET_TOKENS, OVERLAP_TOKENS) {
            out.push(Chunk {
                ord: u32::try_from(out.len()).unwrap_or(u32::MAX),
                page: page.number,
                text,
                tokens,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_estimated_high() {
        assert_eq!(estimate_tokens("the"), 1);
        assert_eq!(estimate_tokens("water."), 3);
        assert_eq!(estimate_tokens("Regenwasser"), 3);
        assert_eq!(estimate_tokens("Straße"), 3);
        assert_eq!(estimate_tokens("水道"), 2);
    }

    #[test]
    fn chunks_overlap_and_cover_every_word() {
        let text: String = (0..400).map(|i| format!("w{i} ")).collect();
        let chunks = chunk_text(&text, 50, 10);
        assert!(chunks.len() > 5);
        for pair in chunks.windows(2) {
            let (a, b) = (&pair[0].0, &pair[1].0);
            let first_of_b = b.split(' ').next().unwrap();
            assert!(
                a.split(' ').any(|w| w == first_of_b),
                "no overlap: {a} | {b}"
            );
        }
        for (c, tokens) in &chunks {
            assert!(*tokens <= 50, "{tokens}: {c}");
        }
        // Every word is in some chunk, in order, and the last one ends it.
        let all: Vec<&str> = text.split_whitespace().collect();
        for w in &all {
            assert!(
                chunks.iter().any(|(c, _)| c.split(' ').any(|x| x == *w)),
                "{w}"
            );
        }
        assert!(chunks.last().unwrap().0.ends_with("w399"));
    }

    #[test]
    fn the_overlap_is_about_what_was_asked() {
        let text: String = (0..200).map(|i| format!("w{i} ")).collect();
        let chunks = chunk_text(&text, 40, 10);
        let a: Vec<&str> = chunks[0].0.split(' ').collect();
        let b: Vec<&str> = chunks[1].0.split(' ').collect();
        let shared = a.iter().filter(|w| b.contains(w)).count();
        // "wNN" is one estimated token: 10 tokens back is ten words.
        assert_eq!(shared, 10);
    }

    #[test]
    fn chunks_end_at_paragraphs_then_sentences() {
        let para = |n: usize, tag: &str| -> String {
            (0..n)
                .map(|i| format!("{tag}{i}"))
                .collect::<Vec<_>>()
                .join(" ")
                + "."
        };
        let text = format!("{}\n\n{}", para(30, "a"), para(30, "b"));
        let chunks = chunk_text(&text, 40, 0);
        assert!(chunks[0].0.ends_with("a29."), "{}", chunks[0].0);
        let sentences = format!("{} {} {}", para(10, "x"), para(10, "y"), para(10, "z"));
        let chunks = chunk_text(&sentences, 25, 0);
        assert!(chunks[0].0.ends_with("y9."), "{}", chunks[0].0);
    }

    #[test]
    fn a_monster_word_is_cut() {
        let text = "x".repeat(10_000);
        let chunks = chunk_text(&text, TARGET_TOKENS, OVERLAP_TOKENS);
        assert!(
            chunks
                .iter()
                .all(|(c, t)| c.len() <= 8192 && *t <= TARGET_TOKENS)
        );
    }

    #[test]
    fn pages_keep_their_numbers_and_chunk_ids_count_on() {
        let pages = [
            Page {
                number: Some(1),
                text: "first page".into(),
            },
            Page {
                number: Some(2),
                text: "second page".into(),
            },
        ];
        let chunks = chunk_pages(&pages);
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[1].ord, chunks[1].page), (1, Some(2)));
        assert_eq!(Chunk::id_of(chunks[1].ord), "ch_002");
        assert!(chunk_pages(&[]).is_empty());
    }
}
