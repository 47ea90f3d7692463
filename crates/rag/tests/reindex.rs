//! rag.reindex on a bus with the real embedding model: the old vectors
//! answer until the new ones cover every chunk (those ingested meanwhile
//! too), and what the capability refuses.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::{node, testdata};
use hearthnet_base::{DeviceKey, ErrorCode, TrustLevel};
use hearthnet_bus::{CallError, CallStream, Item};
use serde_json::{Value, json};

const MINILM: &str = "all-minilm-l6-v2";

/// The next `progress` frame's `(done, total)`.
async fn progress(stream: &mut CallStream) -> (u64, u64) {
    match stream.next().await {
        Some(Item::Frame(frame)) if frame.event == "progress" => (
            frame.data["done"].as_u64().unwrap(),
            frame.data["total"].as_u64().unwrap(),
        ),
        other => panic!("expected a progress frame, got {other:?}"),
    }
}

/// The rest of the stream: its progress frames' `done`, then the outcome.
async fn finish(mut stream: CallStream) -> (Vec<u64>, Result<Value, CallError>) {
    let mut done = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Item::Frame(frame) => done.push(frame.data["done"].as_u64().unwrap()),
            Item::Done(answer) => return (done, Ok(answer)),
            Item::Failed(e) => return (done, Err(e)),
        }
    }
    panic!("the stream ended without an outcome")
}

/// The top chunk for `question` by vectors alone, and the model that
/// embedded the question.
async fn top(n: &common::Node, question: &str) -> (Value, String) {
    let answer = n
        .query(
            "kb",
            json!({"query": question, "k": 1, "retrieval": "vector"}),
        )
        .await
        .unwrap();
    let model = answer["meta"]["embedding_model"]
        .as_str()
        .unwrap()
        .to_owned();
    (answer["output"]["chunks"][0]["metadata"].clone(), model)
}

