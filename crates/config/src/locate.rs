//! Finds the line of a dotted key in TOML text, so messages can point at
//! `config.toml:14`. A best-effort scan for plain `[section]` / `key =`
//! layouts; when it cannot tell, the message just names the file.

pub fn line_of(text: &str, key_path: &str) -> Option<usize> {
    let mut parts: Vec<&str> = key_path.split('.').collect();
    let key = parts.pop()?;
    let section = parts.join(".");
    let mut current = String::new();
    let mut section_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            current = header.trim().to_owned();
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = header.trim().to_owned();
            if current == section && key.is_empty() {
                return Some(i + 1);
            }
            if current == section {
                section_line = Some(i + 1);
            }
            continue;
        }
        if current == section {
            let name = line.split('=').next().map(str::trim).unwrap_or_default();
            if name == key || name.trim_matches('"') == key {
                return Some(i + 1);
            }
        }
    }
    section_line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_inside_their_section() {
        let text = "[ui]\nport = 1\n\n[transport]\n# port = 3\napi_port = 2\nport=\"x\"\n";
        assert_eq!(line_of(text, "transport.port"), Some(7));
        assert_eq!(line_of(text, "ui.port"), Some(2));
        assert_eq!(line_of(text, "transport.missing"), Some(4));
        assert_eq!(line_of(text, "bus.x"), None);
    }
}
