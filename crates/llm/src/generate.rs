//! Generation, whichever engine runs the weights: the prompt read so that
//! a cancel during a long one is seen quickly too, sampling,
//! text released as whole UTF-8 characters, stop tokens and stop
//! sequences (text that may begin one is held back until it cannot),
//! `max_tokens`, the context's end, and cancellation between steps.

use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use tokenizers::Tokenizer;

/// Most prompt tokens per forward pass while reading the prompt in slices.
pub const PREFILL_CHUNK: usize = 64;
/// How long one forward pass over the prompt should take for an engine
/// that cannot stop inside a pass: a cancel is seen between passes, so
/// this bounds how late it is seen (half the 200 ms a cancel may take, the
/// rest a margin for a busy machine). Small passes waste time: each has a
/// fixed cost (llama.cpp on SmolLM2-135M, one thread: about 8 ms, then
/// 5.5 ms a token), so passes of about this length read the prompt at
/// about 90 % of the speed of one whole pass.
pub const PREFILL_SLICE: std::time::Duration = std::time::Duration::from_millis(100);

/// Asked whether the generation was cancelled; engines may ask it from
/// their own threads in the middle of a forward pass.
pub type Cancelled<'a> = dyn Fn() -> bool + Sync + 'a;

/// One generation's state in an engine: its own KV cache.
pub trait Decoder: Send {
    /// Feed `tokens` at `position` (the count fed before): the logits of
    /// the last one, or `None` if `cancelled` said so during the pass (an
    /// engine that cannot stop inside a pass finishes it and never says
    /// `None`).
    fn feed(
        &mut self,
        tokens: &[u32],
        position: usize,
        cancelled: &Cancelled<'_>,
    ) -> Result<Option<Vec<f32>>, GenerateError>;

    /// Read the whole `prompt` from position 0: the logits of its last
    /// token, or `None` once `cancelled` says so. By default in passes of
    /// about [`PREFILL_SLICE`] with `cancelled` asked between them; an
    /// engine that can stop inside a pass reads it in one, as fast as the
    /// engine can.
    fn prefill(
        &mut self,
        prompt: &[u32],
        cancelled: &Cancelled<'_>,
    ) -> Result<Option<Vec<f32>>, GenerateError> {
        let mut logits = Vec::new();
        let mut fed = 0;
        let mut chunk = 1;
        while fed < prompt.len() {
            if cancelled() {
                return Ok(None);
            }
            let end = (fed + chunk).min(prompt.len());
            let started = std::time::Instant::now();
            let Some(fed_logits) = self.feed(&prompt[fed..end], fed, cancelled)? else {
                return Ok(None);
            };
            logits = fed_logits;
            let took = started.elapsed().as_secs_f64().max(1e-6);
            // The next chunk in proportion to how this pass compared with
            // the slice. A pass costs a fixed part plus a part per token,
            // so a chunk that grows this way stays within the slice, and
            // the chunk settles where a pass takes about the slice.
            let scaled = (end - fed) as f64 * PREFILL_SLICE.as_secs_f64() / took;
            chunk = (scaled as usize).clamp(1, PREFILL_CHUNK);
            fed = end;
        }
        Ok(Some(logits))
    }
}

/// Weights loaded in memory, ready to start generations.
pub trait Engine: Send + Sync {
    /// A generation that will hold at most `tokens` (prompt and answer),
    /// so an engine that allocates its KV cache up front sizes it to fit.
    fn start(&self, tokens: usize) -> Result<Box<dyn Decoder + '_>, GenerateError>;
    /// Most tokens (prompt and answer) one generation may hold.
    fn context_length(&self) -> usize;
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(
        "the prompt is {prompt} tokens; this model holds {context} in all: shorten the conversation"
    )]
    PromptTooLong { prompt: usize, context: usize },
    #[error("the engine failed: {0}")]
    Engine(String),
    #[error("decoding tokens: {0}")]
    Tokenizer(String),
}

impl From<candle_core::Error> for GenerateError {
    fn from(e: candle_core::Error) -> Self {
        Self::Engine(e.to_string())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 picks the likeliest token every time.
    pub temperature: f64,
    pub top_p: f64,
    /// The same seed, prompt and settings give the same answer.
    pub seed: Option<u64>,
}

pub struct Request<'a> {
    pub prompt: &'a [u32],
    pub max_tokens: usize,
    pub sampling: Sampling,
    pub stop: &'a [String],
}

