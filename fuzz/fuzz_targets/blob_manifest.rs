//! Blob manifests (M07 §3.1), read from peers and from disk with
//! `Manifest::from_wire`.
//!
//! Asserts: an accepted manifest is within `MAX_BLOB_BYTES`, has exactly
//! the chunks its size needs, each full but the last, sizes adding up, and
//! re-encodes to a manifest that reads back the same (the CID is checked
//! again on the way). From the other side, a manifest built from chunks
//! the input names encodes and reads back to itself, and changing its size
//! makes it invalid.
#![no_main]

use hearthnet_base::Blake3Id;
use hearthnet_base::constants::CHUNK_SIZE_BYTES;
use hearthnet_blobs::{ChunkRef, MAX_BLOB_BYTES, Manifest};
use libfuzzer_sys::fuzz_target;

fn check(m: &Manifest) {
    let chunk = CHUNK_SIZE_BYTES as u64;
    assert!(m.size_bytes <= MAX_BLOB_BYTES);
    assert_eq!(m.chunk_size_bytes, chunk);
    assert_eq!(m.chunks.len() as u64, m.size_bytes.div_ceil(chunk));
    assert_eq!(
        m.chunks.iter().map(|c| c.size_bytes).sum::<u64>(),
        m.size_bytes
    );
    if let Some((_, full)) = m.chunks.split_last() {
        assert!(full.iter().all(|c| c.size_bytes == chunk));
    }
    let back = Manifest::from_wire(&m.to_wire()).expect("re-encoded manifest refused");
    assert_eq!(&back, m);
}

fuzz_target!(|data: &[u8]| {
    if let Some(value) = hearthnet_fuzz::json(data)
        && let Ok(m) = Manifest::from_wire(&value)
    {
        check(&m);
    }

    // A well-formed manifest of up to 8 chunks named by the input.
    let Some((&last, names)) = data.split_first() else {
        return;
    };
    let count = names.len().min(8);
    let chunks: Vec<ChunkRef> = (0..count)
        .map(|i| ChunkRef {
            cid: Blake3Id::of(&names[i..=i]),
            size_bytes: if i + 1 == count {
                1 + u64::from(last) * (CHUNK_SIZE_BYTES as u64 - 1) / 255
            } else {
                CHUNK_SIZE_BYTES as u64
            },
        })
        .collect();
    let m = Manifest::new(chunks);
    check(&m);
    let mut wire = m.to_wire();
    wire["size_bytes"] = serde_json::json!(m.size_bytes + 1);
    assert!(
        Manifest::from_wire(&wire).is_err(),
        "a changed size still reads"
    );
});
