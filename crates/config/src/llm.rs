//! The values of an `openai_compatible` LLM backend that need more than a
//! string: its base URL, parsed once when loading, and its API key, read
//! from the environment variable the file names (the key itself is never
//! written in the file, nor shown in errors or `Debug` output).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The root of an OpenAI-compatible API, version prefix included, as
/// `OPENAI_BASE_URL` is written: `http://127.0.0.1:11434/v1`. Endpoints
/// are joined to it (`{base_url}/chat/completions`).
///
/// Only `http` and `https`, a host (a name, an IPv4 address or a bracketed
/// IPv6 one), an optional port and an optional path: no user name or
/// password (keys go through `api_key_env`), no query, no fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    https: bool,
    host: Host,
    port: u16,
    /// Without its trailing `/`; empty for the server's root.
    path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// What a base URL must look like, as loading says when one does not.
pub const BASE_URL_EXPECTED: &str = "an http:// or https:// URL of the server's API root, such as http://127.0.0.1:11434/v1 (Ollama) or http://127.0.0.1:8080/v1 (llama.cpp server), without user, password, query or fragment";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BaseUrlError(&'static str);

impl BaseUrl {
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host as a TLS server name or for resolving: no brackets.
    pub fn host(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` as the `Host` header wants it (IPv6 in brackets).
    pub fn authority(&self) -> String {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            _ => format!("{}:{}", self.host(), self.port),
        }
    }

    /// The request path of `endpoint` (`"/chat/completions"`) under this
    /// root.
    pub fn path_of(&self, endpoint: &str) -> String {
        format!("{}{endpoint}", self.path)
    }

    /// Whether the host is this machine or the local network by its
    /// address alone: a loopback, private (RFC 1918, IPv6 unique-local) or
    /// link-local address, or `localhost`. Any other name may resolve
    /// anywhere, so it is not taken as local.
    pub fn is_local(&self) -> bool {
        match &self.host {
            Host::Name(name) => name.eq_ignore_ascii_case("localhost"),
            Host::Ip(IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
            Host::Ip(IpAddr::V6(ip)) => {
                ip.is_loopback() || ip.is_unique_local() || ip.is_unicast_link_local()
            }
        }
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

impl FromStr for BaseUrl {
    type Err = BaseUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(BaseUrlError("it does not start with http:// or https://"));
        };
        if rest.contains(['?', '#']) {
            return Err(BaseUrlError("it has a query or fragment"));
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(BaseUrlError(
                "it carries a user or password: name the key's environment variable in api_key_env instead",
            ));
        }
        if path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(BaseUrlError("its path holds spaces or control characters"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (ip, after) = bracketed
                .split_once(']')
                .ok_or(BaseUrlError("its IPv6 address lacks the closing ]"))?;
            let ip = ip
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| BaseUrlError("the address in [] is not IPv6"))?;
            (Host::Ip(IpAddr::V6(ip)), after)
        } else {
            let end = authority.find(':').unwrap_or(authority.len());
            let (host, after) = authority.split_at(end);
            let host = match host.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => Host::Ip(IpAddr::V4(ip)),
                Err(_) if is_host_name(host) => Host::Name(host.to_ascii_lowercase()),
                Err(_) => return Err(BaseUrlError("its host is not a name or an IP address")),
            };
            (host, after)
        };
        let port = match port.strip_prefix(':') {
            None if port.is_empty() => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(digits) => digits
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or(BaseUrlError("its port is not a number from 1 to 65535"))?,
            None => {
                return Err(BaseUrlError(
                    "its host is followed by something other than a port",
                ));
            }
        };
        Ok(Self {
            https,
            host,
            port,
            path: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// A DNS name: labels of letters, digits and hyphens, not starting or
/// ending with a hyphen.
fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl Serialize for BaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e: BaseUrlError| D::Error::custom(format!("{BASE_URL_EXPECTED} ({e})")))
    }
}

/// An API key, as read from the environment variable a backend's
/// `api_key_env` names. Never serialized; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: &str) -> Self {
        Self(key.to_owned())
    }

    /// The key itself, for the `Authorization` header and nothing else.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(hidden)")
    }
}

/// Whether `name` can be an environment variable's name as shells write
/// them: letters, digits and `_`, not starting with a digit.
pub(crate) fn is_env_var_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_parsed_into_their_parts() {
        let url: BaseUrl = "http://127.0.0.1:11434/v1/".parse().unwrap();
        assert_eq!(
            (url.is_https(), url.host(), url.port()),
            (false, "127.0.0.1".to_owned(), 11434)
        );
        assert_eq!(url.path_of("/models"), "/v1/models");
        assert_eq!(url.to_string(), "http://127.0.0.1:11434/v1");
        assert!(url.is_local());

        let url: BaseUrl = "https://API.example.org/openai/v1".parse().unwrap();
        assert_eq!(
            (url.port(), url.host()),
            (443, "api.example.org".to_owned())
        );
        assert_eq!(url.authority(), "api.example.org:443");
        assert!(!url.is_local());

        let url: BaseUrl = "http://[::1]:8080".parse().unwrap();
        assert_eq!(
            (url.host(), url.authority()),
            ("::1".to_owned(), "[::1]:8080".to_owned())
        );
        assert_eq!(url.path_of("/completions"), "/completions");
        assert_eq!(url.to_string(), "http://[::1]:8080");
    }

    #[test]
    fn only_loopback_private_and_link_local_hosts_are_local() {
        for local in [
            "http://localhost:8080",
            "http://10.0.0.5",
            "http://172.16.3.4",
            "http://192.168.1.20:11434/v1",
            "http://169.254.1.1",
            "http://[fd00::1]",
            "http://[fe80::1]",
        ] {
            assert!(local.parse::<BaseUrl>().unwrap().is_local(), "{local}");
        }
        for remote in [
            "http://8.8.8.8",
            "http://100.64.0.1",
            "https://gpu-box.lan",
            "http://[2001:db8::1]",
        ] {
            assert!(!remote.parse::<BaseUrl>().unwrap().is_local(), "{remote}");
        }
    }

    #[test]
    fn malformed_base_urls_are_refused_with_the_reason() {
        for (bad, why) in [
            ("127.0.0.1:11434", "does not start"),
            ("ftp://host", "does not start"),
            ("http://user:pw@host/v1", "api_key_env"),
            ("http://host/v1?x=1", "query"),
            ("http://host:0", "port"),
            ("http://host:99999", "port"),
            ("http://[::1/v1", "closing ]"),
            ("http://ho st", "not a name"),
            ("http://", "not a name"),
            ("http://-x.org", "not a name"),
            ("http://[::1]x", "other than a port"),
        ] {
            let e = bad.parse::<BaseUrl>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn an_api_key_never_shows_in_debug_output() {
        let key = ApiKey::new("sk-secret");
        assert_eq!(format!("{key:?}"), "ApiKey(hidden)");
        assert_eq!(key.reveal(), "sk-secret");
        assert!(is_env_var_name("OLLAMA_API_KEY"));
        assert!(!is_env_var_name("sk-secret") && !is_env_var_name("9X") && !is_env_var_name(""));
    }
}