/// Why generation ended (Contract §4.1 `stop_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    End,
    MaxTokens,
    StopSequence,
    Cancelled,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::End => "end",
            Self::MaxTokens => "max_tokens",
            Self::StopSequence => "stop_sequence",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub text: String,
    pub tokens_in: usize,
    pub tokens_out: usize,
    pub stop_reason: StopReason,
}

/// Generate for `request`. `emit` receives the text as it becomes final
/// and answers whether anyone still listens; `cancelled` is asked between
/// forward passes (and inside the prompt's, by an engine that can).
/// Blocking: run it off the async runtime.
pub fn generate(
    engine: &dyn Engine,
    tokenizer: &Tokenizer,
    stop_ids: &[u32],
    request: &Request<'_>,
    cancelled: &Cancelled<'_>,
    emit: &mut dyn FnMut(&str) -> bool,
) -> Result<Finished, GenerateError> {
    let context = engine.context_length();
    let prompt = request.prompt;
    if prompt.is_empty() || prompt.len() >= context {
        return Err(GenerateError::PromptTooLong {
            prompt: prompt.len(),
            context,
        });
    }
    let max_tokens = request.max_tokens.min(context - prompt.len());
    let mut text = Text::new(tokenizer, request.stop);
    let finish = |text: Text<'_>, tokens_out, stop_reason| Finished {
        text: text.text.into_text(),
        tokens_in: prompt.len(),
        tokens_out,
        stop_reason,
    };

    let mut decoder = engine.start(prompt.len() + max_tokens)?;
    let Some(mut logits) = decoder.prefill(prompt, cancelled)? else {
        return Ok(finish(text, 0, StopReason::Cancelled));
    };
    let seed = request.sampling.seed.unwrap_or_else(random_seed);
    let (temperature, top_p) = (request.sampling.temperature, request.sampling.top_p);
    let mut sampler = LogitsProcessor::new(
        seed,
        (temperature > 0.0).then_some(temperature),
        (top_p < 1.0).then_some(top_p),
    );
    let mut position = prompt.len();
    for generated in 0..max_tokens {
        let next = sampler.sample(&Tensor::new(logits.as_slice(), &Device::Cpu)?)?;
        if stop_ids.contains(&next) {
            text.flush(emit);
            return Ok(finish(text, generated, StopReason::End));
        }
        match text.push(next, emit)? {
            Pushed::Stopped => return Ok(finish(text, generated + 1, StopReason::StopSequence)),
            Pushed::Gone => return Ok(finish(text, generated + 1, StopReason::Cancelled)),
            Pushed::Going => {}
        }
        if cancelled() {
            return Ok(finish(text, generated + 1, StopReason::Cancelled));
        }
        if generated + 1 < max_tokens {
            let Some(next_logits) = decoder.feed(&[next], position, cancelled)? else {
                return Ok(finish(text, generated + 1, StopReason::Cancelled));
            };
            logits = next_logits;
            position += 1;
        }
    }
    text.flush(emit);
    Ok(finish(text, max_tokens, StopReason::MaxTokens))
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// What became of a piece of text offered to [`StopText::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Taken; generation goes on.
    Going,
    /// A stop sequence matched: the answer ends before it.
    Stopped,
    /// Nobody listens any more.
    Gone,
}

/// The answer's text as tokens arrive: `pending` tokens do not yet decode
/// to whole characters; [`StopText`] does the rest.
struct Text<'a> {
    tokenizer: &'a Tokenizer,
    pending: Vec<u32>,
    text: StopText<'a>,
}

impl<'a> Text<'a> {
    fn new(tokenizer: &'a Tokenizer, stop: &'a [String]) -> Self {
        Self {
            tokenizer,
            pending: Vec::new(),
            text: StopText::new(stop),
        }
    }

    fn push(
        &mut self,
        token: u32,
        emit: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Pushed, GenerateError> {
        self.pending.push(token);
        let piece = self
            .tokenizer
            .decode(&self.pending, true)
            .map_err(|e| GenerateError::Tokenizer(e.to_string()))?;
        // A character cut between tokens decodes as U+FFFD until its last
        // byte arrives.
        if piece.ends_with('\u{FFFD}') && self.pending.len() < 4 {
            return Ok(Pushed::Going);
        }
        self.pending.clear();
        Ok(self.text.push(&piece, emit))
    }

    fn flush(&mut self, emit: &mut dyn FnMut(&str) -> bool) {
        self.text.flush(emit);
    }
}

/// The answer's text as pieces arrive, whoever produced them (the
/// in-process loop or a server's stream): `done` is final (emitted),
/// `held` may still turn out to begin a stop sequence and is released
/// only once it cannot.
pub struct StopText<'a> {
    stop: &'a [String],
    held: String,
    done: String,
}

