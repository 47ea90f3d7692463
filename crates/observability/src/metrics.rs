//! Prometheus metrics of a running node (X03 §4), rendered in the text
//! exposition format on `/metrics`.

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub capability: String,
    /// `ok` or a contract error code.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CapabilityLabel {
    pub capability: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `served` or `fetched`.
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LlmLabels {
    /// The name callers ask for (`params.model`).
    pub model: String,
    /// `gguf` or `openai_compatible`.
    pub backend: String,
}

/// What one generation did, as [`Metrics::record_generation`] counts it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Generation {
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// From the call's arrival (waiting for a slot and loading included,
    /// as a caller sees it) to the first text; `None` when none came.
    pub time_to_first_token: Option<std::time::Duration>,
    /// Tokens after the first per second of generating them; `None` when
    /// fewer than two came.
    pub tokens_per_second: Option<f64>,
}

/// Every metric the node exports. Cheap to update from any thread.
pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<CallLabels, Counter>,
    pub duration_ms: Family<CapabilityLabel, Histogram>,
    pub in_flight: Family<CapabilityLabel, Gauge>,
    pub peers: Gauge,
    pub event_log_head: Gauge,
    pub rate_limited: Family<CapabilityLabel, Counter>,
    pub signature_failures: Family<ReasonLabel, Counter>,
    pub events_rejected: Family<ReasonLabel, Counter>,
    pub quarantines: Counter,
    pub raw_chunk_bytes: Family<DirectionLabel, Counter>,
    /// Request signatures checked together, per check.
    pub signature_batch_size: Histogram,
    pub llm_prompt_tokens: Family<LlmLabels, Counter>,
    pub llm_tokens_generated: Family<LlmLabels, Counter>,
    pub llm_time_to_first_token: Family<LlmLabels, Histogram>,
    pub llm_tokens_per_second: Family<LlmLabels, Histogram>,
    /// 0 online, 1 degraded, 2 offline (M09).
    pub emergency_mode: Gauge,
    /// When the mode began, in Unix seconds: how long it has held is the
    /// scrape's time less this.
    pub emergency_mode_since: Gauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10_000.0, 60_000.0,
    ])
}

fn first_token_histogram() -> Histogram {
    Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0])
}

