//! `hearthnet rag list|ingest|reindex` and `hearthnet ask` against a real node
//! that serves `embed.text` (MiniLM) and `llm.chat` (SmolLM2-135M).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};

use common::{Sandbox, models};
use serde_json::Value;

const SMOLLM: &str = "smollm2-135m";

/// Starts `sb`'s node serving `embed.text` (MiniLM) and `llm.chat`
/// (SmolLM2), with `extra` overrides.
fn start_model_node(sb: &Sandbox, extra: &[(&str, &str)]) -> common::RunningNode {
    let embed_dir = models::minilm().display().to_string();
    let backends = models::gguf_backend(SMOLLM, &models::smollm(), 1);
    let mut env = vec![
        ("HEARTHNET_EMBEDDING_MODEL", "all-minilm-l6-v2"),
        ("HEARTHNET_EMBEDDING_MODEL_DIR", embed_dir.as_str()),
        ("HEARTHNET_LLM_BACKENDS", backends.as_str()),
    ];
    env.extend_from_slice(extra);
    sb.start_node(&env)
}

fn rag_node() -> (Sandbox, common::RunningNode) {
    let sb = Sandbox::new();
    sb.init_non_interactive("librarian");
    let node = start_model_node(&sb, &[]);
    (sb, node)
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/rag")
        .join(name)
}

/// A folder with the Markdown and HTML test documents, a PNG the node
/// cannot index, and a hidden file that must be skipped.
fn documents(root: &Path) -> PathBuf {
    let folder = root.join("docs");
    std::fs::create_dir_all(folder.join("more")).unwrap();
    std::fs::copy(testdata("water.md"), folder.join("water.md")).unwrap();
    std::fs::copy(testdata("pump.html"), folder.join("more/pump.html")).unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..=255u8).cycle().take(4096));
    std::fs::write(folder.join("photo.png"), png).unwrap();
    std::fs::write(folder.join(".draft.md"), "# Secret draft\n").unwrap();
    folder
}

fn llm_calls(sb: &Sandbox) -> usize {
    sb.client()
        .traces(1000, Some("llm.chat"))
        .unwrap()
        .traces
        .len()
}

#[test]
fn ingest_a_folder_list_the_corpus_and_ask_it() {
    let (sb, _node) = rag_node();
    let folder = documents(sb.home());
    let folder = folder.display().to_string();

    // Usage errors come before any work.
    let missing = sb.run(&["rag", "ingest", "/no/such/path", "--corpus", "w"], None);
    assert_eq!(missing.code, 2, "{missing:?}");
    let bad_name = sb.run(&["rag", "ingest", &folder, "--corpus", "Water!"], None);
    assert_eq!(bad_name.code, 2, "{bad_name:?}");

    // The PNG is refused and listed, the others go in, the hidden file is skipped.
    let run = sb.run(
        &["rag", "ingest", &folder, "--corpus", "outage", "--json"],
        None,
    );
    assert_eq!(run.code, 1, "{run:?}");
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{run:?}");
    let by_name = |name: &str| {
        lines
            .iter()
            .find(|l| l["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} not reported: {run:?}"))
    };
    let water_cid = by_name("water.md")["doc_cid"].as_str().unwrap().to_owned();
    assert!(
        by_name("water.md")["chunks"].as_u64().unwrap() >= 1,
        "{run:?}"
    );
    assert!(
        by_name("pump.html")["chunks"].as_u64().unwrap() >= 1,
        "{run:?}"
    );
    let png = by_name("photo.png");
    assert!(png["doc_cid"].is_null(), "{run:?}");
    assert!(
        png["error"].as_str().unwrap().contains("image/png"),
        "{run:?}"
    );
    assert!(run.stderr.contains("ingested 2 of 3"), "{run:?}");
    assert!(run.stderr.contains("1 failed"), "{run:?}");

    // Counted in the list; ingesting again changes nothing (idempotent on the CID).
    let again = sb.run(
        &[
            "rag",
            "ingest",
            &testdata("water.md").display().to_string(),
            "--corpus",
            "outage",
        ],
        None,
    );
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains(&water_cid), "{again:?}");
    let list = sb.run(&["rag", "list", "--json"], None);
    assert_eq!(list.code, 0, "{list:?}");
    let corpora: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(corpora.as_array().unwrap().len(), 1, "{list:?}");
    let outage = &corpora[0];
    assert_eq!(outage["name"], "outage");
    assert_eq!(outage["docs"], 2);
    let chunks: u64 = lines.iter().filter_map(|l| l["chunks"].as_u64()).sum();
    assert_eq!(outage["chunks"].as_u64(), Some(chunks), "{list:?}");
    let table = sb.run(&["rag", "list"], None);
    assert!(table.stdout.starts_with("NAME"), "{table:?}");
    assert!(table.stdout.contains("outage"), "{table:?}");

    // An answer from the only corpus, by the first llm.chat model in the
    // caps, streamed, then the numbered sources with the Markdown file.
    let before = llm_calls(&sb);
    let ask = sb.run(
        &[
            "ask",
            "--max-tokens",
            "12",
            "How long should water be boiled?",
        ],
        None,
    );
    assert_eq!(ask.code, 0, "{ask:?}");
    let (answer, sources) = ask.stdout.split_once("\nSources:\n").expect("sources");
    assert!(!answer.trim().is_empty(), "{ask:?}");
    assert!(sources.starts_with("[1] "), "{ask:?}");
    assert!(sources.contains(&water_cid[..19]), "{ask:?}");
    assert_eq!(llm_calls(&sb), before + 1, "{ask:?}");

    // Nothing matches: said so, and the model is not asked.
    let nothing = sb.run(
        &["ask", "--corpus", "outage", "xylophone quasar zeppelin"],
        None,
    );
    assert_eq!(nothing.code, 0, "{nothing:?}");
    assert!(
        nothing.stdout.contains("matches the question"),
        "{nothing:?}"
    );
    assert!(!nothing.stdout.contains("Sources:"), "{nothing:?}");
    assert_eq!(llm_calls(&sb), before + 1, "{nothing:?}");

    // With two corpora the user must choose; a model nobody serves fails.
    let other = sb.run(
        &[
            "rag",
            "ingest",
            &testdata("water.md").display().to_string(),
            "--corpus",
            "other",
        ],
        None,
    );
    assert_eq!(other.code, 0, "{other:?}");
    let ambiguous = sb.run(
        &[
            "ask",
            "--max-tokens",
            "12",
            "How long should water be boiled?",
        ],
        None,
    );
    assert_eq!(ambiguous.code, 2, "{ambiguous:?}");
    assert!(
        ambiguous.stderr.contains("(other, outage)"),
        "{ambiguous:?}"
    );
    let unknown = sb.run(
        &[
            "ask",
            "--corpus",
            "other",
            "--model",
            "gpt-99",
            "How long should water be boiled?",
        ],
        None,
    );
    assert_ne!(unknown.code, 0, "{unknown:?}");
}

