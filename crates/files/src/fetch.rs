//! Fetching a blob from the peers that hold it (M07 §5.5–§5.6): the
//! manifest first, then the missing chunks split among the holders and
//! streamed from all of them at once, each chunk verified as it arrives.
//! A holder that fails or sends a bad chunk is dropped and what it still
//! owed goes to the others; chunks already stored are never fetched again,
//! so a fetch cut off midway resumes where it stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hearthnet_base::{Blake3Id, ErrorCode, NodeId, TrustLevel};
use hearthnet_blobs::{BlobStore, Manifest, decode_b64};
use hearthnet_bus::{Bus, CallError, InboundCall, Item, Version};
use serde_json::{Value, json};

/// Holders streamed from at once.
const PARALLEL_HOLDERS: usize = 4;
/// A chunk that failed this often fails the fetch (M07 §5.6).
const ATTEMPTS_PER_CHUNK: u32 = 3;
/// Chunks asked of one holder in one call (16 MiB): bounded calls keep
/// the deadline per call meaningful on slow links, and the budget of 10
/// calls a second per peer still allows 160 MiB/s from each holder.
const CHUNKS_PER_CALL: usize = 64;
/// The manifest comes first and is small: a holder that does not send it
/// promptly is skipped.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetch blob `cid` into `store` from `holders`. `progress` receives the
/// bytes of the blob present so far.
pub async fn fetch(
    bus: &Arc<Bus>,
    store: &Arc<BlobStore>,
    cid: Blake3Id,
    holders: &[NodeId],
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(Manifest, Vec<NodeId>), CallError> {
    let (manifest, first) = manifest_from(bus, cid, holders).await?;
    let mut failures: BTreeMap<usize, u32> = BTreeMap::new();
    let mut healthy: Vec<NodeId> = std::iter::once(first)
        .chain(holders.iter().copied().filter(|h| *h != first))
        .collect();
    let mut served_by = BTreeSet::new();
    let have = Arc::new(AtomicU64::new(0));
    loop {
        let store2 = store.clone();
        let m2 = manifest.clone();
        let missing = tokio::task::spawn_blocking(move || store2.missing_chunks(&m2))
            .await
            .map_err(internal)?;
        let missing_bytes: u64 = missing.iter().map(|i| manifest.chunks[*i].size_bytes).sum();
        let present = manifest.size_bytes - missing_bytes;
        have.store(present, Ordering::Relaxed);
        progress(present, manifest.size_bytes);
        if missing.is_empty() {
            break;
        }
        if healthy.is_empty() {
            return Err(CallError::new(
                ErrorCode::Partition,
                format!(
                    "no holder could supply {} of the {} chunks of {}",
                    missing.len(),
                    manifest.chunks.len(),
                    cid.short()
                ),
            ));
        }
        // Stripes: holder k streams chunks k, k+n, k+2n, … (a bounded
        // batch of them per round).
        let workers: Vec<NodeId> = healthy.iter().copied().take(PARALLEL_HOLDERS).collect();
        let n = workers.len();
        let mut rounds = Vec::new();
        let mut attempted = BTreeSet::new();
        for (k, holder) in workers.iter().enumerate() {
            let share: Vec<usize> = missing
                .iter()
                .copied()
                .skip(k)
                .step_by(n)
                .take(CHUNKS_PER_CALL)
                .collect();
            attempted.extend(share.iter().copied());
            let (bus, store, manifest, have) =
                (bus.clone(), store.clone(), manifest.clone(), have.clone());
            let holder = *holder;
            rounds.push(async move {
                let outcome =
                    stream_chunks(&bus, &store, &manifest, holder, &share, &have, progress).await;
                (holder, share, outcome)
            });
        }
        for (holder, share, outcome) in futures_util::future::join_all(rounds).await {
            match outcome {
                Ok(received) if received == share.len() => {
                    served_by.insert(holder);
                }
                Ok(received) => {
                    if received > 0 {
                        served_by.insert(holder);
                    }
                    tracing::warn!(holder = %holder.short(), blob = %cid.short(), "holder ended early; others take over");
                    healthy.retain(|h| *h != holder);
                }
                Err(Failure::Local(e)) => return Err(e),
                // Over the holder's rate budget: wait as told, keep it.
                Err(Failure::Holder(e)) if e.code == ErrorCode::RateLimited => {
                    let wait = e.retry_after_ms.unwrap_or(1000).min(10_000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                Err(Failure::Holder(e)) => {
                    tracing::warn!(holder = %holder.short(), blob = %cid.short(), error = %e, "holder dropped from this fetch");
                    healthy.retain(|h| *h != holder);
                }
            }
        }
        let store2 = store.clone();
        let m2 = manifest.clone();
        let still = tokio::task::spawn_blocking(move || store2.missing_chunks(&m2))
            .await
            .map_err(internal)?;
        for i in still.into_iter().filter(|i| attempted.contains(i)) {
            let n = failures.entry(i).or_default();
            *n += 1;
            if *n >= ATTEMPTS_PER_CHUNK {
                return Err(CallError::new(
                    ErrorCode::Partition,
                    format!(
                        "chunk {i} of {} failed {ATTEMPTS_PER_CHUNK} times",
                        cid.short()
                    ),
                ));
            }
        }
    }
    let store2 = store.clone();
    let m2 = manifest.clone();
    tokio::task::spawn_blocking(move || store2.write_manifest(&m2))
        .await
        .map_err(internal)?
        .map_err(|e| CallError::new(e.code(), e.to_string()))?;
    Ok((manifest, served_by.into_iter().collect()))
}

fn internal(e: impl std::fmt::Display) -> CallError {
    CallError::new(ErrorCode::InternalError, e.to_string())
}

fn read_call(bus: &Bus, holder: NodeId, input: Value) -> InboundCall {
    InboundCall {
        capability: crate::READ.into(),
        version: Version::new(1, 0),
        body: json!({"params": {}, "input": input}),
        caller: bus.node_id(),
        caller_level: TrustLevel::Anchor,
        trace_id: ulid::Ulid::new().to_string(),
        timeout: Some(Duration::from_secs(crate::READ_TIMEOUT_SECONDS)),
        stream: true,
        target: Some(holder),
    }
}

/// The manifest, from the first holder that has a valid one.
async fn manifest_from(
    bus: &Bus,
    cid: Blake3Id,
    holders: &[NodeId],
) -> Result<(Manifest, NodeId), CallError> {
    let mut last = CallError::new(
        ErrorCode::NotFound,
        format!("no peer is known to hold {cid}"),
    );
    for holder in holders {
        // `chunks: []` asks for the manifest alone (our extension).
        let mut call = read_call(bus, *holder, json!({"cid": cid, "chunks": []}));
        call.timeout = Some(MANIFEST_TIMEOUT);
        let mut stream = match bus.call(call) {
            Ok(s) => s,
            Err(e) => {
                last = e;
                continue;
            }
        };
        while let Some(item) = stream.next().await {
            match item {
                Item::Frame(f) if f.event == "manifest" => {
                    match Manifest::from_wire(&f.data) {
                        Ok(m) if m.cid == cid => return Ok((m, *holder)),
                        Ok(_) | Err(_) => {
                            last = CallError::new(
                                ErrorCode::BadRequest,
                                format!(
                                    "{} sent a manifest that does not match {cid}",
                                    holder.short()
                                ),
                            );
                        }
                    }
                    break;
                }
                Item::Frame(_) => {}
                Item::Done(_) => break,
                Item::Failed(e) => {
                    last = e;
                    break;
                }
            }
        }
    }
    Err(last)
}

/// Stream `share` (chunk indices) from `holder`, verifying and storing
/// each; the count stored, or why the holder failed.
async fn stream_chunks(
    bus: &Bus,
    store: &Arc<BlobStore>,
    manifest: &Manifest,
    holder: NodeId,
    share: &[usize],
    have: &AtomicU64,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<usize, Failure> {
    let call = read_call(bus, holder, json!({"cid": manifest.cid, "chunks": share}));
    let mut stream = bus.call(call).map_err(Failure::Holder)?;
    let wanted: BTreeSet<usize> = share.iter().copied().collect();
    let mut writer = Some(store.writer());
    let mut received = 0;
    let outcome = loop {
        let Some(item) = stream.next().await else {
            break Ok(());
        };
        let frame = match item {
            Item::Frame(f) => f,
            Item::Done(_) => break Ok(()),
            Item::Failed(e) => break Err(e),
        };
        if frame.event != "chunk" {
            continue;
        }
        let Some(i) = frame.data["i"].as_u64().map(|i| i as usize) else {
            break Err(CallError::bad_request("a chunk frame without `i`"));
        };
        let Some(expected) = manifest.chunks.get(i).filter(|_| wanted.contains(&i)) else {
            break Err(CallError::bad_request(format!(
                "chunk {i} was not asked for"
            )));
        };
        let Some(bytes) = frame.data["data_b64"].as_str().and_then(decode_b64) else {
            break Err(CallError::bad_request(format!(
                "chunk {i}: `data_b64` is not Base64"
            )));
        };
        let cid = expected.cid;
        let size = bytes.len() as u64;
        let Some(mut w) = writer.take() else {
            break Err(internal("the chunk writer is gone"));
        };
        // A chunk that does not hash to its CID ends this holder's part.
        let (w, stored) = tokio::task::spawn_blocking(move || {
            let r = w.put(&cid, &bytes);
            (w, r)
        })
        .await
        .map_err(|e| Failure::Local(internal(e)))?;
        writer = Some(w);
        match stored {
            Ok(_) => {}
            Err(e @ hearthnet_blobs::BlobError::HashMismatch { .. }) => {
                tracing::warn!(holder = %holder.short(), chunk = i, error = %e, "bad chunk from a holder");
                break Err(CallError::new(
                    e.code(),
                    format!("chunk {i} from {}: {e}", holder.short()),
                ));
            }
            // Our disk, not the holder: the whole fetch stops (a full disk
            // is `capacity_exceeded`).
            Err(e) => return Err(Failure::Local(CallError::new(e.code(), e.to_string()))),
        }
        received += 1;
        let now = have.fetch_add(size, Ordering::Relaxed) + size;
        progress(now, manifest.size_bytes);
    };
    // Keep what verified, even when the holder failed: a later round (or
    // a later fetch) resumes from there.
    if let Some(mut w) = writer {
        tokio::task::spawn_blocking(move || w.flush())
            .await
            .map_err(|e| Failure::Local(internal(e)))?
            .map_err(|e| Failure::Local(CallError::new(e.code(), e.to_string())))?;
    }
    outcome.map(|()| received).map_err(Failure::Holder)
}

/// Why a holder's part ended: the holder's doing, or ours (the disk).
enum Failure {
    Holder(CallError),
    Local(CallError),
}
