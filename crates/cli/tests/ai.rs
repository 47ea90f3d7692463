//! The community's AI through a real node: `embed.text` served from a
//! model directory, and what happens when the directory cannot serve.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use common::{Sandbox, models};
use serde_json::{Value, json};

fn embedding_node(model_dir: &std::path::Path) -> (Sandbox, common::RunningNode) {
    let sb = Sandbox::new();
    sb.init_non_interactive("embedder");
    let dir = model_dir.display().to_string();
    let node = sb.start_node(&[
        ("HEARTHNET_EMBEDDING_MODEL", "all-minilm-l6-v2"),
        ("HEARTHNET_EMBEDDING_MODEL_DIR", &dir),
    ]);
    (sb, node)
}

fn embed(sb: &Sandbox, body: &Value) -> common::Run {
    sb.run(
        &["call", "embed.text@1.0", "--body", &body.to_string()],
        None,
    )
}

#[test]
fn embed_text_serves_the_vectors_of_sentence_transformers() {
    let (sb, _node) = embedding_node(&models::minilm());
    let reference = models::minilm_reference();
    let sentences = &reference["sentences"];
    let run = embed(
        &sb,
        &json!({"params": {"model": "all-minilm-l6-v2"}, "input": {"texts": sentences}}),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["output"]["dim"], 384);
    assert_eq!(answer["meta"]["model"], "all-minilm-l6-v2");
    let got: Vec<Vec<f64>> =
        serde_json::from_value(answer["output"]["embeddings"].clone()).unwrap();
    let want: Vec<Vec<f64>> = serde_json::from_value(reference["vectors"].clone()).unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let c = models::cosine(g, w);
        assert!(c > 1.0 - 1e-4, "sentence {i}: cosine {c}");
    }

    // The caps list the model; a model nobody serves, too many texts and
    // too long a text are refused before any work.
    let caps = sb.run(&["caps", "--json"], None);
    assert!(caps.stdout.contains("all-minilm-l6-v2"), "{caps:?}");
    let status = sb.run(&["status"], None);
    assert!(
        status
            .stdout
            .contains("all-minilm-l6-v2 (embed.text; here)"),
        "{status:?}"
    );
    let other = embed(
        &sb,
        &json!({"params": {"model": "bge-small-en-v1.5"}, "input": {"texts": ["x"]}}),
    );
    assert_ne!(other.code, 0, "{other:?}");
    let many = embed(
        &sb,
        &json!({"params": {"model": "all-minilm-l6-v2"}, "input": {"texts": vec!["x"; 257]}}),
    );
    assert_eq!(many.code, 2, "{many:?}");
    assert!(many.stderr.contains("schema_mismatch"), "{many:?}");
    let long = embed(
        &sb,
        &json!({"params": {"model": "all-minilm-l6-v2"}, "input": {"texts": ["x".repeat(8193)]}}),
    );
    assert_eq!(long.code, 2, "{long:?}");
}

#[test]
fn a_model_directory_that_cannot_serve_is_not_offered_and_doctor_says_why() {
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(
        broken.path().join("config.json"),
        r#"{"model_type": "llama"}"#,
    )
    .unwrap();
    let (sb, _node) = embedding_node(broken.path());
    let caps = sb.run(&["caps", "--json"], None);
    assert_eq!(caps.code, 0, "{caps:?}");
    assert!(!caps.stdout.contains("embed.text"), "{caps:?}");

    let dir = broken.path().display().to_string();
    let doctor = sb.run_with_env(
        &["doctor", "--check", "embedding_model"],
        &[("HEARTHNET_EMBEDDING_MODEL_DIR", &dir)],
    );
    assert_eq!(doctor.code, 1, "{doctor:?}");
    assert!(
        doctor.stdout.contains("only BERT-family models"),
        "{doctor:?}"
    );
    assert!(doctor.stdout.contains("fix:"), "{doctor:?}");

    // Pointed at the real model, the same check passes and says what it loaded.
    let dir = models::minilm().display().to_string();
    let doctor = sb.run_with_env(
        &["doctor", "--check", "embedding_model"],
        &[("HEARTHNET_EMBEDDING_MODEL_DIR", &dir)],
    );
    assert_eq!(doctor.code, 0, "{doctor:?}");
    assert!(doctor.stdout.contains("384 dimensions"), "{doctor:?}");
}

const SMOLLM: &str = "smollm2-135m";

fn llm_node(max_concurrent: u32) -> (Sandbox, common::RunningNode) {
    let sb = Sandbox::new();
    sb.init_non_interactive("talker");
    let backends = models::gguf_backend(SMOLLM, &models::smollm(), max_concurrent);
    let node = sb.start_node(&[("HEARTHNET_LLM_BACKENDS", &backends)]);
    (sb, node)
}

fn frames(reply: hearthnet_client::CallReply) -> Vec<(String, Value)> {
    let hearthnet_client::CallReply::Stream(frames) = reply else {
        panic!("not a stream");
    };
    frames
        .map(|f| {
            let f = f.unwrap();
            (f.event, f.data)
        })
        .collect()
}

