//! Blob manifests (M07 §3.1): the ordered chunk CIDs of a blob, and the
//! blob's own CID derived from them.
//!
//! The CID recipe (the contract names its inputs but not the document):
//! BLAKE3 over the RFC 8785 canonical JSON of
//! `{"chunk_size_bytes": N, "chunks": ["blake3:…", …], "size_bytes": N}`,
//! chunk CIDs in index order. A 0-byte blob has no chunks.

use hearthnet_base::Blake3Id;
use hearthnet_base::canonical::to_canonical_bytes;
use hearthnet_base::constants::CHUNK_SIZE_BYTES;
use serde_json::{Value, json};

use crate::BlobError;

/// The largest blob a manifest may describe: 64 GiB, 262,144 chunks. Far
/// above what a community node shares, and it bounds what one manifest
/// from a peer can make this node parse, plan and reserve disk for.
pub const MAX_BLOB_BYTES: u64 = 64 << 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    pub cid: Blake3Id,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub cid: Blake3Id,
    pub size_bytes: u64,
    pub chunk_size_bytes: u64,
    pub chunks: Vec<ChunkRef>,
}

impl Manifest {
    /// The manifest of a blob whose chunks (in order) are `chunks`.
    pub fn new(chunks: Vec<ChunkRef>) -> Self {
        let size_bytes = chunks.iter().map(|c| c.size_bytes).sum();
        let chunk_size_bytes = CHUNK_SIZE_BYTES as u64;
        let cid = cid_of(size_bytes, chunk_size_bytes, &chunks);
        Self {
            cid,
            size_bytes,
            chunk_size_bytes,
            chunks,
        }
    }

    /// The wire form of the `manifest` frame (Contract §4.7), with each
    /// chunk's size (our addition, so a receiver can check it early).
    pub fn to_wire(&self) -> Value {
        json!({
            "cid": self.cid,
            "size_bytes": self.size_bytes,
            "chunk_size_bytes": self.chunk_size_bytes,
            "chunks": self.chunks.iter().enumerate().map(|(i, c)| json!({
                "i": i, "cid": c.cid, "size_bytes": c.size_bytes,
            })).collect::<Vec<_>>(),
        })
    }

    /// Read and check a manifest from the wire or from disk: a size of at
    /// most [`MAX_BLOB_BYTES`], the chunk size, exactly as many chunks as
    /// the size needs, indices in order, sizes that add up (every chunk full
    /// but the last), and a CID that matches its contents.
    pub fn from_wire(value: &Value) -> Result<Self, BlobError> {
        let bad = |what: &str| BlobError::ManifestInvalid(what.to_owned());
        let cid = value["cid"]
            .as_str()
            .and_then(|c| Blake3Id::parse(c).ok())
            .ok_or_else(|| bad("`cid` is not a blake3 CID"))?;
        let size_bytes = value["size_bytes"]
            .as_u64()
            .ok_or_else(|| bad("`size_bytes` is not a non-negative integer"))?;
        if size_bytes > MAX_BLOB_BYTES {
            return Err(bad(&format!(
                "{size_bytes} bytes is more than the {MAX_BLOB_BYTES} a blob may have"
            )));
        }
        let chunk_size_bytes = value
            .get("chunk_size_bytes")
            .map_or(Some(CHUNK_SIZE_BYTES as u64), Value::as_u64)
            .ok_or_else(|| bad("`chunk_size_bytes` is not an integer"))?;
        if chunk_size_bytes != CHUNK_SIZE_BYTES as u64 {
            return Err(bad(&format!(
                "chunk size {chunk_size_bytes}, not {CHUNK_SIZE_BYTES}"
            )));
        }
        let list = value["chunks"]
            .as_array()
            .ok_or_else(|| bad("`chunks` is not an array"))?;
        let count = size_bytes.div_ceil(chunk_size_bytes);
        if list.len() as u64 != count {
            return Err(bad(&format!(
                "{} chunks for {size_bytes} bytes, expected {count}",
                list.len()
            )));
        }
        let mut chunks = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            if entry["i"].as_u64() != Some(i as u64) {
                return Err(bad(&format!("chunk {i} is out of order")));
            }
            let cid = entry["cid"]
                .as_str()
                .and_then(|c| Blake3Id::parse(c).ok())
                .ok_or_else(|| bad(&format!("chunk {i} has no blake3 CID")))?;
            let expected = chunk_size_bytes.min(size_bytes - i as u64 * chunk_size_bytes);
            if let Some(size) = entry.get("size_bytes")
                && size.as_u64() != Some(expected)
            {
                return Err(bad(&format!("chunk {i} should be {expected} bytes")));
            }
            chunks.push(ChunkRef {
                cid,
                size_bytes: expected,
            });
        }
        if cid_of(size_bytes, chunk_size_bytes, &chunks) != cid {
            return Err(bad("the CID does not match the chunks"));
        }
        Ok(Self {
            cid,
            size_bytes,
            chunk_size_bytes,
            chunks,
        })
    }
}

