//! `hearthnet identity`: this device's identity card again, for a member
//! to invite the device with (`hearthnet invite create`). On a terminal as
//! QR art and text (and saved as a PNG); captured, only the card's text,
//! so `card=$(hearthnet identity)` works. Reads the key, never makes one:
//! exit 1 without a key, 4 for a key file others can read.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::anyhow;
use hearthnet_config::Env;
use hearthnet_identity::{KeyError, KeyStore, hardware};
use hearthnet_onboarding::IdentityCard;

use super::init::show_card;
use crate::exit::{CliError, CliResult, ExitStatus};

pub fn run(config: Option<&Path>, env: &Env) -> CliResult {
    let loaded = hearthnet_config::load(config, env)?;
    let paths = loaded.paths();
    let store = KeyStore::new(&paths.keys_dir);
    if !store.exists() {
        return Err(anyhow!(
            "this device has no key yet (none at {}): `hearthnet init --join` makes one and shows its card",
            store.secret_path().display()
        )
        .into());
    }
    let key = store.load().map_err(|e| match e {
        KeyError::Permissions { .. } => CliError::new(ExitStatus::Auth, e),
        other => CliError::from(other),
    })?;
    let name = match loaded.config.identity.display_name.as_str() {
        "" => hardware::host_name(),
        name => name.to_owned(),
    };
    if std::io::stdout().is_terminal() {
        show_card(&key, &name, &paths)?;
    } else {
        let card = IdentityCard {
            node_id_full: key.node_id(),
            display_name: name,
        };
        println!("{}", card.encode());
    }
    Ok(ExitStatus::Success)
}
