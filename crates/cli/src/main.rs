//! The `hearthnet` command (M12).
//!
//! Architecture invariant: commands never reach into a service's internals.
//! Standalone commands (`init`, `doctor`, `version`, `export`, `erase`,
//! `leave`) use the foundation crates (config, identity, onboarding,
//! observability, the event log read-only); commands about a running node
//! speak to it over its local HTTP API only, and stop it only by signal.

mod cli;
mod commands;
mod exit;
mod printer;
mod prompt;

use clap::Parser;

use crate::exit::ExitStatus;

fn main() -> std::process::ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout (exit 0) and usage
            // errors to stderr; the latter are spec §6's "bad usage", 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitStatus::Usage
            } else {
                ExitStatus::Success
            }
            .into();
        }
    };
    match commands::dispatch(cli) {
        Ok(status) => status.into(),
        Err(err) => {
            printer::error(&err.error);
            err.status.into()
        }
    }
}
