//! `hearthnet rag list|ingest|reindex` (M05 through the bus): the node's
//! corpora, files put into one, and a corpus's vectors made again. Each
//! file goes into the blob store the way `hearthnet file add` puts it
//! there, then `rag.ingest` indexes it by its CID; a file the node cannot
//! read or extract is reported and skipped so one bad file in a folder
//! does not cost the others. `reindex` is the node's self-only
//! `rag.reindex`, its progress drawn from the streamed frames.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::anyhow;
use hearthnet_client::{CallReply, LocalClient};
use hearthnet_config::Env;
use hearthnet_observability::doctor::human_bytes;
use hearthnet_wire::local::{FileAdded, names};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{file, node_client};
use crate::cli::{JsonArgs, RagIngestArgs, RagReindexArgs};
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

/// The node's own bound (M05 §4.2), checked here so a typo is a usage
/// error before any file is stored rather than one failure per file.
const MAX_CORPUS_NAME: usize = 64;
/// Files one ingest takes: a folder argument must not turn into an
/// unbounded walk of the disk.
const MAX_FILES: usize = 10_000;
/// Folder depth followed; deeper folders are most likely a loop or a mistake.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Deserialize, serde::Serialize)]
pub(super) struct CorpusInfo {
    pub(super) name: String,
    docs: u64,
    chunks: u64,
    size_bytes: u64,
    language_majority: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CorpusList {
    corpora: Vec<CorpusInfo>,
}

#[derive(Debug, Deserialize)]
struct Ingested {
    chunks_indexed: u64,
}

const REINDEXED: &str = "the node's answer to rag.reindex";

/// A `progress` frame of `rag.reindex`: chunks with a new vector, of all.
#[derive(Debug, Deserialize)]
struct ReindexProgress {
    done: u64,
    total: u64,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct Reindexed {
    corpus: String,
    model_before: String,
    model_after: String,
    dim: u64,
    chunks: u64,
}

#[derive(Debug, Deserialize)]
struct ReindexMeta {
    ms: u64,
}

#[derive(Debug, Deserialize)]
struct ReindexAnswer {
    output: Reindexed,
    meta: ReindexMeta,
}

/// What `rag reindex --json` prints.
#[derive(Debug, serde::Serialize)]
struct ReindexSummary<'a> {
    #[serde(flatten)]
    reindexed: &'a Reindexed,
    ms: u64,
}

pub fn list(config: Option<&Path>, env: &Env, args: JsonArgs) -> CliResult {
    let client = node_client::connect(config, env)?;
    let corpora = corpora(&client)?;
    if args.json {
        println!("{}", serde_json::to_string(&corpora)?);
        return Ok(ExitStatus::Success);
    }
    let rows: Vec<Vec<String>> = corpora
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.docs.to_string(),
                c.chunks.to_string(),
                human_bytes(c.size_bytes),
                c.language_majority.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    printer::table(&["NAME", "DOCS", "CHUNKS", "SIZE", "LANGUAGE"], &rows, 0);
    Ok(ExitStatus::Success)
}

/// The corpora this node holds, as `rag.list_corpora` lists them.
pub(super) fn corpora(client: &LocalClient) -> Result<Vec<CorpusInfo>, CliError> {
    let list: CorpusList = output(client, "rag.list_corpora", json!({}), json!({}))?;
    Ok(list.corpora)
}

/// A corpus name as the node accepts it, or a usage error.
pub(super) fn checked_corpus(name: &str) -> Result<&str, CliError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_CORPUS_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(name)
    } else {
        Err(CliError::new(
            ExitStatus::Usage,
            anyhow!("`{name}` is not a corpus name: 1 to {MAX_CORPUS_NAME} of a-z, 0-9 and -"),
        ))
    }
}

/// A non-streamed call of a bus capability; its `output`, decoded.
pub(super) fn output<T: DeserializeOwned>(
    client: &LocalClient,
    capability: &'static str,
    params: Value,
    input: Value,
) -> Result<T, CliError> {
    let body = json!({"params": params, "input": input});
    match client
        .call(capability, "1.0", &body, false, None)
        .map_err(CliError::from_client)?
    {
        CallReply::Json(mut v) => file::decoded(capability, v["output"].take()),
        CallReply::Stream(_) => Err(CliError::new(
            ExitStatus::Failure,
            anyhow!("{capability} answered with a stream"),
        )),
    }
}