fn cid_of(size_bytes: u64, chunk_size_bytes: u64, chunks: &[ChunkRef]) -> Blake3Id {
    let doc = json!({
        "chunk_size_bytes": chunk_size_bytes,
        "chunks": chunks.iter().map(|c| c.cid.to_string()).collect::<Vec<_>>(),
        "size_bytes": size_bytes,
    });
    // Integers and strings only: canonicalisation cannot fail.
    Blake3Id::of(&to_canonical_bytes(&doc).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(data: &[u8]) -> Manifest {
        Manifest::new(
            data.chunks(CHUNK_SIZE_BYTES)
                .map(|c| ChunkRef {
                    cid: Blake3Id::of(c),
                    size_bytes: c.len() as u64,
                })
                .collect(),
        )
    }

    #[test]
    fn manifest_cid_is_deterministic_and_round_trips() {
        let data: Vec<u8> = (0..CHUNK_SIZE_BYTES * 2 + 5)
            .map(|i| (i % 251) as u8)
            .collect();
        let m = chunked(&data);
        assert_eq!(m.chunks.len(), 3);
        assert_eq!(m, chunked(&data));
        assert_eq!(Manifest::from_wire(&m.to_wire()).unwrap(), m);
        // A vector for other implementations: the empty blob.
        assert_eq!(
            chunked(&[]).cid.to_string(),
            Blake3Id::of(br#"{"chunk_size_bytes":262144,"chunks":[],"size_bytes":0}"#).to_string()
        );
    }

    #[test]
    fn tampered_manifests_are_refused() {
        let data = vec![7u8; CHUNK_SIZE_BYTES + 1];
        let wire = chunked(&data).to_wire();
        let mut swapped = wire.clone();
        swapped["chunks"][0]["cid"] = wire["chunks"][1]["cid"].clone();
        let mut short = wire.clone();
        short["size_bytes"] = json!(CHUNK_SIZE_BYTES + 2);
        let mut odd = wire.clone();
        odd["chunk_size_bytes"] = json!(1024);
        let mut order = wire.clone();
        order["chunks"][1]["i"] = json!(0);
        for bad in [swapped, short, odd, order] {
            assert!(
                matches!(
                    Manifest::from_wire(&bad),
                    Err(BlobError::ManifestInvalid(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_manifest_is_at_most_64_gib_with_the_chunks_its_size_needs() {
        let chunk = json!({"i": 0, "cid": Blake3Id::of(b"x")});
        let wire = |size: u64, count: usize| {
            let chunks: Vec<Value> = (0..count)
                .map(|i| {
                    let mut c = chunk.clone();
                    c["i"] = json!(i);
                    c
                })
                .collect();
            json!({"cid": Blake3Id::of(b"m"), "size_bytes": size, "chunks": chunks})
        };
        let reason = |v: &Value| match Manifest::from_wire(v) {
            Err(BlobError::ManifestInvalid(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let chunk_bytes = CHUNK_SIZE_BYTES as u64;
        // Over the cap: refused before its chunk list is looked at.
        assert!(reason(&wire(MAX_BLOB_BYTES + 1, 0)).contains("more than"));
        assert!(reason(&wire(u64::MAX, 1)).contains("more than"));
        // At the cap, and with the right count, the size passes (the made-up
        // CID does not).
        let at_cap = (MAX_BLOB_BYTES / chunk_bytes) as usize;
        assert_eq!(at_cap, 262_144);
        assert!(reason(&wire(MAX_BLOB_BYTES, at_cap)).contains("CID"));
        // A chunk count that disagrees with the size, either way.
        for (size, count) in [(chunk_bytes + 1, 3), (chunk_bytes + 1, 1), (0, 1), (1, 0)] {
            assert!(
                reason(&wire(size, count)).contains("chunks for"),
                "{size} bytes in {count} chunks"
            );
        }
    }
}
