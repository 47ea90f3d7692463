//! Server-sent event frames (Contract §5.3), read by both decoders: the
//! client's `FrameReader` (the local API's streams) and the peer client's
//! frame parser (a peer's streamed answer).
//!
//! Asserts: the client reads at most one frame per blank-line-separated
//! block, at most one terminal frame and nothing after it; the peer parser
//! never panics on any block; and both decoders read the server's own
//! encoding of every frame the client read (`event: E\ndata: JSON\n\n`, as
//! `transport::sse` writes it) back to that same frame.
#![no_main]

use std::io::BufRead;

use hearthnet_client::{Frame, FrameReader};
use hearthnet_transport::peer_client::fuzz_parse_frame;
use libfuzzer_sys::fuzz_target;

/// What `transport::sse` sends for one frame.
fn server_encoding(frame: &Frame) -> String {
    format!("event: {}\ndata: {}\n\n", frame.event, frame.data)
}

fuzz_target!(|data: &[u8]| {
    let frames: Vec<Frame> = FrameReader::new(data).map_while(Result::ok).collect();
    let lines = data.lines().count();
    assert!(
        frames.len() <= lines / 2 + 1,
        "{} frames from {lines} lines",
        frames.len()
    );
    if let Some((_, before)) = frames.split_last() {
        assert!(
            !before.iter().any(Frame::is_terminal),
            "a frame after the terminal one"
        );
    }

    for block in data.split_inclusive(|&b| b == b'\n') {
        let _ = fuzz_parse_frame(block);
    }
    for block in data.windows(2).enumerate().filter(|(_, w)| w == b"\n\n") {
        let _ = fuzz_parse_frame(&data[..block.0 + 2]);
    }

    for frame in &frames {
        let encoded = server_encoding(frame);
        let read: Vec<Frame> = FrameReader::new(encoded.as_bytes())
            .map(|f| f.expect("reading from memory"))
            .collect();
        assert_eq!(read, vec![frame.clone()], "client: {encoded:?}");
        // The peer parser trims the event name on both sides and reads
        // lines split at `\r` too; compare where the name allows.
        if frame.event.trim() == frame.event && !frame.event.contains('\r') {
            let peer = fuzz_parse_frame(encoded.as_bytes());
            assert_eq!(
                peer,
                Some(Ok((frame.event.clone(), frame.data.clone()))),
                "peer: {encoded:?}"
            );
        }
    }
});
