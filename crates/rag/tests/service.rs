//! rag.ingest, rag.query and rag.list_corpora on a bus, with the real
//! embedding model: what they answer, what they refuse, and idempotency.

mod common;

use common::{node, testdata};
use hearthnet_base::{DeviceKey, ErrorCode, TrustLevel};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_is_idempotent_announced_and_queried_with_pages() {
    let n = node(true);
    let pdf = n.add(&testdata("two-pages.pdf"));
    let input = json!({"doc_cid": pdf, "title": "Outage notes", "language": "en", "metadata": {"year": 2024}});
    let first = n.ingest("emergency", input.clone()).await.unwrap();
    assert_eq!(first["output"]["doc_cid"], pdf);
    assert_eq!(first["output"]["chunks_indexed"], 2);
    assert!(first["output"]["tokens_indexed"].as_u64().unwrap() > 10);
    assert_eq!(first["meta"]["corpus"], "emergency");
    assert_eq!(first["meta"]["embedding_model"], "all-minilm-l6-v2");
    let event_id = first["meta"]["ingest_event_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The same document again changes nothing and answers the same.
    let again = n.ingest("emergency", input).await.unwrap();
    assert_eq!(again["output"], first["output"]);
    assert_eq!(again["meta"]["ingest_event_id"], event_id.as_str());
    let mut events = n.log.by_ids(vec![event_id]).await.unwrap();
    let data = events[0].event.data.as_object_mut().unwrap();
    // The log's own hash link, added to every event our nodes write.
    data.remove("author_prev");
    assert_eq!(
        events[0].event.data,
        json!({"corpus": "emergency", "doc_cid": pdf, "title": "Outage notes", "language": "en", "chunks": 2})
    );

    let answer = n
        .query(
            "emergency",
            json!({"query": "Where is a pump that needs no power?", "k": 1}),
        )
        .await
        .unwrap();
    let top = &answer["output"]["chunks"][0];
    assert_eq!(answer["output"]["chunks"].as_array().unwrap().len(), 1);
    assert_eq!(top["rank"], 1);
    assert_eq!(
        top["metadata"],
        json!({"doc_cid": pdf, "doc_title": "Outage notes", "page": 2, "chunk_id": "ch_002"})
    );
    assert!(top["text"].as_str().unwrap().contains("Kirchplatz 7"));
    assert!(top["score"].as_f64().unwrap() > 0.0 && top["score"].as_f64().unwrap() <= 1.0);
    assert_eq!(answer["meta"]["retrieval"], "hybrid");
    assert_eq!(answer["meta"]["embedding_model"], "all-minilm-l6-v2");
    assert!(answer["meta"]["ms"].is_u64());

    // Without text; filtered out by year and language.
    let bare = n
        .query(
            "emergency",
            json!({"query": "rainwater", "include_text": false}),
        )
        .await
        .unwrap();
    assert!(bare["output"]["chunks"][0].get("text").is_none());
    for filter in [json!({"min_year": 2025}), json!({"language": "de"})] {
        let none = n
            .query("emergency", json!({"query": "rainwater", "filter": filter}))
            .await
            .unwrap();
        assert_eq!(none["output"]["chunks"], json!([]), "{filter}");
    }

    let list = n
        .call("rag.list_corpora", json!({}), json!({}))
        .await
        .unwrap();
    let corpora = list["output"]["corpora"].as_array().unwrap();
    assert_eq!(corpora.len(), 1);
    assert_eq!(corpora[0]["name"], "emergency");
    assert_eq!(
        (corpora[0]["docs"].as_u64(), corpora[0]["chunks"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(corpora[0]["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(corpora[0]["language_majority"], "en");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals() {
    let n = node(true);
    let md = n.add(&testdata("water.md"));
    n.ingest("kb", json!({"doc_cid": md})).await.unwrap();
    let code = |r: Result<serde_json::Value, hearthnet_bus::CallError>| r.unwrap_err().code;

    // Contract §4.4 and §4.5.
    assert_eq!(
        code(n.query("nowhere", json!({"query": "x"})).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(n.query("kb", json!({"query": "x", "k": 21})).await),
        ErrorCode::BadRequest
    );
    let missing = hearthnet_base::Blake3Id::of(b"never stored").to_string();
    assert_eq!(
        code(n.ingest("kb", json!({"doc_cid": missing})).await),
        ErrorCode::NotFound
    );
    let png = n.add(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR");
    let refused = n.ingest("kb", json!({"doc_cid": png})).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::BadRequest);
    assert!(refused.message.contains("image/png"), "{}", refused.message);
    let empty = n.add(b"   \n\n  ");
    assert_eq!(
        code(n.ingest("kb", json!({"doc_cid": empty})).await),
        ErrorCode::BadRequest
    );

    // Hostile sizes and names, before any work.
    let long = "x".repeat(hearthnet_rag::MAX_QUERY_CHARS + 1);
    assert!(matches!(
        code(n.query("kb", json!({"query": long})).await),
        ErrorCode::BadRequest | ErrorCode::SchemaMismatch
    ));
    assert!(matches!(
        code(n.query("../kb", json!({"query": "x"})).await),
        ErrorCode::BadRequest
    ));
    let big_filter = json!({"query": "x", "filter": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9}});
    assert_eq!(
        code(n.query("kb", big_filter).await),
        ErrorCode::SchemaMismatch
    );
    assert_eq!(
        code(
            n.query("kb", json!({"query": "x", "filter": {"owner": "me"}}))
                .await
        ),
        ErrorCode::BadRequest
    );

    // Ingest is for trusted members; the system corpus for nobody.
    let member = DeviceKey::generate().node_id();
    let as_member = n
        .call_as(
            member,
            TrustLevel::Member,
            "rag.ingest",
            json!({"corpus": "kb"}),
            json!({"doc_cid": md}),
        )
        .await;
    assert_eq!(code(as_member), ErrorCode::Unauthorized);
    assert_eq!(
        code(n.ingest("system", json!({"doc_cid": md})).await),
        ErrorCode::Unauthorized
    );
    // A member may query.
    let asked = n
        .call_as(
            member,
            TrustLevel::Member,
            "rag.query",
            json!({"corpus": "kb"}),
            json!({"query": "boil"}),
        )
        .await
        .unwrap();
    assert!(!asked["output"]["chunks"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_personal_corpus_is_the_nodes_own() {
    let n = node(true);
    let md = n.add(&testdata("water.md"));
    let mine = n.ingest("personal", json!({"doc_cid": md})).await.unwrap();
    // Never announced to the community.
    assert_eq!(mine["meta"]["ingest_event_id"], json!(null));
    assert!(n.query("personal", json!({"query": "boil"})).await.is_ok());

    let neighbour = DeviceKey::generate().node_id();
    for (capability, input) in [
        ("rag.query", json!({"query": "boil"})),
        ("rag.ingest", json!({"doc_cid": md})),
    ] {
        let refused = n
            .call_as(
                neighbour,
                TrustLevel::Anchor,
                capability,
                json!({"corpus": "personal"}),
                input,
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::Unauthorized, "{capability}");
    }
    let theirs = n
        .call_as(
            neighbour,
            TrustLevel::Member,
            "rag.list_corpora",
            json!({}),
            json!({}),
        )
        .await
        .unwrap();
    assert_eq!(theirs["output"]["corpora"], json!([]));
    let own = n
        .call("rag.list_corpora", json!({}), json!({}))
        .await
        .unwrap();
    assert_eq!(own["output"]["corpora"][0]["name"], "personal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_embedding_provider_a_query_is_bm25_and_says_so() {
    let n = node(true);
    let html = n.add(&testdata("pump.html"));
    let ingested = n.ingest("kb", json!({"doc_cid": html})).await.unwrap();
    assert_eq!(ingested["output"]["chunks_indexed"], 1);

    n.bus.withdraw(|d| d.name == "embed.text");
    let answer = n
        .query("kb", json!({"query": "Who fixes the seal?"}))
        .await
        .unwrap();
    assert_eq!(answer["meta"]["retrieval"], "bm25");
    assert!(answer["meta"]["embedding_error"].is_string());
    let top = &answer["output"]["chunks"][0];
    assert_eq!(
        top["metadata"]["doc_title"],
        "The Kirchplatz hand pump & its keys"
    );
    assert_eq!(top["metadata"]["page"], json!(null));
    // Asked for vectors alone, it cannot answer; ingest needs them too.
    let err = n
        .query("kb", json!({"query": "seal", "retrieval": "vector"}))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Partition);
    let md = n.add(&testdata("water.md"));
    assert_eq!(
        n.ingest("kb", json!({"doc_cid": md}))
            .await
            .unwrap_err()
            .code,
        ErrorCode::Partition
    );
}
