//! Every flag, defined once (clap derive). Help text, and later shell
//! completions and the man page, are generated from these definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hearthnet",
    about = "A local-first community node: chat, trade, share files and ask the community's AI models, with or without the internet.",
    version,
    propagate_version = true
)]
pub struct Cli {
    /// Use this config file instead of $XDG_CONFIG_HOME/hearthnet/config.toml.
    #[arg(long, global = true, value_name = "PATH", env = "HEARTHNET_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up this device: key, config, and a community to create or join.
    Init(InitArgs),
    /// Print version, contract version, compiler and platform on one line.
    Version,
    /// Diagnose this node: keys, config, disk, ports, clock.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// This node's display name, shown to neighbours (default: host name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The node's profile (default: detected from the hardware).
    #[arg(long, value_enum, value_name = "PROFILE")]
    pub profile: Option<ProfileArg>,
    /// Ask nothing, read nothing from stdin: create a community with defaults.
    #[arg(long)]
    pub non_interactive: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileArg {
    Anchor,
    Hearth,
    Spark,
    Bridge,
}

impl From<ProfileArg> for hearthnet_base::Profile {
    fn from(p: ProfileArg) -> Self {
        match p {
            ProfileArg::Anchor => Self::Anchor,
            ProfileArg::Hearth => Self::Hearth,
            ProfileArg::Spark => Self::Spark,
            ProfileArg::Bridge => Self::Bridge,
        }
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Run only this check.
    #[arg(long, value_name = "NAME")]
    pub check: Option<String>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
