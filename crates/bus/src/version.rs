//! Capability versions (Contract §2.1): `"X.Y"` on the wire; a request for
//! `A.B` is satisfied by an offer of `X.Y` iff `X == A` and `Y >= B`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a capability version; expected MAJOR.MINOR such as 1.0")]
pub struct VersionError(pub String);

impl Version {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Whether an offer of `self` serves a request for `requested`.
    pub fn satisfies(self, requested: Version) -> bool {
        self.major == requested.major && self.minor >= requested.minor
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || VersionError(s.to_owned());
        let (major, minor) = s.split_once('.').ok_or_else(err)?;
        let num = |p: &str| {
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                return Err(err());
            }
            p.parse::<u32>().map_err(|_| err())
        };
        Ok(Self::new(num(major)?, num(minor)?))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_follows_section_2_1() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        assert!(v("1.3").satisfies(v("1.0")));
        assert!(v("1.3").satisfies(v("1.3")));
        assert!(!v("1.2").satisfies(v("1.3")));
        assert!(!v("2.0").satisfies(v("1.0")));
        assert_eq!(v("10.20").to_string(), "10.20");
        for bad in ["1", "1.", ".1", "1.0.0", "a.b", "01.0", "-1.0"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }
}
