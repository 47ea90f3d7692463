//! `hearthnet export` (spec §3.9, the right to one's data): a ZIP of what
//! this node holds of its owner, gathered through [`SECTIONS`], with a
//! manifest of every entry's BLAKE3 hash signed by the device key; and
//! `hearthnet export --verify`, which checks such a ZIP within fixed bounds.
//!
//! It reads the node's files directly (the event log read-only), so it
//! works whether the node runs or not. The ZIP is written to a temporary
//! file beside the target and renamed into place, after a check that the
//! disk has room for it.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use hearthnet_base::{DeviceKey, Timestamp};
use hearthnet_config::{Env, LoadedConfig, NodePaths};
use hearthnet_events::Selection;
use serde_json::{Value, json};

use crate::cli::ExportArgs;
use crate::exit::{CliError, CliResult, ExitStatus};
use crate::printer;

/// The signed manifest's name inside the ZIP.
const MANIFEST_ENTRY: &str = "export-manifest.json";
/// What the manifest says it is, so another signed JSON is not taken for one.
const MANIFEST_KIND: &str = "hearthnet.export.v1";

/// What `--verify` accepts at most, checked before the work they bound.
const MAX_ENTRIES: usize = 10_000;
const MAX_ENTRY_BYTES: u64 = 1 << 30;
const MAX_TOTAL_BYTES: u64 = 4 << 30;
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Room asked for beyond the entries' own size: the ZIP's headers and the
/// manifest, and a margin so the disk is not left full.
const SPACE_MARGIN: u64 = 1 << 20;
/// Exports of one day under the default name before `--out` is needed.
const MAX_EXPORTS_A_DAY: u32 = 99;

/// One file of the archive.
struct Entry {
    name: String,
    bytes: Vec<u8>,
}

/// What the sections read from.
struct Sources {
    loaded: LoadedConfig,
    paths: NodePaths,
    key: DeviceKey,
    /// Our authored events (type, envelope), in replay order.
    authored: Vec<(String, Value)>,
}

/// A part of the export: a name for messages and what it gathers.
struct Section {
    name: &'static str,
    gather: fn(&Sources) -> Result<Vec<Entry>, CliError>,
}

/// Every part of the export, in the order of spec §3.9. A component that
/// holds more of the owner's data adds its section here.
const SECTIONS: &[Section] = &[
    Section {
        name: "public manifest",
        gather: public_manifest,
    },
    Section {
        name: "authored events",
        gather: authored_events,
    },
    Section {
        name: "chat history",
        gather: chat_history,
    },
    Section {
        name: "pinned files",
        gather: pinned_files,
    },
    Section {
        name: "market posts",
        gather: market_posts,
    },
    Section {
        name: "settings",
        gather: settings,
    },
];

pub fn run(config: Option<&Path>, env: &Env, args: ExportArgs) -> CliResult {
    if let Some(archive) = &args.verify {
        return verify(archive);
    }
    let loaded = hearthnet_config::load(config, env)?;
    let paths = loaded.paths();
    let key = hearthnet_identity::KeyStore::new(&paths.keys_dir)
        .load()
        .map_err(|e| anyhow!("{e}; an export is signed with the device key (`hearthnet init`)"))?;
    let out = match args.out {
        Some(out) if fs::symlink_metadata(&out).is_ok() => return Err(taken(&out)),
        Some(out) => out,
        None => default_out(env)?,
    };
    let sources = Sources {
        authored: stored(&paths, Selection::AuthoredBy(&key.node_id().full()))?,
        key,
        loaded,
        paths,
    };
    let mut entries = Vec::new();
    for section in SECTIONS {
        let gathered = (section.gather)(&sources).map_err(|e| {
            let context = format!("cannot export the {}", section.name);
            CliError::new(e.status, e.error.context(context))
        })?;
        entries.extend(gathered);
    }
    let key = &sources.key;
    let manifest = signed_manifest(&entries, key)?;
    entries.push(Entry {
        name: MANIFEST_ENTRY.to_owned(),
        bytes: manifest,
    });
    write_archive(&out, &entries)?;
    printer::status(format!(
        "exported {} entries and their manifest, signed by {}",
        entries.len() - 1,
        key.node_id().short()
    ));
    println!("{}", out.display());
    Ok(ExitStatus::Success)
}

