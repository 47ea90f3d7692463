//! Chunk bodies (`application/vnd.hearthnet.chunks`, `POST
//! /blobs/v1/chunks`), read with `hearthnet_transport::bulk::ChunkReader`.
//!
//! The first input byte says how the body is cut into network frames, the
//! rest is the body. Asserts: the outcome does not depend on how the body
//! was cut (one frame, or many); no chunk exceeds the 4 MiB record limit;
//! nothing is read after the end; and when the body ends with the end
//! record, the chunks read re-encode to exactly the bytes consumed.
#![no_main]

use std::convert::Infallible;
use std::sync::LazyLock;

use bytes::Bytes;
use hearthnet_transport::bulk::{ChunkReader, ChunkStreamError};
use http_body_util::StreamBody;
use hyper::body::Frame;
use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
});

#[derive(Debug, PartialEq)]
enum End {
    /// The end record.
    Clean,
    /// An error record, as its JSON.
    Reported(String),
    Broken,
}

fn read(frames: Vec<Bytes>) -> (Vec<(u32, Bytes)>, End) {
    let stream = futures_util::stream::iter(
        frames
            .into_iter()
            .map(|f| Ok::<_, Infallible>(Frame::data(f))),
    );
    let mut reader = ChunkReader::new(StreamBody::new(stream));
    RUNTIME.block_on(async {
        let mut chunks = Vec::new();
        loop {
            match reader.next().await {
                Some(Ok(chunk)) => chunks.push(chunk),
                Some(Err(ChunkStreamError::Reported(v))) => {
                    assert!(reader.next().await.is_none(), "read on after an error");
                    return (chunks, End::Reported(v.to_string()));
                }
                Some(Err(ChunkStreamError::Broken(_))) => {
                    assert!(reader.next().await.is_none(), "read on after a break");
                    return (chunks, End::Broken);
                }
                None => {
                    assert!(reader.next().await.is_none(), "read on after the end");
                    return (chunks, End::Clean);
                }
            }
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let whole = read(vec![Bytes::copy_from_slice(body)]);
    let step = usize::from(cut % 16) + 1;
    let pieces: Vec<Bytes> = body.chunks(step).map(Bytes::copy_from_slice).collect();
    let split = read(pieces);
    assert_eq!(whole, split, "the outcome depends on the framing");

    let (chunks, end) = whole;
    assert!(chunks.iter().all(|(_, c)| c.len() <= 4 * 1024 * 1024));
    if end == End::Clean {
        let mut encoded = Vec::new();
        for (index, bytes) in &chunks {
            encoded.push(0x01);
            encoded.extend_from_slice(&index.to_be_bytes());
            encoded.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            encoded.extend_from_slice(bytes);
        }
        encoded.push(0x00);
        assert!(
            body.starts_with(&encoded),
            "chunks do not re-encode to the body"
        );
    }
});