/// The value of the sample `name{labels}` on `/metrics`, 0 if absent.
fn sample(metrics: &str, name: &str) -> f64 {
    let prefix = format!("{name}{{model=\"{SMOLLM}\",backend=\"gguf\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[test]
fn llm_chat_streams_a_real_answer_token_by_token() {
    let (sb, _node) = llm_node(2);
    let before = sb.client().get_text("/metrics").unwrap();
    let body = models::france(SMOLLM, 24);
    let run = sb.run(
        &[
            "call",
            "llm.chat@1.0",
            "--stream",
            "--body",
            &body.to_string(),
        ],
        None,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Paris"), "{run:?}");

    let client = sb.client();
    let frames = frames(client.call("llm.chat", "1.0", &body, true, None).unwrap());
    let (done, tokens) = frames.split_last().unwrap();
    assert_eq!(done.0, "done", "{frames:?}");
    assert!(
        tokens.len() >= 3 && tokens.iter().all(|(event, _)| event == "token"),
        "{frames:?}"
    );
    let text: String = tokens
        .iter()
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "The capital of France is Paris.");
    assert_eq!(done.1["stop_reason"], "end");
    assert_eq!(done.1["model"], SMOLLM);
    assert!(done.1["tokens_in"].as_u64().unwrap() > 10, "{done:?}");

    // Both calls so far are counted for the model: tokens both ways, the
    // wait for the first text and the rate after it.
    let after = sb.client().get_text("/metrics").unwrap();
    let tokens_out = done.1["tokens_out"].as_f64().unwrap();
    let tokens_in = done.1["tokens_in"].as_f64().unwrap();
    for (name, moved) in [
        ("hearthnet_llm_tokens_generated_total", 2.0 * tokens_out),
        ("hearthnet_llm_prompt_tokens_total", 2.0 * tokens_in),
        ("hearthnet_llm_time_to_first_token_seconds_count", 2.0),
        ("hearthnet_llm_tokens_per_second_count", 2.0),
    ] {
        assert_eq!(
            sample(&after, name) - sample(&before, name),
            moved,
            "{name}:\n{after}"
        );
    }
    assert!(
        sample(&after, "hearthnet_llm_tokens_per_second_sum") > 0.0,
        "{after}"
    );

    // Not streamed: the whole message and the same counts.
    let hearthnet_client::CallReply::Json(answer) =
        client.call("llm.chat", "1.0", &body, false, None).unwrap()
    else {
        panic!("a stream");
    };
    assert_eq!(answer["output"]["message"]["content"], text.as_str());
    assert_eq!(answer["meta"]["tokens_out"], done.1["tokens_out"]);

    // max_tokens and stop sequences end the answer early.
    let short = client
        .call("llm.chat", "1.0", &models::france(SMOLLM, 2), false, None)
        .unwrap();
    let hearthnet_client::CallReply::Json(short) = short else {
        panic!()
    };
    assert_eq!(
        (
            short["meta"]["tokens_out"].as_u64(),
            short["meta"]["stop_reason"].as_str()
        ),
        (Some(2), Some("max_tokens"))
    );
    let mut stopped = models::france(SMOLLM, 24);
    stopped["input"]["stop"] = json!([" Paris"]);
    let hearthnet_client::CallReply::Json(stopped) = client
        .call("llm.chat", "1.0", &stopped, false, None)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        stopped["output"]["message"]["content"],
        "The capital of France is"
    );
    assert_eq!(stopped["meta"]["stop_reason"], "stop_sequence");

    // llm.complete continues a text.
    let complete = json!({"params": {"model": SMOLLM}, "input": {"prompt": "The capital of France is", "max_tokens": 3, "temperature": 0}});
    let hearthnet_client::CallReply::Json(completed) = client
        .call("llm.complete", "1.0", &complete, false, None)
        .unwrap()
    else {
        panic!()
    };
    assert!(
        completed["output"]["text"]
            .as_str()
            .unwrap()
            .contains("Paris"),
        "{completed}"
    );
}

#[test]
fn extra_callers_wait_for_the_model_then_are_refused_and_a_caller_who_leaves_makes_room() {
    // One generation at a time, one call waiting.
    let (sb, _node) = llm_node(1);
    let client = sb.client();
    let quick = json!({"params": {"model": SMOLLM}, "input": {"prompt": "Hello", "max_tokens": 1}});
    let ask_quick = || {
        let reply = client.call("llm.complete", "1.0", &quick, false, None);
        match reply {
            Ok(hearthnet_client::CallReply::Json(_)) => {}
            Ok(_) => panic!("a stream"),
            Err(e) => panic!("{e}"),
        }
    };
    ask_quick(); // loads the model

    let long = json!({"params": {"model": SMOLLM}, "input": {"prompt": "Once upon a time", "max_tokens": 4000, "temperature": 0.8}});
    let hearthnet_client::CallReply::Stream(mut first) = client
        .call("llm.complete", "1.0", &long, true, None)
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(first.next().unwrap().unwrap().event, "token");
    // A second long call waits for the slot; a third is refused at once.
    let waiting = std::thread::spawn({
        let client = sb.client();
        let long = long.clone();
        move || {
            let hearthnet_client::CallReply::Stream(mut frames) = client
                .call("llm.complete", "1.0", &long, true, None)
                .unwrap()
            else {
                panic!()
            };
            frames.next().unwrap().unwrap().event
        }
    });
    let in_flight = || {
        sb.client()
            .caps()
            .unwrap()
            .capabilities
            .iter()
            .find(|c| c.name == "llm.complete")
            .map_or(0, |c| c.in_flight)
    };
    common::wait_until(
        std::time::Duration::from_secs(10),
        "the second call to wait for the model",
        || in_flight() == 2,
    );
    let refused = sb.run(
        &["call", "llm.complete@1.0", "--body", &quick.to_string()],
        None,
    );
    assert_eq!(refused.code, 5, "{refused:?}");
    assert!(refused.stderr.contains("capacity_exceeded"), "{refused:?}");

    // The first caller leaves: the waiting call gets the model.
    drop(first);
    assert_eq!(waiting.join().unwrap(), "token");
}
