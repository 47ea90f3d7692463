//! hearthnet-gen: tokens/s and time to first token of hearthnet-llm's
//! engines, through the generation loop the node runs (`generate`), on the
//! same prompt as `llama-ref`.
//!
//! usage: hearthnet-gen MODEL.gguf llama|candle THREADS [REPS] [PROMPT_TOKENS] [GEN_TOKENS]
//! (candle's threads are its process-wide pool: run-bench.sh sets
//! RAYON_NUM_THREADS as well.)

use std::path::Path;
use std::time::Instant;

use hearthnet_llm::candle_engine::CandleEngine;
use hearthnet_llm::generate::{Engine, Request, Sampling, generate};
use hearthnet_llm::llama_engine::LlamaEngine;

const PROMPT: &str = "HearthNet is a local-first network of small computers that live in homes, \
schools and libraries. Each node keeps its own data, talks to its neighbours over the local \
network, and only reaches the wider internet when its owner allows it. The assistant running on \
a node should answer questions about documents stored on that node, summarise long texts, and \
explain technical topics in plain language. Write a detailed explanation of how such a network \
could share a language model between nodes while keeping every household's data private, and \
list the trade-offs in latency, energy use and reliability. ";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err("usage: hearthnet-gen MODEL.gguf llama|candle THREADS [REPS] [PROMPT_TOKENS] [GEN_TOKENS]".into());
    }
    let path = Path::new(&args[1]);
    let threads: usize = args[3].parse()?;
    let number = |i: usize, default: usize| args.get(i).map_or(Ok(default), |a| a.parse());
    let (reps, n_prompt, n_gen) = (number(4, 3)?, number(5, 128)?, number(6, 128)?);

    let loading = Instant::now();
    let (engine, model): (Box<dyn Engine>, _) = match args[2].as_str() {
        "llama" => {
            let (engine, model) = LlamaEngine::load(path, threads)?;
            (Box::new(engine), model)
        }
        "candle" => {
            let (engine, model) = CandleEngine::load(path)?;
            (Box::new(engine), model)
        }
        other => return Err(format!("no engine {other:?}").into()),
    };
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    let base = model
        .tokenizer
        .encode(PROMPT, false)
        .map_err(|e| e.to_string())?
        .get_ids()
        .to_vec();
    let prompt: Vec<u32> = base.iter().cycle().take(n_prompt).copied().collect();
    // Greedy, and no stop tokens: every run generates exactly n_gen.
    let request = Request {
        prompt: &prompt,
        max_tokens: n_gen,
        sampling: Sampling {
            temperature: 0.0,
            top_p: 1.0,
            seed: Some(1),
        },
        stop: &[],
    };

    let (mut ttft, mut decode) = (Vec::new(), Vec::new());
    let mut text = String::new();
    // Rep 0 warms up and is not counted, as in llama-ref.
    for rep in 0..=reps {
        let started = Instant::now();
        let mut first = None;
        let mut out = String::new();
        let done = generate(
            &*engine,
            &model.tokenizer,
            &[],
            &request,
            &|| false,
            &mut |piece| {
                first.get_or_insert_with(Instant::now);
                out.push_str(piece);
                true
            },
        )?;
        let ended = Instant::now();
        let first = first.ok_or("no text came out")?;
        if rep == 0 {
            text = out;
            continue;
        }
        ttft.push((first - started).as_secs_f64() * 1e3);
        decode.push((done.tokens_out - 1) as f64 / (ended - first).as_secs_f64());
        println!(
            "rep {rep}: ttft {:.1} ms decode {:.2} tok/s",
            ttft.last().unwrap_or(&0.0),
            decode.last().unwrap_or(&0.0)
        );
    }
    println!("text: {:?}", text.chars().take(120).collect::<String>());
    println!(
        "RESULT ttft_ms={:.1} decode={:.2} load_ms={load_ms:.0}",
        median(ttft),
        median(decode)
    );
    Ok(())
}
