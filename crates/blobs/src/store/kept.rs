//! What the owner keeps in the store beside the blobs themselves: the pins
//! (`pinned.txt`, one CID a line) and the names blobs were added under
//! (`names.json`, CID to name). A CID says nothing to a person; the name
//! is what they called the file. Names are local: never sent to a peer.
//!
//! Both files are read here, for the store and for readers that must not
//! open it (an export while the node runs: opening clears `tmp/`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::Path;

use hearthnet_base::Blake3Id;

use crate::BlobError;

pub(super) const PINS_FILE: &str = "pinned.txt";
pub(super) const NAMES_FILE: &str = "names.json";
/// The longest name kept, in bytes (a file name's usual limit).
pub const MAX_NAME_BYTES: usize = 255;
/// `names.json` is read at most this far: far above 255 bytes per blob
/// for any store a node holds, and a damaged file cannot exhaust memory.
const MAX_NAMES_FILE_BYTES: u64 = 64 << 20;

/// A name as kept: the last component of `raw` (a path names a file by
/// its last part), without control characters, trimmed, cut to
/// [`MAX_NAME_BYTES`] on a character boundary; `None` when nothing is left.
pub fn clean_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let mut name: String = last.chars().filter(|c| !c.is_control()).collect();
    let trimmed = name.trim();
    if trimmed.is_empty() || trimmed == "." || trimmed == ".." {
        return None;
    }
    name = trimmed.to_owned();
    if name.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    Some(name)
}

pub(super) fn read_pins(root: &Path) -> Result<BTreeSet<Blake3Id>, BlobError> {
    match fs::read_to_string(root.join(PINS_FILE)) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| Blake3Id::parse(l.trim()).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(BlobError::io("cannot read pinned.txt", e)),
    }
}

/// The names kept. A damaged `names.json` loses the names, never the
/// blobs: it reads as none (and is rewritten whole at the next name).
pub(super) fn read_names(root: &Path) -> Result<BTreeMap<Blake3Id, String>, BlobError> {
    let path = root.join(NAMES_FILE);
    let mut bytes = Vec::new();
    match fs::File::open(&path) {
        Ok(file) => file
            .take(MAX_NAMES_FILE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| BlobError::io("cannot read names.json", e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(BlobError::io("cannot read names.json", e)),
    };
    let Ok(raw) = serde_json::from_slice::<BTreeMap<String, String>>(&bytes) else {
        tracing::warn!(file = %path.display(), "names.json is damaged; the blobs' names are lost, the blobs are not");
        return Ok(BTreeMap::new());
    };
    Ok(raw
        .into_iter()
        .filter_map(|(cid, name)| Some((Blake3Id::parse(&cid).ok()?, clean_name(&name)?)))
        .collect())
}

pub(super) fn write_names(
    root: &Path,
    names: &BTreeMap<Blake3Id, String>,
) -> Result<(), BlobError> {
    let map: BTreeMap<String, &String> = names.iter().map(|(c, n)| (c.to_string(), n)).collect();
    let bytes = serde_json::to_vec_pretty(&map)
        .map_err(|e| BlobError::io("cannot encode names.json", std::io::Error::other(e)))?;
    hearthnet_base::fsio::atomic_write(&root.join(NAMES_FILE), &bytes, 0o600)
        .map_err(|e| BlobError::io("cannot write names.json", e))
}

/// The pinned blobs of the store at `root` with the names they were added
/// under, read without opening the store (which a running node holds).
pub fn pinned_with_names(root: &Path) -> Result<Vec<(Blake3Id, Option<String>)>, BlobError> {
    let mut names = read_names(root)?;
    Ok(read_pins(root)?
        .into_iter()
        .map(|cid| {
            let name = names.remove(&cid);
            (cid, name)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_a_clean_last_component_within_bounds() {
        assert_eq!(
            clean_name("/home/ana/recipes.pdf").as_deref(),
            Some("recipes.pdf")
        );
        assert_eq!(clean_name(r"C:\docs\map.png").as_deref(), Some("map.png"));
        assert_eq!(clean_name("a\u{1b}[31mred\n").as_deref(), Some("a[31mred"));
        assert_eq!(clean_name("  ../  "), None);
        assert_eq!(clean_name("dir/"), None);
        assert_eq!(clean_name(".."), None);
        let long = "ä".repeat(200);
        let cut = clean_name(&long).unwrap();
        assert!(cut.len() <= MAX_NAME_BYTES && cut.chars().all(|c| c == 'ä'));
    }

    #[test]
    fn a_damaged_names_file_loses_names_not_the_store() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(NAMES_FILE), b"{not json").unwrap();
        assert!(read_names(dir.path()).unwrap().is_empty());
        let cid = Blake3Id::of(b"x");
        fs::write(
            dir.path().join(NAMES_FILE),
            format!(r#"{{"{cid}": "a/b.txt", "not a cid": "c"}}"#),
        )
        .unwrap();
        let names = read_names(dir.path()).unwrap();
        assert_eq!(names.len(), 1);
        assert_eq!(names[&cid], "b.txt");
    }
}