/// One file's fate, as `--json` prints it.
#[derive(Debug, serde::Serialize)]
struct Outcome {
    path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    doc_cid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn ingest(config: Option<&Path>, env: &Env, args: RagIngestArgs) -> CliResult {
    let corpus = checked_corpus(&args.corpus)?;
    let files = files_of(&args.paths)?;
    let client = node_client::connect(config, env)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(files.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "[{bar:30}] {pos}/{len} files, {msg} [{elapsed}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let started = Instant::now();
    let (mut chunks, mut failed) = (0u64, 0usize);
    for path in &files {
        let outcome = match ingest_one(&client, corpus, path) {
            Ok((cid, n)) => {
                chunks += n;
                Outcome {
                    path: path.clone(),
                    doc_cid: Some(cid),
                    chunks: Some(n),
                    error: None,
                }
            }
            // The node refused this file (unreadable, unsupported,
            // too large): the others may still go in.
            Err(e) if e.status == ExitStatus::Usage => {
                failed += 1;
                Outcome {
                    path: path.clone(),
                    doc_cid: None,
                    chunks: None,
                    error: Some(format!("{:#}", e.error)),
                }
            }
            // No node, no embedding provider, no room: every other file
            // would fail the same way.
            Err(e) => {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                return Err(e);
            }
        };
        report(&outcome, args.json, bar.as_ref());
        if let Some(bar) = &bar {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!(
                "{chunks} chunks ({:.1} chunks/s)",
                chunks as f64 / secs
            ));
            bar.inc(1);
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let done = files.len() - failed;
    printer::status(format!(
        "ingested {done} of {} file(s) into corpus `{corpus}`: {chunks} chunks in {:.1} s{}",
        files.len(),
        started.elapsed().as_secs_f64(),
        if failed > 0 {
            format!("; {failed} failed (listed above)")
        } else {
            String::new()
        }
    ));
    Ok(if failed == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}

pub fn reindex(config: Option<&Path>, env: &Env, args: RagReindexArgs) -> CliResult {
    let corpus = checked_corpus(&args.corpus)?;
    let client = node_client::connect(config, env)?;
    let bar = (std::io::stderr().is_terminal() && !args.json).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "[{bar:30}] {pos}/{len} chunks, {per_sec}, eta {eta} [{elapsed}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let input = match &args.embedding_model {
        Some(model) => json!({"embedding_model": model}),
        None => json!({}),
    };
    let body = json!({"params": {"corpus": corpus}, "input": input});
    let answer: Result<ReindexAnswer, CliError> =
        file::stream_call(&client, "rag.reindex", &body, REINDEXED, |data| {
            let p: ReindexProgress = file::decoded("a progress frame of rag.reindex", data)?;
            if let Some(bar) = &bar {
                bar.set_length(p.total);
                bar.set_position(p.done);
            }
            Ok(())
        });
    if let Some(bar) = &bar {
        match &answer {
            Ok(_) => bar.finish_and_clear(),
            Err(_) => bar.abandon(),
        }
    }
    let answer = answer.map_err(|e| match e.status {
        // Cut short (the deadline, a provider gone): nothing made is lost.
        ExitStatus::Unavailable => CliError::new(
            e.status,
            e.error.context(
                "the reindex stopped; the corpus keeps its old vectors, and the new ones made so far are kept: run the same command again to resume",
            ),
        ),
        _ => e,
    })?;
    let done = &answer.output;
    if args.json {
        let summary = ReindexSummary {
            reindexed: done,
            ms: answer.meta.ms,
        };
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let models = if done.model_before == done.model_after {
            format!("made again with {}", done.model_after)
        } else {
            format!("{} → {}", done.model_before, done.model_after)
        };
        printer::status(format!(
            "reindexed corpus `{}`: {} chunks, {models} ({} dimensions), in {:.1} s",
            done.corpus,
            done.chunks,
            done.dim,
            answer.meta.ms as f64 / 1000.0
        ));
    }
    Ok(ExitStatus::Success)
}

/// Store `path` in the blob store, then index it: its CID and chunk count.
fn ingest_one(client: &LocalClient, corpus: &str, path: &Path) -> Result<(String, u64), CliError> {
    let added: FileAdded = file::streamed(
        client,
        "file.local.add",
        names::FILE_ADDED,
        json!({"path": path, "pin": false}),
        false,
    )?;
    let cid = added.cid.to_string();
    // The file name is a hint for the format; the title stays the
    // document's own (a Markdown heading, an HTML <title>) where it has
    // one, and the node falls back to the file name.
    let filename = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let ingested: Ingested = output(
        client,
        "rag.ingest",
        json!({"corpus": corpus}),
        json!({"doc_cid": cid, "filename": filename}),
    )?;
    Ok((cid, ingested.chunks_indexed))
}

fn report(outcome: &Outcome, json: bool, bar: Option<&indicatif::ProgressBar>) {
    let line = if json {
        serde_json::to_string(outcome).unwrap_or_default()
    } else {
        match (&outcome.doc_cid, &outcome.error) {
            (Some(cid), _) => format!(
                "{cid}  {} chunks  {}",
                outcome.chunks.unwrap_or_default(),
                outcome.path.display()
            ),
            (None, error) => {
                let reason = error.as_deref().unwrap_or("failed");
                let message = format!("failed: {}: {reason}", outcome.path.display());
                match bar {
                    Some(bar) => bar.suspend(|| printer::status(&message)),
                    None => printer::status(&message),
                }
                return;
            }
        }
    };
    match bar {
        Some(bar) => bar.suspend(|| println!("{line}")),
        None => println!("{line}"),
    }
}

/// The files named, folders walked (sorted, hidden entries skipped,
/// symlinked folders not followed), as absolute paths: the node resolves
/// paths from its own working directory.
fn files_of(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let usage = |e: anyhow::Error| CliError::new(ExitStatus::Usage, e);
    let mut files = Vec::new();
    for path in paths {
        let absolute =
            std::path::absolute(path).map_err(|e| usage(anyhow!("{}: {e}", path.display())))?;
        let meta =
            std::fs::metadata(&absolute).map_err(|e| usage(anyhow!("{}: {e}", path.display())))?;
        if meta.is_dir() {
            walk(&absolute, 0, &mut files).map_err(usage)?;
        } else {
            files.push(absolute);
        }
        if files.len() > MAX_FILES {
            return Err(usage(anyhow!(
                "more than {MAX_FILES} files; ingest fewer folders at a time"
            )));
        }
    }
    if files.is_empty() {
        return Err(usage(anyhow!(
            "no files to ingest (hidden files are skipped)"
        )));
    }
    Ok(files)
}

fn walk(dir: &Path, depth: usize, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if depth > MAX_DEPTH {
        return Err(anyhow!(
            "{}: folders nested deeper than {MAX_DEPTH}",
            dir.display()
        ));
    }
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(dir)
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&path, depth + 1, files)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            files.push(path);
        }
        if files.len() > MAX_FILES {
            return Ok(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_in_order_without_hidden_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/.git")).unwrap();
        for f in ["b.md", "a.txt", ".hidden", "sub/c.html", "sub/.git/config"] {
            std::fs::write(root.join(f), "x").unwrap();
        }
        let files = files_of(&[root.to_path_buf()]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.txt", "b.md", "sub/c.html"]);
        let missing = files_of(&[root.join("nope")]).unwrap_err();
        assert_eq!(missing.status, ExitStatus::Usage);
    }

    #[test]
    fn corpus_names_are_checked_before_any_work() {
        assert!(checked_corpus("garden-2").is_ok());
        for bad in ["", "Garden", "../x", &"x".repeat(65)] {
            assert_eq!(checked_corpus(bad).unwrap_err().status, ExitStatus::Usage);
        }
    }
}
