//! Values written as text or numbers in `config.toml` but used as
//! addresses and durations. They are parsed here, once, by serde: the value
//! that passes loading is the value the node runs with, and a bad one fails
//! loading with what was expected instead of being replaced later.

use std::net::{IpAddr, Ipv4Addr};

use hearthnet_base::CommunityId;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// `text` parsed as `T`, or an error that says what was `expected` (the
/// loader prints it after the key and the value).
fn parsed<'de, D, T>(d: D, expected: &str, accept: impl Fn(&T) -> bool) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
{
    let text = String::deserialize(d)?;
    match text.parse::<T>() {
        Ok(value) if accept(&value) => Ok(value),
        _ => Err(D::Error::custom(expected)),
    }
}

pub(crate) fn ip<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    parsed(d, "an IP address such as 0.0.0.0 or 192.168.1.20", |_| true)
}

/// The local API is for this machine only; peers use `peer_host`.
pub(crate) fn loopback_ip<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    parsed(
        d,
        "a loopback address such as 127.0.0.1 (the local API is for this machine only; peers use peer_host)",
        IpAddr::is_loopback,
    )
}

/// Discovery announces over IPv4 (multicast and subnet broadcast), so an
/// IPv6 group is refused rather than swapped for the default.
pub(crate) fn multicast_v4<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Addr, D::Error> {
    parsed(
        d,
        "an IPv4 multicast address such as 239.255.42.42 (discovery announces over IPv4)",
        Ipv4Addr::is_multicast,
    )
}

pub(crate) fn community_id<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<CommunityId>, D::Error> {
    let text = String::deserialize(d)?;
    CommunityId::parse(&text)
        .map(Some)
        .map_err(|e| D::Error::custom(format!("a full community id ({e})")))
}

/// A `Duration` written as a whole number of seconds, as the keys ending
/// in `_seconds` are.
pub(crate) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.as_secs())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// An optional `Duration` written as a whole number of seconds: absent
/// means the documented default, which the reader of the field applies.
pub(crate) mod optional_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_u64(d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        u64::deserialize(d).map(|s| Some(Duration::from_secs(s)))
    }
}
