//! What a node tells the whole LAN about itself, unsigned: the UDP payload
//! (M02 §3.5) and the mDNS TXT record (§3.3). Only what the reference puts
//! there — short ids, the peer port, capability names — because every
//! device on the network can read it. Nothing here is trusted: a sighting
//! only tells us where to fetch the signed manifest.

use serde::{Deserialize, Serialize};

/// The largest UDP announcement (M02 §3.5).
pub const MAX_UDP_BYTES: usize = 1024;
/// The largest `caps` TXT value (M02 §3.3).
pub const MAX_TXT_CAPS_BYTES: usize = 200;
pub const SERVICE_TYPE: &str = "_hearthnet._tcp.local.";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub v: u32,
    /// Short NodeID.
    pub node: String,
    /// Short CommunityID.
    pub community: String,
    /// The peer (HTTPS) port.
    pub port: u16,
    pub caps: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnouncementError {
    #[error("not a HearthNet announcement: {0}")]
    Malformed(String),
    #[error("announcement version {0} is not 1")]
    Version(u32),
}

impl Announcement {
    pub fn new(node: String, community: String, port: u16, caps: &[String]) -> Self {
        Self {
            v: 1,
            node,
            community,
            port,
            caps: caps.to_vec(),
        }
    }

    /// The UDP datagram, capability names dropped from the end until it
    /// fits in [`MAX_UDP_BYTES`].
    pub fn to_datagram(&self) -> Vec<u8> {
        let mut a = self.clone();
        loop {
            let bytes = serde_json::to_vec(&a).unwrap_or_default();
            if bytes.len() <= MAX_UDP_BYTES || a.caps.is_empty() {
                return bytes;
            }
            a.caps.pop();
        }
    }

    pub fn from_datagram(bytes: &[u8]) -> Result<Self, AnnouncementError> {
        if bytes.len() > MAX_UDP_BYTES {
            return Err(AnnouncementError::Malformed(format!(
                "{} bytes, more than {MAX_UDP_BYTES}",
                bytes.len()
            )));
        }
        let a: Self = serde_json::from_slice(bytes)
            .map_err(|e| AnnouncementError::Malformed(e.to_string()))?;
        a.checked()
    }

    /// The TXT properties; `caps` cut at a name boundary to fit.
    pub fn to_txt(&self, host: &str) -> Vec<(String, String)> {
        let mut caps = String::new();
        for name in &self.caps {
            let extra = if caps.is_empty() { 0 } else { 1 } + name.len();
            if caps.len() + extra > MAX_TXT_CAPS_BYTES {
                break;
            }
            if !caps.is_empty() {
                caps.push(',');
            }
            caps.push_str(name);
        }
        vec![
            ("v".into(), self.v.to_string()),
            ("node".into(), self.node.clone()),
            ("community".into(), self.community.clone()),
            ("caps".into(), caps),
            (
                "manifest_url".into(),
                format!("https://{host}:{}/manifest", self.port),
            ),
            (
                "contract_version".into(),
                hearthnet_base::CONTRACT_VERSION.into(),
            ),
        ]
    }

    /// Read a TXT record; the port comes from the SRV record.
    pub fn from_txt(
        get: impl Fn(&str) -> Option<String>,
        port: u16,
    ) -> Result<Self, AnnouncementError> {
        let field =
            |k: &str| get(k).ok_or_else(|| AnnouncementError::Malformed(format!("no `{k}`")));
        let v = field("v")?
            .parse()
            .map_err(|_| AnnouncementError::Malformed("`v` is not a number".into()))?;
        let caps = get("caps").unwrap_or_default();
        Self {
            v,
            node: field("node")?,
            community: field("community")?,
            port,
            caps: caps
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
        }
        .checked()
    }

    fn checked(self) -> Result<Self, AnnouncementError> {
        if self.v != 1 {
            return Err(AnnouncementError::Version(self.v));
        }
        if self.port == 0 || self.node.is_empty() || self.community.is_empty() {
            return Err(AnnouncementError::Malformed(
                "empty node, community or port".into(),
            ));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(caps: usize) -> Announcement {
        let caps: Vec<String> = (0..caps)
            .map(|i| format!("experimental.cap{i:03}"))
            .collect();
        Announcement::new("7H4GY9KLQ2".into(), "NIEDQ2X7AB".into(), 7443, &caps)
    }

    #[test]
    fn udp_payload_stays_under_1kb_and_round_trips() {
        let small = sample(2);
        assert_eq!(Announcement::from_datagram(&small.to_datagram()), Ok(small));
        let big = sample(200);
        let bytes = big.to_datagram();
        assert!(bytes.len() <= MAX_UDP_BYTES, "{}", bytes.len());
        let back = Announcement::from_datagram(&bytes).unwrap();
        assert!(!back.caps.is_empty() && back.caps.len() < 200);
        assert_eq!(back.caps[..], big.caps[..back.caps.len()]);
    }

    #[test]
    fn txt_records_parse_and_truncate_at_a_name() {
        let a = sample(40);
        let txt = a.to_txt("10.0.0.2");
        let caps = &txt.iter().find(|(k, _)| k == "caps").unwrap().1;
        assert!(caps.len() <= MAX_TXT_CAPS_BYTES);
        assert!(caps.split(',').all(|c| c.starts_with("experimental.cap")));
        let get = |k: &str| txt.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("manifest_url").as_deref(),
            Some("https://10.0.0.2:7443/manifest")
        );
        let back = Announcement::from_txt(get, 7443).unwrap();
        assert_eq!(back.node, a.node);
        assert_eq!(back.caps.len(), caps.split(',').count());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Announcement::from_datagram(b"hello").is_err());
        assert!(Announcement::from_datagram(&[b' '; 2000]).is_err());
        let mut a = sample(1);
        a.v = 2;
        assert_eq!(
            Announcement::from_datagram(&serde_json::to_vec(&a).unwrap()),
            Err(AnnouncementError::Version(2))
        );
    }
}