const PUMP_QUESTION: &str = "Who fixes the seal of the hand pump?";
const PUMP_TITLE: &str = "The Kirchplatz hand pump & its keys";
const POWER_QUESTION: &str = "Where is a pump that needs no power?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_model_takes_over_once_it_covers_every_chunk_queries_answering_throughout() {
    let n = node(true);
    for doc in ["water.md", "pump.html"] {
        let cid = n.add(&testdata(doc));
        n.ingest("kb", json!({"doc_cid": cid})).await.unwrap();
    }
    // Offered once the corpus has its model (a first ingest takes any).
    let gate = n.neighbour_offers_gated_copy("minilm-copy");
    let (before, model) = top(&n, PUMP_QUESTION).await;
    assert_eq!(
        (before["doc_title"].as_str(), model.as_str()),
        (Some(PUMP_TITLE), MINILM)
    );

    let mut reindex = n
        .start_reindex("kb", json!({"embedding_model": "minilm-copy"}))
        .unwrap();
    let (done, total) = progress(&mut reindex).await;
    assert_eq!(done, 0);
    assert!(total >= 2, "{total}");

    // Held at its first batch: queries answer from the old vectors.
    let (during, model) = top(&n, PUMP_QUESTION).await;
    assert_eq!((during, model.as_str()), (before.clone(), MINILM));
    let hybrid = n
        .query("kb", json!({"query": PUMP_QUESTION}))
        .await
        .unwrap();
    assert_eq!(hybrid["meta"]["retrieval"], "hybrid");
    // One reindex of a corpus at a time.
    let second = n
        .start_reindex("kb", json!({}))
        .unwrap()
        .outcome()
        .await
        .unwrap_err();
    assert_eq!(second.code, ErrorCode::CapacityExceeded);
    assert!(
        second.message.contains("being reindexed"),
        "{}",
        second.message
    );
    // A document ingested now goes in with the old model, and into the
    // new index before it takes over.
    let pdf = n.add(&testdata("two-pages.pdf"));
    let ingested = n
        .ingest("kb", json!({"doc_cid": pdf, "title": "Outage notes"}))
        .await
        .unwrap();
    assert_eq!(ingested["meta"]["embedding_model"], MINILM);
    let pdf_chunks = ingested["output"]["chunks_indexed"].as_u64().unwrap();

    gate.add_permits(1000);
    let (done, answer) = finish(reindex).await;
    let answer = answer.unwrap();
    assert_eq!(done.last(), Some(&(total + pdf_chunks)), "{done:?}");
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    assert_eq!(
        answer["output"],
        json!({
            "corpus": "kb",
            "model_before": MINILM,
            "model_after": "minilm-copy",
            "dim": 384,
            "chunks": total + pdf_chunks,
        })
    );
    assert!(answer["meta"]["ms"].is_u64());

    // The new model answers, the mid-way document included.
    let (after, model) = top(&n, PUMP_QUESTION).await;
    assert_eq!((after, model.as_str()), (before, "minilm-copy"));
    let (power, _) = top(&n, POWER_QUESTION).await;
    assert_eq!(
        (power["doc_title"].as_str(), power["page"].as_u64()),
        (Some("Outage notes"), Some(2))
    );
    let list = n
        .call("rag.list_corpora", json!({}), json!({}))
        .await
        .unwrap();
    assert_eq!(
        list["output"]["corpora"][0]["chunks"].as_u64(),
        Some(total + pdf_chunks)
    );
    // New documents now take the new model.
    let later = n.add(b"The bakery on Marktstrasse bakes bread on Saturdays.");
    let later = n.ingest("kb", json!({"doc_cid": later})).await.unwrap();
    assert_eq!(later["meta"]["embedding_model"], "minilm-copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_model_rebuilds_and_refusals_leave_the_index_serving() {
    let n = node(true);
    let md = n.add(&testdata("pump.html"));
    n.ingest("kb", json!({"doc_cid": md})).await.unwrap();
    let (before, _) = top(&n, PUMP_QUESTION).await;

    // Without a model: the corpus's own, made again.
    let (frames, answer) = finish(n.start_reindex("kb", json!({})).unwrap()).await;
    let answer = answer.unwrap();
    assert_eq!(answer["output"]["model_before"], MINILM);
    assert_eq!(answer["output"]["model_after"], MINILM);
    assert_eq!(frames.first(), Some(&0));
    assert_eq!(frames.last().copied(), answer["output"]["chunks"].as_u64());
    assert_eq!(
        top(&n, PUMP_QUESTION).await,
        (before.clone(), MINILM.into())
    );

    let code = |r: Result<Value, CallError>| r.unwrap_err().code;
    // The node's own key only, and never offered to peers.
    let neighbour = DeviceKey::generate().node_id();
    let theirs = n
        .call_as(
            neighbour,
            TrustLevel::Anchor,
            "rag.reindex",
            json!({"corpus": "kb"}),
            json!({}),
        )
        .await;
    assert_eq!(code(theirs), ErrorCode::Unauthorized);
    assert!(
        n.bus
            .offered_descriptors()
            .iter()
            .all(|d| d.name != "rag.reindex")
    );
    let reindex = |corpus: &str, input: Value| {
        let stream = n.start_reindex(corpus, input);
        async move { stream?.outcome().await }
    };
    assert_eq!(
        code(reindex("nowhere", json!({})).await),
        ErrorCode::NotFound
    );
    for bad in [
        json!({"embedding_model": ""}),
        json!({"embedding_model": "a\nb"}),
        json!({"embedding_model": 7}),
    ] {
        let refused = code(reindex("kb", bad.clone()).await);
        assert!(
            matches!(refused, ErrorCode::BadRequest | ErrorCode::SchemaMismatch),
            "{bad}: {refused}"
        );
    }
    let long = json!({"embedding_model": "m".repeat(hearthnet_rag::MAX_MODEL_NAME + 1)});
    assert_eq!(code(reindex("kb", long).await), ErrorCode::SchemaMismatch);

    // A model nobody serves: said so, and the old index still serves.
    let unserved = reindex("kb", json!({"embedding_model": "bge-small-en-v1.5"}))
        .await
        .unwrap_err();
    assert_eq!(unserved.code, ErrorCode::NotFound);
    assert!(
        unserved
            .message
            .contains("keeps its vectors of `all-minilm-l6-v2`"),
        "{}",
        unserved.message
    );
    assert_eq!(top(&n, PUMP_QUESTION).await, (before, MINILM.into()));
    // And the capability is free again.
    assert!(reindex("kb", json!({})).await.is_ok());
}
