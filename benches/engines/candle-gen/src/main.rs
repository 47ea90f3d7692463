//! candle-gen: benchmark candle-transformers quantized_llama on a GGUF.
//!
//! usage: candle-gen <model.gguf> [--requant q8_0|q4_0|q4k|none] [--mode bench|cancel|info]
//!        [--reps N] [--gen N] [--chunk N]
use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, tokenizer::TokenizerFromGguf, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use std::io::Cursor;
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
    for l in s.lines() {
        if let Some(v) = l.strip_prefix("VmHWM:") {
            return v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
        }
    }
    0
}

fn argmax(logits: &Tensor) -> Result<u32> {
    let v: Vec<f32> = logits.squeeze(0)?.to_vec1()?;
    let mut best = 0usize;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    Ok(best as u32)
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
    tokens: Vec<u32>,
    cancelled: bool,
}

/// Prefill in chunks of `chunk` tokens, then greedy-decode `n_gen` tokens.
/// `cancel` is checked between every forward call.
fn generate(
    model: &mut ModelWeights,
    dev: &Device,
    prompt: &[u32],
    n_gen: usize,
    chunk: usize,
    cancel: &AtomicBool,
) -> Result<GenStats> {
    model.clear_kv_cache();
    let c0 = cpu_s();
    let t0 = Instant::now();
    let mut pos = 0;
    let mut logits = None;
    for c in prompt.chunks(chunk) {
        if cancel.load(Ordering::Relaxed) {
            return Ok(GenStats { cpu_prefill: 0.0, cpu_decode: 0.0, prefill: t0.elapsed(), ttft: Duration::ZERO, decode: Duration::ZERO, n_decoded: 0, tokens: vec![], cancelled: true });
        }
        let x = Tensor::new(c, dev)?.unsqueeze(0)?;
        logits = Some(model.forward(&x, pos)?);
        pos += c.len();
    }
    let mut next = argmax(logits.as_ref().context("empty prompt")?)?;
    let ttft = t0.elapsed();
    let prefill = ttft;
    let mut tokens = vec![next];
    let c1 = cpu_s();
    let t1 = Instant::now();
    let mut cancelled = false;
    for _ in 1..n_gen {
        if cancel.load(Ordering::Relaxed) {
            cancelled = true;
            break;
        }
        let x = Tensor::new(&[next], dev)?.unsqueeze(0)?;
        let l = model.forward(&x, pos)?;
        pos += 1;
        next = argmax(&l)?;
        tokens.push(next);
    }
    // decode tok/s counts the n_gen-1 forward passes after the first token
    let c2 = cpu_s();
    Ok(GenStats { cpu_prefill: c1 - c0, cpu_decode: c2 - c1, prefill, ttft, decode: t1.elapsed(), n_decoded: tokens.len() - 1, tokens, cancelled })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).context("model path")?.clone();
    let get = |k: &str| args.iter().position(|a| a == k).and_then(|i| args.get(i + 1)).cloned();
    let requant = get("--requant").unwrap_or_else(|| "none".into());
    let mode = get("--mode").unwrap_or_else(|| "bench".into());
    let reps: usize = get("--reps").map(|s| s.parse().unwrap()).unwrap_or(3);
    let n_gen: usize = get("--gen").map(|s| s.parse().unwrap()).unwrap_or(128);
    let chunk: usize = get("--chunk").map(|s| s.parse().unwrap()).unwrap_or(64);
    let dev = Device::Cpu;

    // ---- load ----
    let t_load = Instant::now();
    let mut file = std::fs::File::open(&path)?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| e.with_path(&path))?;
    if mode == "info" {
        let mut keys: Vec<_> = content.metadata.keys().collect();
        keys.sort();
        for k in keys {
            let v = &content.metadata[k];
            let s = format!("{v:?}");
            println!("{k} = {}", if s.len() > 160 { format!("{}... ({} chars)", &s[..160], s.len()) } else { s });
        }
        let mut counts = std::collections::BTreeMap::new();
        for (n, ti) in content.tensor_infos.iter() {
            *counts.entry(format!("{:?}", ti.ggml_dtype)).or_insert(0) += 1;
            if !n.starts_with("blk.") || n.starts_with("blk.0.") {
                println!("{n} {:?} {:?}", ti.ggml_dtype, ti.shape);
            }
        }
        println!("dtype counts: {counts:?}");
        return Ok(());
    }
    let tokenizer = tokenizers::Tokenizer::from_gguf(&content).map_err(anyhow::Error::msg)?;
    let md = |k: &str| content.metadata.get(k).and_then(|v| v.to_u32().ok());
    let (bos, eos) = (md("tokenizer.ggml.bos_token_id"), md("tokenizer.ggml.eos_token_id"));
    let mut t_requant = Duration::ZERO;
    let mut model = if requant == "none" {
        ModelWeights::from_gguf(content, &mut file, &dev)?
    } else {
        let tr = Instant::now();
        let target = match requant.as_str() {
            "q8_0" => GgmlDType::Q8_0,
            "q4_0" => GgmlDType::Q4_0,
            "q4k" => GgmlDType::Q4K,
            "q6k" => GgmlDType::Q6K,
            "q8k" => GgmlDType::Q8K,
            "f16" => GgmlDType::F16,
            "f32" => GgmlDType::F32,
            o => bail!("unknown requant {o}"),
        };
        let mut names: Vec<_> = content.tensor_infos.keys().cloned().collect();
        names.sort();
        let mut tensors = Vec::new();
        let mut fallback = 0;
        for n in &names {
            let qt = content.tensor(&mut file, n, &dev)?;
            let qt = if qt.dtype() == GgmlDType::Q4_1 {
                let f = qt.dequantize(&dev)?;
                let last = *f.dims().last().unwrap();
                let dt = if last % target.block_size() == 0 { target } else { fallback += 1; GgmlDType::Q8_0 };
                QTensor::quantize(&f, dt)?
            } else {
                qt
            };
            tensors.push((n.clone(), qt));
        }
        let meta: Vec<(&str, &gguf_file::Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tref: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut buf = Cursor::new(Vec::new());
        gguf_file::write(&mut buf, &meta, &tref)?;
        drop(tensors);
        buf.set_position(0);
        let ct2 = gguf_file::Content::read(&mut buf)?;
        t_requant = tr.elapsed();
        eprintln!("requant to {target:?}: {fallback} tensors fell back to Q8_0 (row not multiple of block)");
        ModelWeights::from_gguf(ct2, &mut buf, &dev)?
    };
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
    println!("load_ms={load_ms:.0} (of which requant {:.0} ms) bos={bos:?} eos={eos:?}", t_requant.as_secs_f64() * 1e3);

    let base: Vec<u32> = tokenizer.encode(PROMPT, false).map_err(anyhow::Error::msg)?.get_ids().to_vec();
    let prompt_of = |n: usize| -> Vec<u32> { base.iter().cycle().take(n).copied().collect() };
    let no_cancel = AtomicBool::new(false);

    if mode == "cancel" {
        let prompt = prompt_of(2000);
        // warm-up
        generate(&mut model, &dev, &prompt_of(64), 2, chunk, &no_cancel)?;
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
            let r = generate(&mut model, &dev, &prompt, 64, chunk, &flag)?;
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

    // warm-up
    generate(&mut model, &dev, &prompt_of(64), 4, chunk, &no_cancel)?;
    let mut p128 = vec![];
    let mut p512 = vec![];
    let mut dec = vec![];
    let mut ttft = vec![];
    let mut first_tokens = vec![];
    let (mut cpu_p, mut cpu_d): (Vec<f64>, Vec<f64>) = (vec![], vec![]);
    for r in 0..reps {
        let s = generate(&mut model, &dev, &prompt_of(128), n_gen, chunk, &no_cancel)?;
        p128.push(128.0 / s.prefill.as_secs_f64());
        ttft.push(s.ttft.as_secs_f64() * 1e3);
        cpu_p.push(128.0 / s.cpu_prefill.max(0.01));
        cpu_d.push(s.n_decoded as f64 / s.cpu_decode.max(0.01));
        dec.push(s.n_decoded as f64 / s.decode.as_secs_f64());
        if r == 0 {
            first_tokens = s.tokens.clone();
        }
        let s = generate(&mut model, &dev, &prompt_of(512), 1, chunk, &no_cancel)?;
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
    println!("first 16 greedy ids: {:?}", &first_tokens[..16.min(first_tokens.len())]);
    println!("text: {:?}", tokenizer.decode(&first_tokens[..32.min(first_tokens.len())], false).unwrap_or_default());
    let _ = eos;
    Ok(())
}
