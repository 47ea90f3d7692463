//! One probe: can this node open a TCP connection to a target within the
//! timeout? A target is `host:port`, `[v6]:port`, a URL (`http://` port 80,
//! `https://` port 443 unless it names one), or a bare host: an IP
//! address is asked on port 53 (a DNS server, over TCP), a name on 443
//! (resolving it is part of the probe). A connection is enough evidence:
//! what answers on it is not judged (captive portals pass, M09 §10).

use std::time::Duration;

use tokio::net::TcpStream;

/// Most targets a node probes, and the longest target text.
pub const MAX_TARGETS: usize = 16;
pub const MAX_TARGET_LEN: usize = 253 + 6 + 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("probe target {0:?} is empty or longer than {MAX_TARGET_LEN} characters")]
    Length(String),
    #[error("probe target {0:?} has a port that is not a number from 1 to 65535")]
    Port(String),
    #[error("probe target {0:?} names no host")]
    NoHost(String),
    #[error("probe target {0:?}: only http:// and https:// URLs are understood")]
    Scheme(String),
}

/// A target, parsed: what to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As configured, for reports.
    pub text: String,
    host: String,
    port: u16,
}

impl Target {
    pub fn parse(text: &str) -> Result<Self, TargetError> {
        let bad = |make: fn(String) -> TargetError| make(text.to_owned());
        if text.is_empty() || text.len() > MAX_TARGET_LEN {
            return Err(bad(TargetError::Length));
        }
        let (rest, scheme_port) = match text.split_once("://") {
            Some(("http", rest)) => (rest, Some(80)),
            Some(("https", rest)) => (rest, Some(443)),
            Some(_) => return Err(bad(TargetError::Scheme)),
            None => (text, None),
        };
        // The authority only: no path, query or user part.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        let (host, port) = split_port(authority).map_err(|()| bad(TargetError::Port))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad(TargetError::NoHost));
        }
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        let port = port.or(scheme_port).unwrap_or(if is_ip { 53 } else { 443 });
        Ok(Self {
            text: text.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    /// Whether a connection opens within `timeout`.
    pub async fn reachable(&self, timeout: Duration) -> bool {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(_)))
    }
}

/// `host` and its port, if the authority names one (`[v6]:port`,
/// `host:port`; a bare IPv6 address has no port).
fn split_port(authority: &str) -> Result<(&str, Option<u16>), ()> {
    let number = |p: &str| p.parse::<u16>().ok().filter(|&p| p > 0).ok_or(());
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(())?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(number(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(()),
        };
    }
    match authority.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((host, _)) if host.contains(':') => Ok((authority, None)),
        Some((host, p)) => Ok((host, Some(number(p)?))),
        None => Ok((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (String, u16) {
        let t = Target::parse(text).unwrap();
        (t.host, t.port)
    }

    #[test]
    fn targets_parse_with_their_default_ports_and_bad_ones_are_named() {
        assert_eq!(parsed("1.1.1.1"), ("1.1.1.1".into(), 53));
        assert_eq!(parsed("cloudflare.com"), ("cloudflare.com".into(), 443));
        assert_eq!(parsed("127.0.0.1:8080"), ("127.0.0.1".into(), 8080));
        assert_eq!(parsed("http://example.org/x?y"), ("example.org".into(), 80));
        assert_eq!(
            parsed("https://u@example.org:8443/"),
            ("example.org".into(), 8443)
        );
        assert_eq!(parsed("[::1]:9"), ("::1".into(), 9));
        assert_eq!(parsed("2606:4700::1111"), ("2606:4700::1111".into(), 53));
        for (bad, what) in [
            ("", "empty"),
            ("host:0", "port"),
            ("host:99999", "port"),
            ("host:x", "port"),
            (":80", "no host"),
            ("ftp://host", "http"),
            ("[::1", "port"),
        ] {
            let e = Target::parse(bad).unwrap_err().to_string();
            assert!(e.contains(what), "{bad:?}: {e}");
        }
        let long = "a".repeat(MAX_TARGET_LEN + 1);
        assert!(Target::parse(&long).is_err());
    }

    #[tokio::test]
    async fn a_listening_port_is_reachable_and_a_closed_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Target::parse(&addr.to_string()).unwrap();
        assert!(target.reachable(Duration::from_secs(2)).await);
        drop(listener);
        assert!(!target.reachable(Duration::from_secs(2)).await);
    }
}
