//! SmolLM2-135M-Instruct (the packaged Q4_1 GGUF, `scripts/models`) run
//! in-process: its tokenizer, chat template and a real answer, by the
//! engine this build chooses (llama.cpp by default) and by candle, and how
//! fast a cancel frees the engine.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hearthnet_llm::candle_engine::CandleEngine;
use hearthnet_llm::engine;
use hearthnet_llm::generate::{Engine, Finished, Request, Sampling, StopReason, generate};
use hearthnet_llm::gguf::GgufModel;
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
    let (engine, model) = engine::load(&smollm(), 1).unwrap();
    answers_paris(&*engine, &model);
}

/// candle runs the models of a pure-Rust build and of x86-64 CPUs without
/// AVX2, so it is tested whichever engine the build chooses.
#[test]
fn candle_answers_too() {
    let (engine, model) = CandleEngine::load(&smollm()).unwrap();
    answers_paris(&engine, &model);
}

fn answers_paris(engine: &dyn Engine, model: &GgufModel) {
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
        engine,
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
        engine,
        &model.tokenizer,
        &model.stop_ids,
        &request,
        &|| false,
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(again.text, done.text);
    let short = generate(
        engine,
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
        engine,
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

/// Cancelling frees the engine within 200 ms: the time from the cancel
/// (set by another thread, as the service's caller does) until `generate`
/// has returned and dropped the engine's state, during a long prompt and
/// during the answer.
///
/// The bound: llama.cpp reads the whole prompt in one pass and asks the
/// cancel between the pass's operations (its abort callback); an answer
/// token is one pass of 20–40 ms on a busy 2-core machine, after which the
/// cancel is seen. Candle, which cannot stop inside a pass, reads the
/// prompt in passes of about `PREFILL_SLICE` (100 ms), half the bound.
/// Measured 2026-11-30 at a load of about 7, llama.cpp: free after
/// 16–29 ms (the test prints the times). 200 ms is the bound, so
/// it is not loosened.
#[test]
fn cancelling_frees_the_engine_within_200_ms() {
    let (engine, model) = engine::load(&smollm(), 1).unwrap();
    let tokens = |text: &str| -> Vec<u32> {
        model
            .tokenizer
            .encode(text, false)
            .unwrap()
            .get_ids()
            .to_vec()
    };
    let short = tokens("Once upon a time, by the river,");
    let long = tokens(&"The river runs past the old mill, where the baker keeps bees. ".repeat(80));
    assert!(long.len() > 1000, "{} tokens", long.len());
    let sampling = Sampling {
        temperature: 0.8,
        top_p: 0.95,
        seed: Some(7),
    };

    let mut worst = Duration::ZERO;
    // (prompt, what to wait for before cancelling: pieces of answer text
    // out, then a delay)
    let tries: [(&[u32], usize, u64); 5] = [
        (&long, 0, 150),
        (&long, 0, 500),
        (&long, 0, 900),
        (&short, 1, 5),
        (&short, 8, 17),
    ];
    for (prompt, pieces, delay_ms) in tries {
        let request = Request {
            prompt,
            max_tokens: 4000,
            sampling: sampling.clone(),
            stop: &[],
        };
        let cancelled = AtomicBool::new(false);
        let emitted = AtomicUsize::new(0);
        let (done, took) = std::thread::scope(|s| {
            let canceller = s.spawn(|| {
                while emitted.load(Ordering::SeqCst) < pieces {
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(delay_ms));
                cancelled.store(true, Ordering::SeqCst);
                Instant::now()
            });
            // No stop tokens: the answer cannot end before the cancel.
            let done: Finished = generate(
                &*engine,
                &model.tokenizer,
                &[],
                &request,
                &|| cancelled.load(Ordering::SeqCst),
                &mut |_| {
                    emitted.fetch_add(1, Ordering::SeqCst);
                    true
                },
            )
            .unwrap();
            let returned = Instant::now();
            (done, returned - canceller.join().unwrap())
        });
        eprintln!(
            "cancelled {delay_ms} ms after {pieces} pieces ({} prompt tokens): {} tokens out, engine free after {took:?}",
            prompt.len(),
            done.tokens_out
        );
        assert_eq!(done.stop_reason, StopReason::Cancelled);
        if pieces == 0 {
            assert_eq!(done.tokens_out, 0, "cancelled while reading the prompt");
        }
        worst = worst.max(took);
    }
    assert!(worst < Duration::from_millis(200), "worst {worst:?}");
}
