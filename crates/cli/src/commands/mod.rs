//! One module per subcommand; each entry function stays small and
//! delegates to helpers that tests can call without argument parsing.

mod doctor;
mod init;
mod version;

use crate::cli::{Cli, Command};
use crate::exit::CliResult;

pub fn dispatch(cli: Cli) -> CliResult {
    let env = hearthnet_config::Env::from_process();
    match cli.command {
        Command::Init(args) => init::run(cli.config.as_deref(), &env, args),
        Command::Version => version::run(),
        Command::Doctor(args) => doctor::run(cli.config.as_deref(), &env, args),
    }
}
