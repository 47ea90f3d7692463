//! mDNS announcements (M02 §3.3): the TXT record of a `_hearthnet._tcp`
//! service, read with `Announcement::from_txt`.
//!
//! The input is the TXT record as `key=value` lines. Asserts: an accepted
//! record has version 1, a port and non-empty ids, and no empty or
//! comma-holding capability; writing it as a TXT record keeps `caps` within
//! its 200 bytes, and reading that back gives the same announcement with a
//! prefix of its capabilities.
#![no_main]

use std::collections::HashMap;

use hearthnet_discovery::Announcement;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, rest) = data.split_at(data.len().min(2));
    let port = match head {
        [a, b] => u16::from_be_bytes([*a, *b]),
        _ => 7443,
    };
    let text = String::from_utf8_lossy(rest);
    let txt: HashMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let Ok(a) = Announcement::from_txt(|k| txt.get(k).map(|v| (*v).to_owned()), port) else {
        return;
    };
    assert!(a.v == 1 && a.port == port && port != 0);
    assert!(!a.node.is_empty() && !a.community.is_empty());
    assert!(a.caps.iter().all(|c| !c.is_empty() && !c.contains(',')));

    let written: HashMap<String, String> = a.to_txt("host.local").into_iter().collect();
    let caps = written.get("caps").map_or(0, String::len);
    assert!(caps <= 200, "caps TXT value of {caps} bytes");
    let back = Announcement::from_txt(|k| written.get(k).cloned(), a.port).expect("reads back");
    assert_eq!(
        (&back.node, &back.community, back.port),
        (&a.node, &a.community, a.port)
    );
    assert!(
        a.caps.starts_with(&back.caps),
        "capabilities are not a prefix"
    );
});
