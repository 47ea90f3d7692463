//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use hearthnet_base::DeviceKey;
use serde_json::Value;

/// A fixed key, so a run is reproducible: seed `n` repeated.
pub fn key(n: u8) -> DeviceKey {
    DeviceKey::from_seed([n; 32])
}

/// The input as JSON, if it is.
pub fn json(data: &[u8]) -> Option<Value> {
    serde_json::from_slice(data).ok()
}

/// Splits the input at the first `0xff` byte (absent: all of it is the
/// head): targets that need two inputs, such as text and a body.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}
