//! Sentences per second of our embedder (`hearthnet_embed::SentenceModel`,
//! batches of 32, the real all-MiniLM-L6-v2), for the comparison with
//! sentence-transformers in BENCHMARKS.md; printed, never asserted.
//!
//! `embedbench write FILE N`: N generated sentences, one a line, for
//! `benches/embeddings/st_bench.py` to embed the same ones.
//! `embedbench run FILE PASSES`: embeds the file's sentences PASSES times
//! after one warm-up pass and prints each pass's rate. Threads: as many
//! as `RAYON_NUM_THREADS` says (candle reads it), else one per core.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

mod benchdata;

use std::time::Instant;

use hearthnet_embed::ModelDir;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: embedbench write FILE N | embedbench run FILE PASSES";
    let (Some(command), Some(file), Some(n)) = (args.get(1), args.get(2), args.get(3)) else {
        panic!("{usage}");
    };
    let n: usize = n.parse().expect(usage);
    match command.as_str() {
        "write" => {
            let mut text = benchdata::Text::new(32);
            // A few sentences on each topic, as notes have them.
            let sentences: Vec<String> = (0..n)
                .map(|i| {
                    if i % 8 == 0 {
                        text.new_topic();
                    }
                    text.sentence()
                })
                .collect();
            std::fs::write(file, sentences.join("\n") + "\n").unwrap();
        }
        "run" => {
            let sentences: Vec<String> = std::fs::read_to_string(file)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            let model = ModelDir::inspect(&hearthnet_test_models::minilm())
                .unwrap()
                .load()
                .unwrap();
            // candle's rule: RAYON_NUM_THREADS, else one thread per core.
            let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .to_string()
            });
            model.embed(&sentences, true, &|| false).unwrap();
            for pass in 1..=n {
                let (started, cpu) = (Instant::now(), benchdata::cpu_seconds());
                let vectors = model.embed(&sentences, true, &|| false).unwrap();
                let (secs, cpu) = (
                    started.elapsed().as_secs_f64(),
                    benchdata::cpu_seconds() - cpu,
                );
                assert_eq!(vectors.len(), sentences.len());
                println!(
                    "hearthnet-embed pass {pass}: {} sentences, batch 32, {threads} threads: {:.1} sentences/s, {:.1} sentences/CPU-s",
                    sentences.len(),
                    sentences.len() as f64 / secs,
                    sentences.len() as f64 / cpu
                );
            }
        }
        _ => panic!("{usage}"),
    }
}
