//! The one way commands reach a running node: a [`LocalClient`] built from
//! the configuration, with its failures mapped to exit codes.

use std::path::Path;

use hearthnet_client::{ClientError, LocalClient};
use hearthnet_config::Env;

use crate::exit::CliError;

pub fn connect(config: Option<&Path>, env: &Env) -> Result<LocalClient, CliError> {
    let loaded = hearthnet_config::load(config, env)?;
    LocalClient::for_config(&loaded).map_err(|e| match e {
        // Without a key or community there cannot be a node of ours running.
        ClientError::Key(hearthnet_identity::KeyError::Missing { .. })
        | ClientError::NoCommunity => CliError::new(
            crate::exit::ExitStatus::NoNode,
            anyhow::anyhow!("{e}; then start it with `hearthnet run`"),
        ),
        other => CliError::from_client(other),
    })
}
