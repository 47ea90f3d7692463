//! `hearthnet log [--follow] [--level LEVEL] [--component NAME]` (spec
//! §3.6): the node's JSON log files, filtered; with `--follow` it behaves
//! like `tail -F`, moving on to the next day's file when the log rotates
//! and reopening a file that was replaced or truncated.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearthnet_config::Env;
use hearthnet_observability::logging::level_rank;
use serde_json::Value;

use crate::cli::LogArgs;
use crate::exit::{CliResult, ExitStatus};
use crate::printer::{DIM, FAIL, FIX};

/// Lines shown before following, like `tail`.
const BACKLOG_LINES: usize = 50;
const POLL: Duration = Duration::from_millis(200);

struct Filter {
    min_rank: u8,
    component: Option<String>,
    json: bool,
}

impl Filter {
    fn keeps(&self, entry: &Value) -> bool {
        let rank = entry["level"]
            .as_str()
            .and_then(level_rank)
            .unwrap_or(u8::MAX);
        let component_ok = self.component.as_deref().is_none_or(|c| {
            entry["component"]
                .as_str()
                .is_some_and(|have| have.starts_with(c))
        });
        rank >= self.min_rank && component_ok
    }

    fn render(&self, line: &str) -> Option<String> {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            return (self.min_rank == 0 && self.component.is_none()).then(|| line.to_owned());
        };
        if !self.keeps(&entry) {
            return None;
        }
        if self.json {
            return Some(line.to_owned());
        }
        Some(human(&entry))
    }
}

fn human(entry: &Value) -> String {
    let s = |k: &str| entry[k].as_str().unwrap_or_default();
    let level = s("level").to_uppercase();
    let styled_level = match s("level") {
        "error" => format!("{FAIL}{level:5}{FAIL:#}"),
        "warn" => format!("{FIX}{level:5}{FIX:#}"),
        _ => format!("{level:5}"),
    };
    let fields: Vec<String> = entry
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "ts" | "level" | "component" | "msg"))
        .map(|(k, v)| match v {
            Value::String(text) => format!("{k}={text}"),
            other => format!("{k}={other}"),
        })
        .collect();
    format!(
        "{DIM}{}{DIM:#} {styled_level} {}: {} {DIM}{}{DIM:#}",
        s("ts"),
        s("component"),
        s("msg"),
        fields.join(" ")
    )
    .trim_end()
    .to_owned()
}

pub fn run(config: Option<&Path>, env: &Env, args: LogArgs) -> CliResult {
    let loaded = hearthnet_config::load(config, env)?;
    let dir = loaded.paths().log_dir;
    let filter = Filter {
        min_rank: args.level.map_or(0, |l| level_rank(l.name()).unwrap_or(0)),
        component: args.component,
        json: args.json,
    };
    let files = log_files(&dir);
    if files.is_empty() && !args.follow {
        crate::printer::hint(format!(
            "no log files in {} yet; the node writes them once it runs",
            dir.display()
        ));
        return Ok(ExitStatus::Success);
    }
    let mut backlog: Vec<String> = Vec::new();
    let mut last_read: Option<Tail> = None;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // Follow on from exactly what was read, so a line written while
        // the backlog prints is neither lost nor shown twice.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        last_read = Some(Tail::at(file.clone(), complete as u64));
        backlog.extend(text[..complete].lines().filter_map(|l| filter.render(l)));
        if backlog.len() > BACKLOG_LINES * 4 {
            backlog.drain(..backlog.len() - BACKLOG_LINES);
        }
    }
    let skip = backlog.len().saturating_sub(BACKLOG_LINES);
    for line in &backlog[skip..] {
        anstream::println!("{line}");
    }
    if args.follow {
        follow(&dir, last_read, &filter);
    }
    Ok(ExitStatus::Success)
}

/// `<date>.log` files, oldest first (names sort by date).
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

struct Tail {
    path: PathBuf,
    offset: u64,
    inode: u64,
    partial: String,
}

impl Tail {
    fn at(path: PathBuf, offset: u64) -> Self {
        let inode = std::fs::metadata(&path).map_or(0, |m| m.ino());
        Self {
            path,
            offset,
            inode,
            partial: String::new(),
        }
    }

    /// Complete new lines since the last read.
    fn read_new(&mut self) -> Vec<String> {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Vec::new();
        };
        if meta.ino() != self.inode || meta.len() < self.offset {
            // Replaced or truncated: start over, as `tail -F` does.
            self.inode = meta.ino();
            self.offset = 0;
            self.partial.clear();
        }
        let mut buf = Vec::new();
        if let Ok(mut f) = File::open(&self.path)
            && f.seek(SeekFrom::Start(self.offset)).is_ok()
        {
            let _ = f.read_to_end(&mut buf);
        }
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut lines = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            lines.push(line.trim_end().to_owned());
        }
        lines
    }
}

fn follow(dir: &Path, start: Option<Tail>, filter: &Filter) {
    let mut tail = start;
    let stdout = std::io::stdout();
    loop {
        if let Some(t) = tail.as_mut() {
            for line in t.read_new() {
                if let Some(out) = filter.render(&line) {
                    let mut lock = anstream::AutoStream::auto(stdout.lock());
                    if writeln!(lock, "{out}").is_err() {
                        return; // stdout closed (e.g. `| head`)
                    }
                }
            }
        }
        let newer = log_files(dir)
            .into_iter()
            .find(|f| tail.as_ref().is_none_or(|t| f > &t.path));
        match newer {
            Some(next) => {
                // Drain what is left of the old file before moving on.
                if let Some(t) = tail.as_mut() {
                    for line in t.read_new() {
                        if let Some(out) = filter.render(&line) {
                            anstream::println!("{out}");
                        }
                    }
                }
                tail = Some(Tail::at(next, 0));
            }
            None => std::thread::sleep(POLL),
        }
    }
}