/// From a Raspberry Pi's small model to a GPU server's.
fn decode_rate_histogram() -> Histogram {
    Histogram::new([1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hearthnet");
        let requests = Family::<CallLabels, Counter>::default();
        let duration_ms = Family::<CapabilityLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let in_flight = Family::<CapabilityLabel, Gauge>::default();
        let peers = Gauge::default();
        let event_log_head = Gauge::default();
        let rate_limited = Family::<CapabilityLabel, Counter>::default();
        let signature_failures = Family::<ReasonLabel, Counter>::default();
        let quarantines = Counter::default();
        let events_rejected = Family::<ReasonLabel, Counter>::default();
        let raw_chunk_bytes = Family::<DirectionLabel, Counter>::default();
        let signature_batch_size = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0]);
        let llm_prompt_tokens = Family::<LlmLabels, Counter>::default();
        let llm_tokens_generated = Family::<LlmLabels, Counter>::default();
        let llm_time_to_first_token = Family::<LlmLabels, Histogram>::new_with_constructor(
            first_token_histogram as fn() -> Histogram,
        );
        let llm_tokens_per_second = Family::<LlmLabels, Histogram>::new_with_constructor(
            decode_rate_histogram as fn() -> Histogram,
        );
        let emergency_mode = Gauge::default();
        let emergency_mode_since = Gauge::default();
        registry.register(
            "emergency_mode",
            "Internet reachability: 0 online, 1 degraded, 2 offline",
            emergency_mode.clone(),
        );
        registry.register(
            "emergency_mode_since_seconds",
            "When the current emergency mode began (Unix seconds)",
            emergency_mode_since.clone(),
        );
        registry.register("requests", "Capability calls by result", requests.clone());
        registry.register(
            "request_duration_ms",
            "Capability call latency in milliseconds",
            duration_ms.clone(),
        );
        registry.register("active_calls", "Calls in flight", in_flight.clone());
        registry.register("nodes_online", "Peers currently visible", peers.clone());
        registry.register(
            "event_log_lamport_head",
            "Head Lamport of the community event log",
            event_log_head.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by rate limits",
            rate_limited.clone(),
        );
        registry.register(
            "signature_failures",
            "Requests refused for their signature",
            signature_failures.clone(),
        );
        registry.register(
            "quarantines",
            "Capability entries put in quarantine",
            quarantines.clone(),
        );
        registry.register(
            "events_rejected",
            "Events refused by validation, by reason",
            events_rejected.clone(),
        );
        registry.register(
            "raw_chunk_bytes",
            "Blob chunk bytes moved as raw records (/blobs/v1/chunks), served or fetched",
            raw_chunk_bytes.clone(),
        );
        registry.register(
            "signature_batch_size",
            "Request signatures checked in one batch",
            signature_batch_size.clone(),
        );
        registry.register(
            "llm_prompt_tokens",
            "Prompt tokens read by LLM generations, by model (0 where a server reports no usage)",
            llm_prompt_tokens.clone(),
        );
        registry.register(
            "llm_tokens_generated",
            "Tokens generated by LLM generations, by model",
            llm_tokens_generated.clone(),
        );
        registry.register_with_unit(
            "llm_time_to_first_token",
            "Time from an LLM call's arrival to its first text, by model",
            prometheus_client::registry::Unit::Seconds,
            llm_time_to_first_token.clone(),
        );
        registry.register(
            "llm_tokens_per_second",
            "Generation rate of LLM calls after their first token, one observation a call, by model",
            llm_tokens_per_second.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            duration_ms,
            in_flight,
            peers,
            event_log_head,
            rate_limited,
            signature_failures,
            events_rejected,
            quarantines,
            raw_chunk_bytes,
            signature_batch_size,
            llm_prompt_tokens,
            llm_tokens_generated,
            llm_time_to_first_token,
            llm_tokens_per_second,
            emergency_mode,
            emergency_mode_since,
        }
    }

    /// Count one finished LLM generation of `labels`' model.
    pub fn record_generation(&self, labels: &LlmLabels, generation: &Generation) {
        self.llm_prompt_tokens
            .get_or_create(labels)
            .inc_by(generation.tokens_in);
        self.llm_tokens_generated
            .get_or_create(labels)
            .inc_by(generation.tokens_out);
        if let Some(first) = generation.time_to_first_token {
            self.llm_time_to_first_token
                .get_or_create(labels)
                .observe(first.as_secs_f64());
        }
        if let Some(rate) = generation.tokens_per_second {
            self.llm_tokens_per_second
                .get_or_create(labels)
                .observe(rate);
        }
    }

    /// Count `bytes` of raw chunk transfer in `direction`.
    pub fn raw_chunks(&self, direction: &str, bytes: usize) {
        self.raw_chunk_bytes
            .get_or_create(&DirectionLabel {
                direction: direction.to_owned(),
            })
            .inc_by(bytes as u64);
    }

    pub fn record_call(&self, capability: &str, result: &str, ms: f64) {
        self.requests
            .get_or_create(&CallLabels {
                capability: capability.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        self.duration_ms
            .get_or_create(&CapabilityLabel {
                capability: capability.to_owned(),
            })
            .observe(ms);
    }

    pub fn in_flight(&self, capability: &str) -> Gauge {
        self.in_flight
            .get_or_create(&CapabilityLabel {
                capability: capability.to_owned(),
            })
            .clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry.lock());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.record_call("experimental.echo", "ok", 3.0);
        m.record_call("experimental.echo", "timeout", 30_000.0);
        m.in_flight("experimental.echo").inc();
        let text = m.render();
        assert!(
            text.contains(
                "hearthnet_requests_total{capability=\"experimental.echo\",result=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "hearthnet_request_duration_ms_count{capability=\"experimental.echo\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("hearthnet_active_calls{capability=\"experimental.echo\"} 1"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn llm_generations_are_counted_by_model_and_backend() {
        let m = Metrics::new();
        let labels = LlmLabels {
            model: "smollm2".into(),
            backend: "gguf".into(),
        };
        let generation = Generation {
            tokens_in: 12,
            tokens_out: 5,
            time_to_first_token: Some(std::time::Duration::from_millis(300)),
            tokens_per_second: Some(25.0),
        };
        m.record_generation(&labels, &generation);
        m.record_generation(&labels, &generation);
        let text = m.render();
        let labels = "{model=\"smollm2\",backend=\"gguf\"}";
        for line in [
            format!("hearthnet_llm_prompt_tokens_total{labels} 24"),
            format!("hearthnet_llm_tokens_generated_total{labels} 10"),
            format!("hearthnet_llm_time_to_first_token_seconds_count{labels} 2"),
            format!("hearthnet_llm_tokens_per_second_count{labels} 2"),
        ] {
            assert!(text.contains(&line), "{line} missing from {text}");
        }
    }
}
