//! UDP announcements (M02 §3.5): the datagram every device on the LAN may
//! send us.
//!
//! Asserts: only datagrams of at most `MAX_UDP_BYTES` are accepted, and an
//! accepted one has version 1, a port and non-empty ids; its re-encoding
//! fits the limit and decodes to the same announcement. From the other
//! side, any announcement built from the input encodes to a datagram
//! within the limit that decodes to it with a prefix of its capabilities.
#![no_main]

use hearthnet_discovery::{Announcement, MAX_UDP_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Announcement::from_datagram(data) {
        assert!(data.len() <= MAX_UDP_BYTES);
        assert!(a.v == 1 && a.port != 0 && !a.node.is_empty() && !a.community.is_empty());
        let again = a.to_datagram();
        assert!(again.len() <= MAX_UDP_BYTES, "{} bytes", again.len());
        assert_eq!(Announcement::from_datagram(&again), Ok(a));
    }

    // Encoding side: fields taken from the input, split at 0xff.
    let mut parts = data.split(|&b| b == 0xff);
    let text = |p: Option<&[u8]>| String::from_utf8_lossy(p.unwrap_or_default()).into_owned();
    let node = text(parts.next());
    let community = text(parts.next());
    let port = data.len() as u16 | 1;
    let caps: Vec<String> = parts.map(|p| text(Some(p))).collect();
    let a = Announcement::new(node, community, port, &caps);
    let datagram = a.to_datagram();
    if datagram.len() > MAX_UDP_BYTES {
        // Only when even without capabilities it does not fit.
        let mut bare = a.clone();
        bare.caps.clear();
        let bare = serde_json::to_vec(&bare).expect("serialise");
        assert!(
            bare.len() > MAX_UDP_BYTES,
            "dropped capabilities needlessly"
        );
        return;
    }
    match Announcement::from_datagram(&datagram) {
        Ok(back) => {
            assert_eq!(
                (&back.node, &back.community, back.port),
                (&a.node, &a.community, a.port)
            );
            assert!(
                a.caps.starts_with(&back.caps),
                "capabilities are not a prefix"
            );
        }
        Err(_) => assert!(a.node.is_empty() || a.community.is_empty()),
    }
});