impl<'a> StopText<'a> {
    pub fn new(stop: &'a [String]) -> Self {
        Self {
            stop,
            held: String::new(),
            done: String::new(),
        }
    }

    /// Take `piece`; `emit` receives what can no longer begin a stop
    /// sequence and answers whether anyone still listens.
    pub fn push(&mut self, piece: &str, emit: &mut dyn FnMut(&str) -> bool) -> Pushed {
        self.held.push_str(piece);
        if let Some(at) = self
            .stop
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.held.truncate(at);
            self.flush(emit);
            return Pushed::Stopped;
        }
        let keep = self.longest_stop_prefix_at_end();
        let release = self.held.len() - keep;
        let released: String = self.held.drain(..release).collect();
        if released.is_empty() {
            return Pushed::Going;
        }
        self.done.push_str(&released);
        if emit(&released) {
            Pushed::Going
        } else {
            Pushed::Gone
        }
    }

    /// How many bytes at the end of `held` could begin a stop sequence.
    fn longest_stop_prefix_at_end(&self) -> usize {
        let held = &self.held;
        (1..=held.len())
            .rev()
            .filter(|&n| held.is_char_boundary(held.len() - n))
            .find(|&n| {
                let tail = &held[held.len() - n..];
                self.stop.iter().any(|s| s.len() > n && s.starts_with(tail))
            })
            .unwrap_or(0)
    }

    /// The answer ended: what was held back is part of it after all.
    pub fn flush(&mut self, emit: &mut dyn FnMut(&str) -> bool) {
        if !self.held.is_empty() {
            let rest = std::mem::take(&mut self.held);
            emit(&rest);
            self.done.push_str(&rest);
        }
    }

    /// The whole answer emitted so far.
    pub fn into_text(self) -> String {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokenizers::models::wordlevel::WordLevel;

    /// An engine whose "model" always predicts a fixed script of tokens,
    /// so the generation loop's rules can be checked exactly.
    struct Scripted {
        script: Vec<u32>,
        vocab: usize,
        context: usize,
    }

    struct ScriptedDecoder {
        script: Vec<u32>,
        vocab: usize,
        fed: usize,
        prompt: usize,
    }

    impl Engine for Scripted {
        fn start(&self, tokens: usize) -> Result<Box<dyn Decoder + '_>, GenerateError> {
            assert!(tokens <= self.context, "a generation fits the context");
            Ok(Box::new(ScriptedDecoder {
                script: self.script.clone(),
                vocab: self.vocab,
                fed: 0,
                prompt: 0,
            }))
        }
        fn context_length(&self) -> usize {
            self.context
        }
    }

    impl Decoder for ScriptedDecoder {
        fn feed(
            &mut self,
            tokens: &[u32],
            position: usize,
            _: &Cancelled<'_>,
        ) -> Result<Option<Vec<f32>>, GenerateError> {
            assert_eq!(position, self.fed, "positions follow each other");
            if self.prompt == 0 || tokens.len() > 1 {
                self.prompt = position + tokens.len();
            }
            self.fed += tokens.len();
            let step = self.fed - self.prompt;
            let mut logits = vec![0.0; self.vocab];
            let next = self.script.get(step).copied().unwrap_or(0);
            logits[next as usize] = 10.0;
            Ok(Some(logits))
        }
    }

    fn words() -> (Tokenizer, Vec<&'static str>) {
        let words = vec!["<eos>", "Hello", " world", " STOP", "!", " again"];
        let vocab = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u32))
            .collect();
        let model = WordLevel::builder()
            .vocab(vocab)
            .unk_token("<eos>".into())
            .build()
            .unwrap();
        let mut tokenizer = Tokenizer::new(model);
        tokenizer.with_decoder(Some(tokenizers::decoders::fuse::Fuse::new()));
        (tokenizer, words)
    }

    fn run(
        script: &[u32],
        max_tokens: usize,
        stop: &[&str],
        context: usize,
    ) -> (Finished, Vec<String>) {
        let (tokenizer, words) = words();
        let engine = Scripted {
            script: script.to_vec(),
            vocab: words.len(),
            context,
        };
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let prompt = vec![1u32; 100];
        let request = Request {
            prompt: &prompt,
            max_tokens,
            sampling: Sampling {
                temperature: 0.0,
                top_p: 1.0,
                seed: Some(1),
            },
            stop: &stop,
        };
        let mut frames = Vec::new();
        let finished = generate(&engine, &tokenizer, &[0], &request, &|| false, &mut |t| {
            frames.push(t.to_owned());
            true
        })
        .unwrap();
        (finished, frames)
    }

    #[test]
    fn stops_at_the_end_token_at_max_tokens_and_at_the_context() {
        let (done, frames) = run(&[1, 2, 4, 0, 5], 10, &[], 1000);
        assert_eq!(
            (done.text.as_str(), done.stop_reason, done.tokens_out),
            ("Hello world!", StopReason::End, 3)
        );
        assert_eq!(frames.concat(), "Hello world!");
        assert_eq!(done.tokens_in, 100);
        let (done, _) = run(&[1, 2, 4, 0], 2, &[], 1000);
        assert_eq!(
            (done.text.as_str(), done.stop_reason, done.tokens_out),
            ("Hello world", StopReason::MaxTokens, 2)
        );
        // 100 prompt tokens in a context of 102 leave room for two.
        let (done, _) = run(&[1, 2, 4, 0], 10, &[], 102);
        assert_eq!(
            (done.stop_reason, done.tokens_out),
            (StopReason::MaxTokens, 2)
        );
    }

    #[test]
    fn stop_sequences_end_the_answer_and_are_never_streamed() {
        let (done, frames) = run(&[1, 2, 3, 5, 0], 10, &[" STOP"], 1000);
        assert_eq!(
            (done.text.as_str(), done.stop_reason),
            ("Hello world", StopReason::StopSequence)
        );
        assert_eq!(frames.concat(), "Hello world");
        // A stop sequence spanning tokens: " wor" is held back until it
        // cannot begin " world!"; then released.
        let (done, frames) = run(&[1, 2, 4, 5, 0], 10, &[" world!"], 1000);
        assert_eq!(done.text, "Hello");
        assert!(frames.iter().all(|f| !f.contains("world")), "{frames:?}");
        let (done, frames) = run(&[1, 2, 5, 0], 10, &[" world!"], 1000);
        assert_eq!(
            (done.text.as_str(), done.stop_reason),
            ("Hello world again", StopReason::End)
        );
        assert_eq!(frames.concat(), "Hello world again");
    }

    #[test]
    fn a_prompt_that_fills_the_context_is_refused_and_cancelling_ends_early() {
        let (tokenizer, words) = words();
        let engine = Scripted {
            script: vec![1; 50],
            vocab: words.len(),
            context: 100,
        };
        let prompt = vec![1u32; 100];
        let request = Request {
            prompt: &prompt,
            max_tokens: 5,
            sampling: Sampling {
                temperature: 0.0,
                top_p: 1.0,
                seed: None,
            },
            stop: &[],
        };
        let refused = generate(&engine, &tokenizer, &[0], &request, &|| false, &mut |_| {
            true
        });
        assert!(matches!(
            refused,
            Err(GenerateError::PromptTooLong {
                prompt: 100,
                context: 100
            })
        ));

        let engine = Scripted {
            context: 1000,
            ..engine
        };
        // Cancelled during the prompt: nothing is written.
        let asked = AtomicUsize::new(0);
        let during_prompt = generate(
            &engine,
            &tokenizer,
            &[0],
            &request,
            &|| asked.fetch_add(1, Ordering::SeqCst) >= 1,
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(
            (during_prompt.stop_reason, during_prompt.tokens_out),
            (StopReason::Cancelled, 0)
        );
        // Cancelled once the first token is out: it is the last.
        let emitted = AtomicBool::new(false);
        let done = generate(
            &engine,
            &tokenizer,
            &[0],
            &request,
            &|| emitted.load(Ordering::SeqCst),
            &mut |_| {
                emitted.store(true, Ordering::SeqCst);
                true
            },
        )
        .unwrap();
        assert_eq!(
            (done.stop_reason, done.tokens_out),
            (StopReason::Cancelled, 1)
        );
        // A listener that leaves cancels too.
        let done = generate(
            &engine,
            &tokenizer,
            &[0],
            &Request {
                max_tokens: 50,
                ..request
            },
            &|| false,
            &mut |_| false,
        )
        .unwrap();
        assert_eq!(
            (done.stop_reason, done.tokens_out),
            (StopReason::Cancelled, 1)
        );
    }
}