/// `~/hearthnet-export-<date>.zip`, or with `-2`, `-3` … after the date
/// when an earlier export of the day is there: an export never replaces
/// another.
fn default_out(env: &Env) -> Result<PathBuf, CliError> {
    let home = env
        .get("HOME")
        .ok_or_else(|| anyhow!("no HOME to put the export in; name a file with --out"))?;
    let date: String = Timestamp::now().to_string().chars().take(10).collect();
    let name = |n: u32| match n {
        1 => format!("hearthnet-export-{date}.zip"),
        n => format!("hearthnet-export-{date}-{n}.zip"),
    };
    (1..=MAX_EXPORTS_A_DAY)
        .map(|n| Path::new(home).join(name(n)))
        .find(|path| fs::symlink_metadata(path).is_err())
        .ok_or_else(|| {
            anyhow!(
                "{} exports of today are in {home} already; name a file with --out",
                MAX_EXPORTS_A_DAY
            )
            .into()
        })
}

/// What `--out` names exists: nothing is replaced.
fn taken(out: &Path) -> CliError {
    anyhow!(
        "{} exists; an export replaces nothing: name another file with --out, or move that one away",
        out.display()
    )
    .into()
}

/// The stored events `which` selects (type, envelope), in replay order;
/// none before the node joined a community.
fn stored(paths: &NodePaths, which: Selection<'_>) -> Result<Vec<(String, Value)>, CliError> {
    let Some(state) = &paths.state_dir else {
        return Ok(Vec::new());
    };
    let database = hearthnet_events::LogPaths::in_state_dir(state).database;
    if !database.exists() {
        return Ok(Vec::new());
    }
    Ok(hearthnet_events::read_stored(&database, which)?)
}

