//! Small closed vocabularies of the GLOSSARY: node profiles, trust levels,
//! capability stability.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of device a node is, declared in its manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Always on, GPU-equipped, the primary capability provider.
    Anchor,
    /// Mid-tier, typically a laptop; runs some services.
    Hearth,
    /// Thin client (Raspberry Pi, phone, browser); mostly consumes.
    Spark,
    /// Relay only, no inference; federates communities.
    Bridge,
}

impl Profile {
    pub const ALL: [Profile; 4] = [Self::Anchor, Self::Hearth, Self::Spark, Self::Bridge];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anchor => "anchor",
            Self::Hearth => "hearth",
            Self::Spark => "spark",
            Self::Bridge => "bridge",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member's standing in the community, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustLevel {
    Unknown,
    Member,
    Trusted,
    Anchor,
}

impl TrustLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Member => "member",
            Self::Trusted => "trusted",
            Self::Anchor => "anchor",
        }
    }
}

impl fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stability {
    Experimental,
    Beta,
    Stable,
}
