//! llama-gen: benchmark llama.cpp (llama-cpp-2) on a GGUF.
//! usage: llama-gen <model.gguf> [--mode bench|cancel] [--reps N] [--gen N] [--chunk N] [--threads N]
use anyhow::{Context, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROMPT: &str = "HearthNet is a local-first network of small computers that live in homes, \
schools and libraries. Each node keeps its own data, talks to its neighbours over the local \
network, and only reaches the wider internet when its owner allows it. The assistant running on \
a node should answer questions about documents stored on that node, summarise long texts, and \
explain technical topics in plain language. Write a detailed explanation of how such a network \
could share a language model between nodes while keeping every household's data private, and \
list the trade-offs in latency, energy use and reliability. ";

fn peak_rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// process CPU seconds (user+sys, all threads) from /proc/self/stat
fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = &s[s.rfind(')').map(|i| i + 2).unwrap_or(0)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|x| x.parse().ok()).unwrap_or(0.0);
    (ut + st) / 100.0
}

struct GenStats {
    cpu_prefill: f64,
    cpu_decode: f64,
    prefill: Duration,
    ttft: Duration,
    decode: Duration,
    n_decoded: usize,
    tokens: Vec<LlamaToken>,
    cancelled: bool,
}

fn generate(
    ctx: &mut LlamaContext,
    prompt: &[LlamaToken],
    n_gen: usize,
    chunk: usize,
    cancel: &AtomicBool,
) -> Result<GenStats> {
    ctx.clear_kv_cache();
    let mut sampler = LlamaSampler::greedy();
    let mut batch = LlamaBatch::new(chunk.max(1), 1);
    let c0 = cpu_s();
    let t0 = Instant::now();
    let mut pos: i32 = 0;
    let n = prompt.len();
    for (ci, c) in prompt.chunks(chunk).enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Ok(GenStats { cpu_prefill: 0.0, cpu_decode: 0.0, prefill: t0.elapsed(), ttft: Duration::ZERO, decode: Duration::ZERO, n_decoded: 0, tokens: vec![], cancelled: true });
        }
        batch.clear();
        for (i, t) in c.iter().enumerate() {
            let last = ci * chunk + i == n - 1;
            batch.add(*t, pos, &[0], last)?;
            pos += 1;
        }
        ctx.decode(&mut batch).context("prefill decode")?;
    }
    let mut next = sampler.sample(ctx, batch.n_tokens() - 1);
    let ttft = t0.elapsed();
    let mut tokens = vec![next];
    let c1 = cpu_s();
    let t1 = Instant::now();
    let mut cancelled = false;
    for _ in 1..n_gen {
        if cancel.load(Ordering::Relaxed) {
            cancelled = true;
            break;
        }
        batch.clear();
        batch.add(next, pos, &[0], true)?;
        pos += 1;
        ctx.decode(&mut batch).context("decode")?;
        next = sampler.sample(ctx, 0);
        tokens.push(next);
    }
    let c2 = cpu_s();
    Ok(GenStats { cpu_prefill: c1 - c0, cpu_decode: c2 - c1, prefill: ttft, ttft, decode: t1.elapsed(), n_decoded: tokens.len() - 1, tokens, cancelled })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).context("model path")?.clone();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let mode = get("--mode").unwrap_or_else(|| "bench".into());
    let reps: usize = get("--reps").map(|s| s.parse().unwrap()).unwrap_or(3);
    let n_gen: usize = get("--gen").map(|s| s.parse().unwrap()).unwrap_or(128);
    let chunk: usize = get("--chunk").map(|s| s.parse().unwrap()).unwrap_or(64);
    let threads: i32 = get("--threads").map(|s| s.parse().unwrap()).unwrap_or(2);

    let t_load = Instant::now();
    let mut backend = LlamaBackend::init()?;
    if std::env::var_os("LLAMA_LOGS").is_none() {
        backend.void_logs();
    }
    let sysinfo = unsafe { std::ffi::CStr::from_ptr(llama_cpp_sys_2::llama_print_system_info()) };
    println!("system_info: {}", sysinfo.to_string_lossy());
    let model = LlamaModel::load_from_file(&backend, &path, &LlamaModelParams::default())?;
    let cparams = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(4096))
        .with_n_batch(chunk as u32)
        .with_n_ubatch(chunk as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(&backend, cparams)?;
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
    let vocab = model.vocab();
    println!("load_ms={load_ms:.0} bos={:?} eos={:?} n_vocab={}", vocab.bos(), vocab.eos(), model.n_vocab());
    println!("meta general.architecture={:?} chat_template_len={:?}",
        model.meta_val_str("general.architecture").ok(),
        model.meta_val_str("tokenizer.chat_template").map(|s| s.len()).ok());

    let base = vocab.tokenize(PROMPT.as_bytes(), false, false);
    let prompt_of = |n: usize| -> Vec<LlamaToken> { base.iter().cycle().take(n).copied().collect() };
    let no_cancel = AtomicBool::new(false);

    if mode == "cancel" {
        let prompt = prompt_of(2000);
        generate(&mut ctx, &prompt_of(64), 2, chunk, &no_cancel)?;
        let mut lats = Vec::new();
        for i in 0..reps {
            let flag = Arc::new(AtomicBool::new(false));
            let delay = Duration::from_millis(200 + 150 * i as u64);
            let f2 = flag.clone();
            let setter = std::thread::spawn(move || {
                std::thread::sleep(delay);
                f2.store(true, Ordering::SeqCst);
                Instant::now()
            });
            let r = generate(&mut ctx, &prompt, 64, chunk, &flag)?;
            let t_ret = Instant::now();
            let t_set = setter.join().unwrap();
            let lat = t_ret.saturating_duration_since(t_set).as_secs_f64() * 1e3;
            println!("cancel try {i}: delay {delay:?} cancelled={} latency_ms={lat:.1}", r.cancelled);
            lats.push(lat);
        }
        let max = lats.iter().cloned().fold(0.0, f64::max);
        println!("CANCEL p50_ms={:.1} max_ms={max:.1}", median(lats.clone()));
        println!("peak_rss_mb={:.1}", peak_rss_kb() as f64 / 1024.0);
        return Ok(());
    }

    generate(&mut ctx, &prompt_of(64), 4, chunk, &no_cancel)?;
    let (mut p128, mut p512, mut dec, mut ttft) = (vec![], vec![], vec![], vec![]);
    let mut first_tokens = vec![];
    let (mut cpu_p, mut cpu_d): (Vec<f64>, Vec<f64>) = (vec![], vec![]);
    for r in 0..reps {
        let s = generate(&mut ctx, &prompt_of(128), n_gen, chunk, &no_cancel)?;
        p128.push(128.0 / s.prefill.as_secs_f64());
        ttft.push(s.ttft.as_secs_f64() * 1e3);
        cpu_p.push(128.0 / s.cpu_prefill.max(0.01));
        cpu_d.push(s.n_decoded as f64 / s.cpu_decode.max(0.01));
        dec.push(s.n_decoded as f64 / s.decode.as_secs_f64());
        if r == 0 {
            first_tokens = s.tokens.clone();
        }
        let s = generate(&mut ctx, &prompt_of(512), 1, chunk, &no_cancel)?;
        p512.push(512.0 / s.prefill.as_secs_f64());
        println!(
            "rep {r}: prefill128 {:.1} tok/s  ttft {:.1} ms  decode {:.2} tok/s  prefill512 {:.1} tok/s",
            p128.last().unwrap(), ttft.last().unwrap(), dec.last().unwrap(), p512.last().unwrap()
        );
    }
    println!(
        "RESULT prefill128={:.1} prefill512={:.1} decode={:.2} ttft_ms={:.1} load_ms={load_ms:.0} peak_rss_mb={:.1} cpu_prefill128_tok_per_cpu_s={:.1} cpu_decode_tok_per_cpu_s={:.2}",
        median(p128), median(p512), median(dec), median(ttft), peak_rss_kb() as f64 / 1024.0, median(cpu_p), median(cpu_d)
    );
    let ids: Vec<i32> = first_tokens.iter().take(16).map(|t| t.0).collect();
    println!("first 16 greedy ids: {ids:?}");
    let mut text = Vec::new();
    for t in first_tokens.iter().take(32) {
        text.extend(vocab.token_to_piece(*t, false, None));
    }
    println!("text: {:?}", String::from_utf8_lossy(&text));
    Ok(())
}