fn json_lines<'a>(events: impl Iterator<Item = &'a Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        out.extend_from_slice(event.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fn public_manifest(sources: &Sources) -> Result<Vec<Entry>, CliError> {
    let mut entries = vec![Entry {
        name: "identity.json".to_owned(),
        bytes: serde_json::to_vec_pretty(&json!({
            "node_id": sources.key.node_id().full(),
            "display_name": sources.loaded.config.identity.display_name,
        }))?,
    }];
    if let Some(state) = &sources.paths.state_dir {
        let path = state.join(hearthnet_identity::community::MANIFEST_FILE);
        match fs::read(&path) {
            Ok(bytes) => entries.push(Entry {
                name: "community-manifest.json".to_owned(),
                bytes,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display()).into()),
        }
    }
    Ok(entries)
}

fn authored_events(sources: &Sources) -> Result<Vec<Entry>, CliError> {
    Ok(vec![Entry {
        name: "events/authored.jsonl".to_owned(),
        bytes: json_lines(sources.authored.iter().map(|(_, e)| e)),
    }])
}

/// Our conversations, opened with the device key: the owner takes them
/// away readable (`chat/messages.jsonl`, as `chat.history` shows them).
fn chat_history(sources: &Sources) -> Result<Vec<Entry>, CliError> {
    let Some(community) = sources.loaded.config.community.community_id else {
        return Ok(Vec::new());
    };
    let events = stored(&sources.paths, Selection::TypePrefix("chat.message."))?;
    let transcript =
        hearthnet_chat::transcript(&sources.key, community, events.iter().map(|(_, e)| e));
    if transcript.unreadable > 0 {
        printer::status(format!(
            "note: {} direct messages to or from this node do not open with its key and are left out",
            transcript.unreadable
        ));
    }
    Ok(vec![Entry {
        name: "chat/messages.jsonl".to_owned(),
        bytes: json_lines(transcript.messages.iter()),
    }])
}

fn market_posts(sources: &Sources) -> Result<Vec<Entry>, CliError> {
    let posts = sources
        .authored
        .iter()
        .filter(|(kind, _)| kind.starts_with("market.post."))
        .map(|(_, e)| e);
    Ok(vec![Entry {
        name: "market/posts.jsonl".to_owned(),
        bytes: json_lines(posts),
    }])
}

/// The pinned blobs' CIDs (`pinned.txt`), with their sizes where the blob's
/// manifest is here. The node records no file names for blobs.
fn pinned_files(sources: &Sources) -> Result<Vec<Entry>, CliError> {
    let blobs = &sources.paths.blobs_dir;
    let pinned = match hearthnet_blobs::pinned_with_names(blobs) {
        Ok(pinned) => pinned,
        // A node that never stored a file has no store yet.
        Err(_) if !blobs.exists() => Vec::new(),
        Err(e) => return Err(anyhow!("cannot read the pins in {}: {e}", blobs.display()).into()),
    };
    let pinned: Vec<Value> = pinned
        .into_iter()
        .map(|(cid, name)| json!({ "cid": cid, "name": name }))
        .collect();
    Ok(vec![Entry {
        name: "files/pinned.json".to_owned(),
        bytes: serde_json::to_vec_pretty(&json!({ "pinned": pinned }))?,
    }])
}

/// `config.toml` as the node reads it. It holds no secrets: the config
/// refuses them (a backend's key is named by an environment variable).
fn settings(sources: &Sources) -> Result<Vec<Entry>, CliError> {
    Ok(vec![Entry {
        name: "settings/config.toml".to_owned(),
        bytes: sources.loaded.config.to_toml()?.into_bytes(),
    }])
}

fn hash(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

fn signed_manifest(entries: &[Entry], key: &DeviceKey) -> Result<Vec<u8>, CliError> {
    let hashes: serde_json::Map<String, Value> = entries
        .iter()
        .map(|e| (e.name.clone(), Value::String(hash(&e.bytes))))
        .collect();
    let manifest = json!({
        "kind": MANIFEST_KIND,
        "node_id": key.node_id().full(),
        "created_at": Timestamp::now().to_string(),
        "entries": hashes,
    });
    let signed = hearthnet_base::sign_value(manifest, key)?;
    Ok(hearthnet_base::to_canonical_bytes(&signed)?)
}

fn write_archive(out: &Path, entries: &[Entry]) -> Result<(), CliError> {
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let needed = entries.iter().map(|e| e.bytes.len() as u64).sum::<u64>() + SPACE_MARGIN;
    let stats = rustix::fs::statvfs(dir)
        .map_err(|e| anyhow!("cannot look at the free space of {}: {e}", dir.display()))?;
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    if free < needed {
        return Err(CliError::new(
            ExitStatus::Capacity,
            anyhow!(
                "not enough free space in {}: the export needs about {needed} bytes, {free} are free",
                dir.display()
            ),
        ));
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let partial = dir.join(format!(".{name}.partial-{}", std::process::id()));
    // Moved into place only if nothing took the name meanwhile.
    let written = write_zip(&partial, entries).and_then(|()| {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &partial,
            rustix::fs::CWD,
            out,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(io::Error::from)
    });
    written.map_err(|e| {
        let _ = fs::remove_file(&partial);
        if e.kind() == io::ErrorKind::AlreadyExists {
            return taken(out);
        }
        let status = if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) {
            ExitStatus::Capacity
        } else {
            ExitStatus::Failure
        };
        CliError::new(status, anyhow!("cannot write {}: {e}", out.display()))
    })
}

fn write_zip(path: &Path, entries: &[Entry]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o600);
    for entry in entries {
        zip.start_file(entry.name.as_str(), options)
            .map_err(io::Error::other)?;
        zip.write_all(&entry.bytes)?;
    }
    let file = zip.finish().map_err(io::Error::other)?;
    file.sync_all()
}

/// The entry count the archive's end records declare (the larger of the
/// classic and the ZIP64 one), read from its last 64 KiB; 0 when there is
/// no end record (the ZIP library then refuses the file).
fn declared_entries(file: &mut fs::File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    const END_SIGNATURE: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    const ZIP64_LOCATOR_SIGNATURE: [u8; 4] = [0x50, 0x4b, 0x06, 0x07];
    const ZIP64_END_SIGNATURE: [u8; 4] = [0x50, 0x4b, 0x06, 0x06];
    let length = file.seek(SeekFrom::End(0))?;
    // The end record (22 bytes) plus the longest comment.
    let tail_start = length.saturating_sub(22 + 0xFFFF);
    file.seek(SeekFrom::Start(tail_start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let Some(end) = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == END_SIGNATURE)
    else {
        return Ok(0);
    };
    let classic = u64::from(u16::from_le_bytes([tail[end + 10], tail[end + 11]]));
    // A ZIP64 locator sits right before the end record and points at the
    // ZIP64 end record, whose count is 8 bytes at offset 32.
    let Some(locator) = end.checked_sub(20) else {
        return Ok(classic);
    };
    if tail[locator..locator + 4] != ZIP64_LOCATOR_SIGNATURE {
        return Ok(classic);
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&tail[locator + 8..locator + 16]);
    file.seek(SeekFrom::Start(u64::from_le_bytes(offset)))?;
    let mut record = [0u8; 40];
    file.read_exact(&mut record)?;
    if record[..4] != ZIP64_END_SIGNATURE {
        return Ok(classic);
    }
    let mut count = [0u8; 8];
    count.copy_from_slice(&record[32..40]);
    Ok(classic.max(u64::from_le_bytes(count)))
}

/// Why an archive does not verify: a named entry, or the signature.
fn bad(why: String) -> CliError {
    CliError::new(
        ExitStatus::Auth,
        anyhow!("the export does not verify: {why}"),
    )
}

fn verify(path: &Path) -> CliResult {
    let mut file =
        fs::File::open(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    // Before the ZIP library reads the central directory, entry by entry.
    let declared =
        declared_entries(&mut file).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    if declared > MAX_ENTRIES as u64 {
        return Err(bad(format!(
            "{declared} entries, more than the {MAX_ENTRIES} an export can have"
        )));
    }
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| anyhow!("{} is not a readable ZIP: {e}", path.display()))?;
    if zip.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "{} entries, more than the {MAX_ENTRIES} an export can have",
            zip.len()
        )));
    }
    let mut total = 0u64;
    let mut contents = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .map_err(|e| anyhow!("cannot read entry {i} of {}: {e}", path.display()))?;
        let name = entry
            .name()
            .map_err(|e| bad(format!("entry {i} has an unreadable name: {e}")))?
            .into_owned();
        if entry.enclosed_name().is_none() || name.contains('\\') {
            return Err(bad(format!(
                "entry {name:?} has a path that leaves the archive"
            )));
        }
        let limit = if name == MANIFEST_ENTRY {
            MAX_MANIFEST_BYTES
        } else {
            MAX_ENTRY_BYTES
        };
        if entry.size() > limit {
            return Err(bad(format!("entry {name} is larger than {limit} bytes")));
        }
        total = total.saturating_add(entry.size());
        if total > MAX_TOTAL_BYTES {
            return Err(bad(format!(
                "the entries are larger than {MAX_TOTAL_BYTES} bytes in all"
            )));
        }
        // The declared size may lie: read one byte past the limit at most.
        let mut bytes = Vec::new();
        entry
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("entry {name} cannot be read: {e}")))?;
        if bytes.len() as u64 > limit {
            return Err(bad(format!("entry {name} is larger than {limit} bytes")));
        }
        if contents.insert(name.clone(), bytes).is_some() {
            return Err(bad(format!("entry {name} is there twice")));
        }
    }
    let manifest_bytes = contents
        .remove(MANIFEST_ENTRY)
        .ok_or_else(|| bad(format!("it has no {MANIFEST_ENTRY}")))?;
    let manifest: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| bad(format!("{MANIFEST_ENTRY} is not JSON: {e}")))?;
    if manifest["kind"] != MANIFEST_KIND {
        return Err(bad(format!(
            "{MANIFEST_ENTRY} is not a HearthNet export manifest"
        )));
    }
    let signer: hearthnet_base::NodeId = manifest["node_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("{MANIFEST_ENTRY} names no valid node_id")))?;
    hearthnet_base::verify_value(&manifest, &signer).map_err(|e| {
        bad(format!(
            "the manifest's signature by {}: {e}",
            signer.short()
        ))
    })?;
    let listed = manifest["entries"]
        .as_object()
        .ok_or_else(|| bad(format!("{MANIFEST_ENTRY} lists no entries")))?;
    for (name, expected) in listed {
        let bytes = contents
            .get(name)
            .ok_or_else(|| bad(format!("entry {name} is listed but missing")))?;
        if expected.as_str() != Some(hash(bytes).as_str()) {
            return Err(bad(format!("entry {name} does not match its hash")));
        }
    }
    if let Some(extra) = contents.keys().find(|name| !listed.contains_key(*name)) {
        return Err(bad(format!("entry {extra} is not in the signed manifest")));
    }
    printer::status(format!(
        "{}: {} entries, every hash matches, signed by {}",
        path.display(),
        listed.len(),
        signer.full()
    ));
    Ok(ExitStatus::Success)
}
