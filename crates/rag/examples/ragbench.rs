//! `cargo run --release -p hearthnet-rag --example ragbench [CHUNKS] [QUERIES] [INGEST_DOCS]`
//! (defaults 100000, 500, 40): the figures of BENCHMARKS.md's RAG section,
//! printed, never asserted.
//!
//! One in-process node as the tests build it (`tests/common`: bus, blob
//! store, event log, the real all-MiniLM-L6-v2 as `embed.text`, the RAG
//! service), then:
//! 1. ingest rate: generated Markdown notes through the real path (blob
//!    store, `rag.ingest`: extract, chunk, `embed.text`, SQLite), and
//!    `embed.text` alone on the same chunks, to show where the time goes;
//! 2. a corpus of CHUNKS chunks of generated notes, extracted and chunked
//!    as an ingest does, stored through `Corpus::insert`, with stand-in
//!    unit vectors: embedding 100,000 chunks here would take hours, and
//!    neither the brute-force cosine nor BM25 nor the fusion costs more or
//!    less for other vector values (what is measured is latency; ranking
//!    quality is `tests/quality.rs`'s);
//! 3. QUERIES questions through `rag.query` on the bus, one at a time:
//!    hybrid (the query embedded by the real model, BM25, vectors,
//!    fusion), and for the breakdown vectors alone, BM25 alone and
//!    `embed.text` alone on the same questions; p50, p99 and mean of
//!    each, and the process's CPU time per query.
//!
//! Load averages (`/proc/loadavg`) are printed with each figure: the
//! machine is shared.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

mod benchdata;
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use benchdata::Text;
use hearthnet_bus::{InboundCall, Version};
use hearthnet_rag::extract::{self, Hint};
use hearthnet_rag::store::{Corpus, NewDocument};
use hearthnet_rag::{MAX_QUERY_WORDS, chunk, store};
use serde_json::{Value, json};

const MODEL: &str = "all-minilm-l6-v2";
const DIM: usize = 384;

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .map(|a| a.parse().expect("a number"))
        .unwrap_or(default)
}

/// p50, p99 and mean of `times`, in ms.
fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at =
        |q: f64| ms(times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1]);
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, mean {:.1} ms (n = {})",
        at(0.5),
        at(0.99),
        mean,
        times.len()
    )
}

/// CPU milliseconds per query since `since` (CPU seconds).
fn per_query(since: f64, queries: usize) -> f64 {
    (benchdata::cpu_seconds() - since) * 1000.0 / queries as f64
}

/// The chunks of a generated note, as an ingest makes them.
fn chunks_of(doc: &str) -> Vec<chunk::Chunk> {
    let hint = Hint {
        mime: Some("text/markdown"),
        filename: None,
    };
    let extracted = extract::extract(doc.as_bytes().to_vec(), hint).expect("Markdown extracts");
    chunk::chunk_pages(&extracted.pages)
}

