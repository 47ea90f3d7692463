//! `hearthnet version`: one line, for bug reports.

use crate::exit::{CliResult, ExitStatus};

pub fn line() -> String {
    format!(
        "hearthnet {} (contract {}, {}, {}/{})",
        env!("CARGO_PKG_VERSION"),
        hearthnet_base::CONTRACT_VERSION,
        env!("HEARTHNET_RUSTC_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

pub fn run() -> CliResult {
    println!("{}", line());
    Ok(ExitStatus::Success)
}
