//! An `openai_compatible` backend against a real OpenAI-compatible server:
//! another HearthNet node's gateway. Node B serves SmolLM2 in-process and
//! its gateway on its local API; node A (another community, so it cannot
//! reach B's bus) offers the model under another name through B's
//! `/v1/chat/completions`, with B's key from an environment variable.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod common;

use common::{Sandbox, models};
use hearthnet_client::CallReply;
use serde_json::{Value, json};

const SMOLLM: &str = "smollm2-135m";
const RELAYED: &str = "smollm-via-b";
/// Not `HEARTHNET_…`: those are configuration overrides.
const KEY_VAR: &str = "B_GATEWAY_KEY";

fn answer(client: &hearthnet_client::LocalClient, body: &Value) -> Value {
    match client.call("llm.chat", "1.0", body, false, None).unwrap() {
        CallReply::Json(answer) => answer,
        CallReply::Stream(_) => panic!("a stream"),
    }
}

#[test]
fn a_node_streams_tokens_from_another_nodes_gateway_honouring_stop_and_max_tokens() {
    let b = Sandbox::new();
    b.init_non_interactive("server");
    let backends = models::gguf_backend(SMOLLM, &models::smollm(), 1);
    let b_node = b.start_node(&[("HEARTHNET_LLM_BACKENDS", &backends)]);
    let key = b.run(&["api-key"], None);
    assert_eq!(key.code, 0, "{key:?}");
    let key = key.stdout.trim().to_owned();

    let a = Sandbox::new();
    a.init_non_interactive("client");
    let relay = format!(
        r#"[{{name = "b", kind = "openai_compatible", model = "{RELAYED}", remote_model = "{SMOLLM}", base_url = "http://{}/v1", api_key_env = "{KEY_VAR}", max_concurrent = 1}}]"#,
        b_node.api
    );
    let _a_node = a.start_node(&[("HEARTHNET_LLM_BACKENDS", &relay), (KEY_VAR, &key)]);

    // A offers the model as its own, served by a server.
    let caps = a.run(&["caps", "--json"], None);
    assert!(caps.stdout.contains(RELAYED), "{caps:?}");
    assert!(caps.stdout.contains("openai_compatible"), "{caps:?}");

    // Streamed through A: the text B's model gives (greedy, so the same).
    let body = models::france(RELAYED, 24);
    let run = a.run(
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
    assert!(
        run.stdout.contains("The capital of France is Paris."),
        "{run:?}"
    );
    let direct = answer(&b.client(), &models::france(SMOLLM, 24));
    assert_eq!(
        direct["output"]["message"]["content"],
        "The capital of France is Paris."
    );

    // max_tokens and a stop sequence go through both nodes; the counts
    // are B's own (its gateway reports the usage).
    let short = answer(&a.client(), &models::france(RELAYED, 2));
    assert_eq!(short["meta"]["model"], RELAYED);
    assert_eq!(
        (
            short["meta"]["tokens_out"].as_u64(),
            short["meta"]["stop_reason"].as_str()
        ),
        (Some(2), Some("max_tokens"))
    );
    assert!(short["meta"]["tokens_in"].as_u64().unwrap() > 10, "{short}");
    let mut stopped = models::france(RELAYED, 24);
    stopped["input"]["stop"] = json!([" Paris"]);
    let stopped = answer(&a.client(), &stopped);
    assert_eq!(
        stopped["output"]["message"]["content"],
        "The capital of France is"
    );
    // B cut at the stop sequence and said `stop`, which OpenAI's API
    // uses for the model's end too: A cannot tell them apart.
    assert_eq!(stopped["meta"]["stop_reason"], "end");

    // A counts the calls for its model name, as served by a server.
    let metrics = a.client().get_text("/metrics").unwrap();
    assert!(
        metrics.contains(&format!(
            "hearthnet_llm_time_to_first_token_seconds_count{{model=\"{RELAYED}\",backend=\"openai_compatible\"}} 3"
        )),
        "{metrics}"
    );

    // B generated them all: A's three and the one asked of B directly.
    let metrics = b.client().get_text("/metrics").unwrap();
    assert!(
        metrics.contains(&format!(
            "hearthnet_llm_time_to_first_token_seconds_count{{model=\"{SMOLLM}\",backend=\"gguf\"}} 4"
        )),
        "{metrics}"
    );

    // doctor on A asks B's gateway for its models.
    let doctor = a.run_with_env(
        &["doctor", "--check", "llm_backend_reachable"],
        &[("HEARTHNET_LLM_BACKENDS", &relay), (KEY_VAR, &key)],
    );
    assert_eq!(doctor.code, 0, "{doctor:?}");
    assert!(
        doctor
            .stdout
            .contains(&format!("{SMOLLM} listed by http://")),
        "{doctor:?}"
    );
    let doctor = a.run_with_env(
        &["doctor", "--check", "llm_backend_reachable"],
        &[("HEARTHNET_LLM_BACKENDS", &relay), (KEY_VAR, "wrong")],
    );
    assert_eq!(doctor.code, 1, "{doctor:?}");
    assert!(doctor.stdout.contains("HTTP 401"), "{doctor:?}");
}
