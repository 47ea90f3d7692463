//! Snapshots (Contract §7.5): the community view at Lamport L, signed, in
//! `<state_dir>/snapshots/<L>.bin`, so start-up replays only what came
//! after L.
//!
//! A snapshot also records a digest of exactly which events it covers. On
//! start-up it is trusted only if its signature is ours, its community is
//! ours, and the log still holds exactly those events up to L; otherwise it
//! is deleted and the view is rebuilt from the log, never taken on faith.

use std::path::PathBuf;

use hearthnet_base::{CommunityId, DeviceKey, NodeId, Timestamp, fsio, sign_value, verify_value};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::view::CommunityView;

/// Snapshots kept on disk; older ones are removed.
const KEEP: usize = 7;

pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Lamports of the snapshots on disk, newest first.
    fn lamports(&self) -> Vec<u64> {
        let mut found: Vec<u64> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.strip_suffix(".bin")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        found.sort_unstable_by(|a, b| b.cmp(a));
        found
    }

    pub fn latest_lamport(&self) -> Option<u64> {
        self.lamports().first().copied()
    }

    fn path(&self, lamport: u64) -> PathBuf {
        self.dir.join(format!("{lamport}.bin"))
    }
}

/// `(digest, count)` of the events with Lamport ≤ `upto`, in replay order.
fn covered(conn: &Connection, upto: u64) -> rusqlite::Result<(String, u64)> {
    let mut stmt = conn.prepare(
        "SELECT lamport, event_id FROM events WHERE lamport <= ?1 AND held = 0 ORDER BY lamport, event_id",
    )?;
    let mut rows = stmt.query(params![upto as i64])?;
    let mut hasher = blake3::Hasher::new();
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let lamport: i64 = row.get(0)?;
        let id: String = row.get(1)?;
        hasher.update(format!("{lamport}:{id}\n").as_bytes());
        count += 1;
    }
    Ok((format!("blake3:{}", hasher.finalize().to_hex()), count))
}

pub fn write(
    store: &SnapshotStore,
    conn: &Connection,
    view: &CommunityView,
    key: &DeviceKey,
) -> Result<(), String> {
    let lamport = view.head;
    let (digest, count) = covered(conn, lamport).map_err(|e| e.to_string())?;
    if count != view.count {
        return Err(format!(
            "the view folds {} events but the log holds {count} up to Lamport {lamport}",
            view.count
        ));
    }
    let unsigned = json!({
        "schema_version": 1,
        "rules": crate::log::RULES_REVISION,
        "community_id": view.community_id,
        "lamport": lamport,
        "wall_clock": Timestamp::now(),
        "state": {"community": view},
        "covers_events_up_to": lamport,
        "events_digest": digest,
        "event_count": count,
    });
    let signed = sign_value(unsigned, key).map_err(|e| e.to_string())?;
    let bytes = serde_json::to_vec(&signed).map_err(|e| e.to_string())?;
    fsio::atomic_write(&store.path(lamport), &bytes, 0o600).map_err(|e| e.to_string())?;
    for old in store.lamports().into_iter().skip(KEEP) {
        let _ = std::fs::remove_file(store.path(old));
    }
    tracing::info!(lamport, events = count, "snapshot written");
    Ok(())
}

/// The newest snapshot that checks out, as a view; bad ones are deleted.
pub fn restore(
    store: &SnapshotStore,
    conn: &Connection,
    signer: &NodeId,
    community: CommunityId,
) -> Option<CommunityView> {
    for lamport in store.lamports() {
        let path = store.path(lamport);
        match check(&path, conn, signer, community, lamport) {
            Ok(view) => {
                tracing::info!(lamport, "view restored from snapshot");
                return Some(view);
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), reason = %reason, "snapshot discarded; rebuilding from the log");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    None
}

fn check(
    path: &std::path::Path,
    conn: &Connection,
    signer: &NodeId,
    community: CommunityId,
    lamport: u64,
) -> Result<CommunityView, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    verify_value(&doc, signer).map_err(|e| format!("signature: {e}"))?;
    if doc["community_id"] != json!(community) {
        return Err("snapshot of another community".into());
    }
    if doc["rules"].as_str() != Some(crate::log::RULES_REVISION) {
        return Err("folded under other membership rules".into());
    }
    if doc["covers_events_up_to"].as_u64() != Some(lamport) {
        return Err("file name and contents disagree".into());
    }
    let (digest, count) = covered(conn, lamport).map_err(|e| e.to_string())?;
    if doc["events_digest"].as_str() != Some(digest.as_str())
        || doc["event_count"].as_u64() != Some(count)
    {
        return Err("the log no longer holds exactly the events it covers".into());
    }
    serde_json::from_value(doc["state"]["community"].clone()).map_err(|e| format!("state: {e}"))
}
