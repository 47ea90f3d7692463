//! Wall-clock timestamps in the contract's form (§1.1): RFC 3339, UTC,
//! with `Z`, whole seconds. Display only: ordering uses Lamport clocks.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "`{0}` is not a contract timestamp: expected RFC 3339 in UTC with `Z`, e.g. 2026-05-26T08:14:22Z"
)]
pub struct TimestampError(pub String);

impl Timestamp {
    /// Now, truncated to whole seconds.
    pub fn now() -> Self {
        Self::from_unix(OffsetDateTime::now_utc().unix_timestamp())
    }

    pub fn from_unix(seconds: i64) -> Self {
        let t = OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Self(t)
    }

    pub fn unix(&self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn plus_seconds(&self, seconds: i64) -> Self {
        Self(self.0.saturating_add(Duration::seconds(seconds)))
    }

    /// Parse the wire form. Offsets other than `Z` are refused (§1.1);
    /// fractional seconds are accepted and dropped.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError(text.to_owned());
        if !text.ends_with('Z') {
            return Err(err());
        }
        let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| err())?;
        if t.offset() != UtcOffset::UTC {
            return Err(err());
        }
        Ok(Self::from_unix(t.unix_timestamp()))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_the_wire_form() {
        let t = Timestamp::parse("2026-05-26T08:14:22Z").unwrap();
        assert_eq!(t.to_string(), "2026-05-26T08:14:22Z");
        assert_eq!(t.plus_seconds(30).to_string(), "2026-05-26T08:14:52Z");
        assert_eq!(Timestamp::parse("2026-05-26T08:14:22.281Z").unwrap(), t);
        assert!(Timestamp::parse("2026-05-26T10:14:22+02:00").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
