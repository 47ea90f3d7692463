//! SmolLM2-135M-Instruct (the packaged Q4_1 GGUF, `scripts/models`) run by
//! the in-process engine: its tokenizer, chat template and a real answer.

use hearthnet_llm::candle_engine::CandleEngine;
use hearthnet_llm::generate::{Request, Sampling, StopReason, generate};
use hearthnet_llm::template::{ChatTemplate, Message};
use hearthnet_test_models::smollm;

#[test]
fn the_header_summary_agrees_with_the_full_header() {
    let summary = hearthnet_llm::gguf::GgufSummary::read(&smollm()).unwrap();
    let full = hearthnet_llm::gguf::GgufModel::open(&smollm()).unwrap();
    assert_eq!(summary.architecture, full.architecture);
    assert_eq!(summary.context_length, full.context_length);
}

#[test]
fn smollm_answers_in_its_own_chat_format() {
    let (engine, model) = CandleEngine::load(&smollm()).unwrap();
    assert_eq!(model.architecture, "llama");
    // Digits one by one, as SmolLM's pre-tokenizer cuts them.
    let digits = model.tokenizer.encode("2026", false).unwrap();
    assert_eq!(digits.get_ids().len(), 4, "{:?}", digits.get_tokens());
    let im_end = model.tokenizer.token_to_id("<|im_end|>").unwrap();
    assert!(model.stop_ids.contains(&im_end));

    let template = ChatTemplate::new(
        model.chat_template.as_deref().unwrap(),
        model.bos.as_deref(),
        model.eos.as_deref(),
    )
    .unwrap();
    let user = Message {
        role: "user".into(),
        content: "What is the capital of France?".into(),
    };
    let default = template.render(std::slice::from_ref(&user)).unwrap();
    assert!(
        default.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "the template's default system prompt: {default}"
    );
    let system = Message {
        role: "system".into(),
        content: "You are a helpful assistant.".into(),
    };
    let prompt = template.render(&[system, user]).unwrap();
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
    let tokens = model
        .tokenizer
        .encode(prompt.as_str(), false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(
        tokens[0],
        model.tokenizer.token_to_id("<|im_start|>").unwrap(),
        "special tokens whole"
    );

    let request = Request {
        prompt: &tokens,
        max_tokens: 24,
        sampling: Sampling {
            temperature: 0.0,
            top_p: 1.0,
            seed: Some(1),
        },
        stop: &[],
    };
    let mut streamed = String::new();
    let done = generate(
        &engine,
        &model.tokenizer,
        &model.stop_ids,
        &request,
        &|| false,
        &mut |t| {
            streamed.push_str(t);
            true
        },
    )
    .unwrap();
    assert_eq!(streamed, done.text);
    assert!(done.text.contains("Paris"), "{done:?}");
    assert!(done.tokens_out <= 24);
    assert_eq!(done.tokens_in, tokens.len());

    // Greedy is deterministic; max_tokens and a stop sequence end it early.
    let again = generate(
        &engine,
        &model.tokenizer,
        &model.stop_ids,
        &request,
        &|| false,
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(again.text, done.text);
    let short = generate(
        &engine,
        &model.tokenizer,
        &model.stop_ids,
        &Request {
            max_tokens: 2,
            sampling: request.sampling.clone(),
            ..request
        },
        &|| false,
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(
        (short.tokens_out, short.stop_reason),
        (2, StopReason::MaxTokens)
    );
    let stop = vec!["Paris".to_owned()];
    let stopped = generate(
        &engine,
        &model.tokenizer,
        &model.stop_ids,
        &Request {
            stop: &stop,
            sampling: request.sampling.clone(),
            ..request
        },
        &|| false,
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(stopped.stop_reason, StopReason::StopSequence);
    assert!(
        !stopped.text.contains("Paris") && done.text.starts_with(&stopped.text),
        "{stopped:?}"
    );
}
/// Cancelling mid-generation frees the engine within 200 ms, measured from
/// the cancel to the moment `generate` returns, over several tries; a
/// cancel while the prompt is read ends it there, with nothing written.
#[test]
fn cancelling_frees_the_engine_within_200_ms() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let (engine, model) = CandleEngine::load(&smollm()).unwrap();
    let prompt: Vec<u32> = model
        .tokenizer
        .encode("Once upon a time, by the river,", false)
        .unwrap()
        .get_ids()
        .to_vec();
    let request = |seed| Request {
        prompt: &prompt,
        max_tokens: 4000,
        sampling: Sampling {
            temperature: 0.8,
            top_p: 0.95,
            seed: Some(seed),
        },
        stop: &[],
    };

    // During the prompt: the first check after the cancel stops it.
    let cancelled = AtomicBool::new(false);
    let passes = std::cell::Cell::new(0);
    let done = generate(
        &engine,
        &model.tokenizer,
        &model.stop_ids,
        &request(0),
        &|| {
            passes.set(passes.get() + 1);
            if passes.get() == 2 {
                cancelled.store(true, Ordering::SeqCst);
            }
            cancelled.load(Ordering::SeqCst)
        },
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(
        (done.stop_reason, done.tokens_out),
        (StopReason::Cancelled, 0)
    );

    let mut worst = Duration::ZERO;
    for (seed, after_tokens) in [1, 2, 4].into_iter().enumerate() {
        let cancelled = AtomicBool::new(false);
        let mut cancelled_at = None;
        let mut seen = 0;
        let done = generate(
            &engine,
            &model.tokenizer,
            &model.stop_ids,
            &request(seed as u64),
            &|| cancelled.load(Ordering::SeqCst),
            &mut |_| {
                seen += 1;
                if seen == after_tokens {
                    cancelled_at = Some(Instant::now());
                    cancelled.store(true, Ordering::SeqCst);
                }
                true
            },
        )
        .unwrap();
        let took = cancelled_at.unwrap().elapsed();
        assert_eq!(done.stop_reason, StopReason::Cancelled);
        eprintln!("cancelled after {after_tokens} pieces of text: engine free after {took:?}");
        worst = worst.max(took);
    }
    assert!(worst < Duration::from_millis(200), "worst {worst:?}");
}