async fn embed(n: &common::Node, texts: &[String]) -> Value {
    let body = json!({"params": {"model": MODEL}, "input": {"texts": texts}});
    let call = InboundCall::new(
        "embed.text",
        Version::new(1, 0),
        body,
        n.key.node_id(),
        hearthnet_base::TrustLevel::Anchor,
    );
    n.bus.call(call).unwrap().outcome().await.unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (chunks, queries, ingest_docs) = (arg(1, 100_000), arg(2, 500), arg(3, 40));
    let n = common::node(true);
    let mut text = Text::new(14);
    println!("load at start: {}", load());
    // The model loads on the first call: not part of any figure.
    embed(&n, &["warm-up".to_owned()]).await;

    // 1. Ingest rate, the real path.
    let docs: Vec<String> = (0..ingest_docs).map(|_| text.document(30)).collect();
    let started = Instant::now();
    let mut ingested = 0u64;
    for doc in &docs {
        let cid = n.add(doc.as_bytes());
        let answer = n
            .ingest("notes", json!({"doc_cid": cid, "mime": "text/markdown"}))
            .await
            .unwrap();
        ingested += answer["output"]["chunks_indexed"].as_u64().unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingest: {ingest_docs} notes, {ingested} chunks in {secs:.1} s: {:.1} chunks/s (load {})",
        ingested as f64 / secs,
        load()
    );
    let texts: Vec<String> = docs
        .iter()
        .take(5)
        .flat_map(|d| chunks_of(d))
        .map(|c| c.text)
        .collect();
    let started = Instant::now();
    for batch in texts.chunks(32) {
        embed(&n, batch).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  of which embedding: embed.text alone on {} of these chunks (batches of 32): {:.1} chunks/s (load {})",
        texts.len(),
        texts.len() as f64 / secs,
        load()
    );

    // 2. The big corpus, stand-in vectors.
    let started = Instant::now();
    let corpus = Corpus::open(&n.corpora, "big", true).unwrap().unwrap();
    let (mut stored, mut notes) = (0usize, 0usize);
    while stored < chunks {
        let doc = text.document(30);
        let mut cut = chunks_of(&doc);
        cut.truncate(chunks - stored);
        let vectors: Vec<Vec<f32>> = cut.iter().map(|_| text.unit_vector(DIM)).collect();
        let (cid, meta) = (
            format!("blake3:bench{notes}"),
            json!({"year": 2000 + notes % 27}),
        );
        let note = NewDocument {
            doc_cid: &cid,
            title: "note",
            language: "en",
            media: "text/markdown",
            metadata: &meta,
        };
        corpus.insert(&note, &cut, &vectors, MODEL).unwrap();
        stored += cut.len();
        notes += 1;
    }
    let stats = corpus.stats().unwrap();
    drop(corpus);
    println!(
        "corpus: {} chunks in {notes} notes, {} MB on disk, stored in {:.1} s (stand-in vectors; load {})",
        stats.chunks,
        stats.size_bytes / 1_000_000,
        started.elapsed().as_secs_f64(),
        load()
    );
    let questions: Vec<String> = (0..queries).map(|_| text.question()).collect();
    // What BM25 has to score: every chunk that one of a question's words
    // matches.
    let db = rusqlite::Connection::open(n.corpora.join("big.sqlite")).unwrap();
    let mut matched: Vec<usize> = questions
        .iter()
        .map(|q| {
            db.query_row(
                "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?",
                [store::fts_query(q, MAX_QUERY_WORDS)],
                |r| r.get::<_, i64>(0),
            )
            .unwrap() as usize
        })
        .collect();
    drop(db);
    matched.sort_unstable();
    let share = |i: usize| matched[i] as f64 * 100.0 / stats.chunks as f64;
    println!(
        "chunks a question's words match: median {} ({:.1} %), 90th percentile {} ({:.1} %), most {} ({:.1} %)",
        matched[matched.len() / 2],
        share(matched.len() / 2),
        matched[matched.len() * 9 / 10],
        share(matched.len() * 9 / 10),
        matched[matched.len() - 1],
        share(matched.len() - 1)
    );
    let started = Instant::now();
    // The first query opens the corpus and loads its vectors.
    n.query("big", json!({"query": questions[0]}))
        .await
        .unwrap();
    println!(
        "first query (opens the corpus, loads {} vectors): {:.0} ms",
        stats.chunks,
        started.elapsed().as_secs_f64() * 1000.0
    );

    // 3. Queries, one at a time. CPU time is the whole process's (the
    // embedding model runs in it too), per query.
    for (label, input) in [
        (
            "rag.query hybrid (embed.text + BM25 + vectors + fusion)",
            json!({}),
        ),
        (
            "rag.query vectors alone (embed.text + vectors)",
            json!({"retrieval": "vector"}),
        ),
        ("rag.query BM25 alone", json!({"retrieval": "bm25"})),
    ] {
        let (before, cpu) = (load(), benchdata::cpu_seconds());
        let mut times = Vec::with_capacity(queries);
        let mut retrieval = String::new();
        for q in &questions {
            let mut request = input.clone();
            request["query"] = json!(q);
            let started = Instant::now();
            let answer = n.query("big", request).await.unwrap();
            times.push(started.elapsed());
            retrieval = answer["meta"]["retrieval"].as_str().unwrap().to_owned();
        }
        let cpu = per_query(cpu, queries);
        println!(
            "{label} [{retrieval}]: {}, CPU {cpu:.1} ms/query (load {before} → {})",
            summary(times),
            load()
        );
    }
    let (before, cpu) = (load(), benchdata::cpu_seconds());
    let mut times = Vec::with_capacity(queries);
    for q in &questions {
        let started = Instant::now();
        embed(&n, std::slice::from_ref(q)).await;
        times.push(started.elapsed());
    }
    let cpu = per_query(cpu, queries);
    println!(
        "embed.text alone, one question: {}, CPU {cpu:.1} ms/query (load {before} → {})",
        summary(times),
        load()
    );
}
