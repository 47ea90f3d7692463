//! Structured logs (X03 §3): one JSON object per line in daily files
//! `<LOG>/<YYYY-MM-DD>.log` (UTC, kept `LOG_RETENTION_DAYS`), and a human
//! form on stderr when stderr is a terminal (warnings and errors only when
//! it is not, so a service manager still sees them).
//!
//! A line carries `ts`, `level`, `component` (the emitting module),
//! `msg`, and the event's fields, `trace_id` among them when the event
//! belongs to a call.

use std::fmt;
use std::io::IsTerminal;
use std::path::Path;

use hearthnet_base::constants::LOG_RETENTION_DAYS;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the file writer alive; dropping it flushes every buffered line.
pub struct LogGuard {
    _file: WorkerGuard,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open the log directory {}: {source}", path.display())]
    Dir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open a log file in {}: {source}", path.display())]
    File {
        path: std::path::PathBuf,
        source: tracing_appender::rolling::InitError,
    },
    /// Another logger is already installed in this process.
    #[error("cannot install the logger: {0}")]
    Install(#[source] tracing_subscriber::util::TryInitError),
}

/// Lines waiting for the log file's writer thread. The queue is allocated
/// and touched whole at start: the crate's default of 128,000 lines held
/// 4 MiB of an idle node's memory. A burst beyond this drops lines rather
/// than block the node.
const BUFFERED_LOG_LINES: usize = 4096;

/// Install the node's logging. `level` is the configured level name.
pub fn init(log_dir: &Path, level: &str, debug: bool) -> Result<LogGuard, LogError> {
    std::fs::create_dir_all(log_dir).map_err(|source| LogError::Dir {
        path: log_dir.to_path_buf(),
        source,
    })?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_suffix("log")
        .max_log_files(LOG_RETENTION_DAYS as usize)
        .build(log_dir)
        .map_err(|source| LogError::File {
            path: log_dir.to_path_buf(),
            source,
        })?;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LOG_LINES)
        .finish(appender);
    let level = if debug { "debug" } else { level };
    let file_filter = EnvFilter::new(format!("warn,hearthnet={level}"));
    let file_layer = tracing_subscriber::fmt::layer()
        .event_format(JsonLine)
        .with_writer(writer)
        .with_filter(file_filter);
    let stderr_level = if std::io::stderr().is_terminal() {
        level
    } else {
        "warn"
    };
    let stderr_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_filter(EnvFilter::new(format!("warn,hearthnet={stderr_level}")));
    tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .try_init()
        .map_err(LogError::Install)?;
    Ok(LogGuard { _file: guard })
}

/// The on-disk line format.
struct JsonLine;

#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert("ts".into(), Value::String(now_millis()));
        line.insert(
            "level".into(),
            Value::String(level_name(*event.metadata().level()).into()),
        );
        line.insert(
            "component".into(),
            Value::String(event.metadata().target().to_owned()),
        );
        let msg = fields
            .0
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        line.insert("msg".into(), msg);
        for (k, v) in fields.0 {
            line.insert(k, v);
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// RFC 3339 UTC with milliseconds (tracing only, Contract §1.1).
fn now_millis() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

/// Severity order of level names, for filtering (`None`: not a level).
pub fn level_rank(name: &str) -> Option<u8> {
    ["trace", "debug", "info", "warn", "error"]
        .iter()
        .position(|l| *l == name)
        .map(|p| p as u8)
}