#[test]
fn a_node_without_models_ingests_and_asks_with_a_neighbours() {
    // A serves neither embed.text nor llm.chat; B, who joined by invite,
    // serves both. A learns B's offers from its static peers, so A
    // restarts with B listed once B runs.
    let a = Sandbox::new();
    a.init_non_interactive("keeper");
    let node_a = a.start_node(&[]);
    let b = Sandbox::new();
    let card = b.identity_card("thinker");
    let (invite, _) = common::invite(&a, &card, &[]);
    let joined = b.run(&["invite", "redeem", &invite], None);
    assert_eq!(joined.code, 0, "{joined:?}");
    let _node_b = start_model_node(&b, &[]);
    drop(node_a);
    let peers = format!("[\"{}\"]", b.peer_addr());
    // A's calls wait as long as B's manifest says B's capabilities run
    // (llm.chat declares 300 s), not A's 30 s default: SmolLM2 on a busy
    // test machine can take longer than that to load and answer.
    let _node_a = a.start_node(&[("HEARTHNET_DISCOVERY_STATIC_PEERS", &peers)]);
    a.wait_for_peers(1);
    let local_ai = a
        .client()
        .caps()
        .unwrap()
        .capabilities
        .into_iter()
        .any(|c| c.local && (c.name == "llm.chat" || c.name == "embed.text"));
    assert!(!local_ai, "A must not serve the models itself");

    let water = testdata("water.md").display().to_string();
    let ingest = a.run(&["rag", "ingest", &water, "--corpus", "outage"], None);
    assert_eq!(ingest.code, 0, "{ingest:?}");
    let cid = ingest.stdout.split_whitespace().next().unwrap().to_owned();
    assert!(cid.starts_with("blake3:"), "{ingest:?}");

    let ask = a.run(
        &[
            "ask",
            "--max-tokens",
            "12",
            "How long should water be boiled?",
        ],
        None,
    );
    assert_eq!(ask.code, 0, "{ask:?}");
    let (_, sources) = ask.stdout.split_once("\nSources:\n").expect("sources");
    assert!(sources.contains(&cid[..19]), "{ask:?}");
    // B's model wrote the answer.
    assert_eq!(llm_calls(&b), 1, "{ask:?}");
}

#[test]
fn reindex_a_corpus_with_its_own_model() {
    let (sb, _node) = rag_node();
    let water = testdata("water.md").display().to_string();
    let ingest = sb.run(&["rag", "ingest", &water, "--corpus", "outage"], None);
    assert_eq!(ingest.code, 0, "{ingest:?}");

    let run = sb.run(&["rag", "reindex", "--corpus", "outage", "--json"], None);
    assert_eq!(run.code, 0, "{run:?}");
    let done: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(done["corpus"], "outage", "{run:?}");
    assert_eq!(done["model_before"], "all-minilm-l6-v2", "{run:?}");
    assert_eq!(done["model_after"], "all-minilm-l6-v2", "{run:?}");
    assert_eq!(done["dim"], 384, "{run:?}");
    assert!(done["chunks"].as_u64().unwrap() >= 1, "{run:?}");
    assert!(done["ms"].is_u64(), "{run:?}");

    // For people: a summary on stderr, nothing on stdout.
    let human = sb.run(&["rag", "reindex", "--corpus", "outage"], None);
    assert_eq!(human.code, 0, "{human:?}");
    assert!(human.stdout.is_empty(), "{human:?}");
    assert!(
        human.stderr.contains("reindexed corpus `outage`"),
        "{human:?}"
    );
    let list = sb.run(&["rag", "list", "--json"], None);
    let corpora: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(corpora[0]["chunks"], done["chunks"], "{list:?}");

    // A bad name is a usage error; no such corpus, or a model nobody
    // serves, is "nobody offers it".
    let bad = sb.run(&["rag", "reindex", "--corpus", "Outage!"], None);
    assert_eq!(bad.code, 2, "{bad:?}");
    let missing = sb.run(&["rag", "reindex", "--corpus", "nowhere"], None);
    assert_eq!(missing.code, 6, "{missing:?}");
    let unserved = sb.run(
        &[
            "rag",
            "reindex",
            "--corpus",
            "outage",
            "--embedding-model",
            "bge-small-en-v1.5",
        ],
        None,
    );
    assert_eq!(unserved.code, 6, "{unserved:?}");
    assert!(
        unserved.stderr.contains("keeps its vectors"),
        "{unserved:?}"
    );
}
